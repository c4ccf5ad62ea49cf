//! API tokens: records keyed by the SHA-256 of their secret, with a public-id index.

use redb::ReadableTable;

use crate::StoreError;
use crate::db::Store;
use crate::records::*;
use crate::tables::{API_TOKENS, TOKEN_IDS, dec, enc};

impl Store {
    /// Stores a token record under the hash of its secret.
    pub async fn put_token(&self, hash: String, rec: TokenRecord) -> Result<(), StoreError> {
        self.write(move |w| {
            let mut ids = w.open_table(TOKEN_IDS)?;
            if ids.get(rec.id.as_str())?.is_some() {
                return Err(StoreError::Conflict(format!("token id {} exists", rec.id)));
            }
            ids.insert(rec.id.as_str(), hash.as_str())?;
            w.open_table(API_TOKENS)?
                .insert(hash.as_str(), enc(&rec)?.as_slice())?;
            Ok(())
        })
        .await
    }

    /// The token whose secret hashes to `hash`.
    pub fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.read(|r| {
            let t = r.open_table(API_TOKENS)?;
            t.get(hash)?
                .map(|v| dec("api_tokens", v.value()))
                .transpose()
        })
    }

    /// A token by its public id.
    pub fn token_by_id(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.read(|r| {
            let ids = r.open_table(TOKEN_IDS)?;
            let Some(h) = ids.get(id)? else {
                return Ok(None);
            };
            let t = r.open_table(API_TOKENS)?;
            t.get(h.value())?
                .map(|v| dec("api_tokens", v.value()))
                .transpose()
        })
    }

    /// Tokens of one user (or all users with `None`) of one kind, oldest first.
    pub fn list_tokens(
        &self,
        user_id: Option<&str>,
        kind: TokenKind,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        self.read(|r| {
            let t = r.open_table(API_TOKENS)?;
            let mut out = Vec::new();
            for e in t.iter()? {
                let (_, v) = e?;
                let rec: TokenRecord = dec("api_tokens", v.value())?;
                if rec.kind == kind && user_id.is_none_or(|u| u == rec.user_id) {
                    out.push(rec);
                }
            }
            out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            Ok(out)
        })
    }

    /// Removes a token by its public id; returns it, `NotFound` if unknown.
    pub async fn revoke_token(&self, id: &str) -> Result<TokenRecord, StoreError> {
        let id = id.to_owned();
        self.write(move |w| {
            let mut ids = w.open_table(TOKEN_IDS)?;
            let hash = match ids.remove(id.as_str())? {
                Some(h) => h.value().to_owned(),
                None => return Err(StoreError::NotFound(format!("token {id}"))),
            };
            let mut t = w.open_table(API_TOKENS)?;
            let rec = match t.remove(hash.as_str())? {
                Some(v) => dec("api_tokens", v.value())?,
                None => return Err(StoreError::NotFound(format!("token {id}"))),
            };
            Ok(rec)
        })
        .await
    }

    /// Deletes tokens that expired before `now_ms`; returns how many.
    pub async fn purge_expired_tokens(&self, now: u64) -> Result<usize, StoreError> {
        self.write(move |w| remove_tokens_where(w, |rec| rec.expires_at.is_some_and(|x| x <= now)))
            .await
    }
}

/// Removes every token (and its id index entry) for which `doomed` holds; returns how many.
pub(crate) fn remove_tokens_where(
    w: &redb::WriteTransaction,
    doomed: impl Fn(&TokenRecord) -> bool,
) -> Result<usize, StoreError> {
    let mut t = w.open_table(API_TOKENS)?;
    let mut ids = w.open_table(TOKEN_IDS)?;
    let mut gone = Vec::new();
    for e in t.iter()? {
        let (k, v) = e?;
        let rec: TokenRecord = dec("api_tokens", v.value())?;
        if doomed(&rec) {
            gone.push((k.value().to_owned(), rec.id));
        }
    }
    for (hash, id) in &gone {
        t.remove(hash.as_str())?;
        ids.remove(id.as_str())?;
    }
    Ok(gone.len())
}
