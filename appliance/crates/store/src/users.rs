//! Users: accounts keyed by id, with a unique user-name index; deleting a user drops their tokens.

use redb::{ReadableTable, ReadableTableMetadata};

use crate::StoreError;
use crate::db::Store;
use crate::records::*;
use crate::tables::{USERNAMES, USERS, dec, enc};
use crate::tokens::remove_tokens_where;

impl Store {
    /// Number of users.
    pub fn user_count(&self) -> Result<u64, StoreError> {
        self.read(|r| Ok(r.open_table(USERS)?.len()?))
    }

    /// Adds a user; `Conflict` if the user name is taken.
    pub async fn create_user(&self, user: UserRecord) -> Result<UserRecord, StoreError> {
        self.write(move |w| {
            let mut names = w.open_table(USERNAMES)?;
            if names.get(user.username.as_str())?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "user name '{}' is taken",
                    user.username
                )));
            }
            names.insert(user.username.as_str(), user.id.as_str())?;
            w.open_table(USERS)?
                .insert(user.id.as_str(), enc(&user)?.as_slice())?;
            Ok(user.clone())
        })
        .await
    }

    /// A user by id.
    pub fn get_user(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        self.read(|r| {
            let t = r.open_table(USERS)?;
            t.get(id)?.map(|v| dec("users", v.value())).transpose()
        })
    }

    /// A user by user name.
    pub fn get_user_by_name(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        self.read(|r| {
            let names = r.open_table(USERNAMES)?;
            let Some(id) = names.get(username)? else {
                return Ok(None);
            };
            let t = r.open_table(USERS)?;
            t.get(id.value())?
                .map(|v| dec("users", v.value()))
                .transpose()
        })
    }

    /// All users, ordered by id.
    pub fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.read(|r| {
            let t = r.open_table(USERS)?;
            t.iter()?
                .map(|e| {
                    let (_, v) = e?;
                    dec("users", v.value())
                })
                .collect()
        })
    }

    /// Changes a user record with `f` (the id and user name stay); returns the new record.
    pub async fn update_user(
        &self,
        id: &str,
        f: impl Fn(&mut UserRecord) + Send + 'static,
    ) -> Result<UserRecord, StoreError> {
        let id = id.to_owned();
        self.write(move |w| {
            let mut t = w.open_table(USERS)?;
            let mut u: UserRecord = match t.get(id.as_str())? {
                Some(v) => dec("users", v.value())?,
                None => return Err(StoreError::NotFound(format!("user {id}"))),
            };
            let (uid, name) = (u.id.clone(), u.username.clone());
            f(&mut u);
            u.id = uid;
            u.username = name;
            t.insert(id.as_str(), enc(&u)?.as_slice())?;
            Ok(u)
        })
        .await
    }

    /// Replaces a user's password hash.
    pub async fn set_password_hash(&self, id: &str, hash: String) -> Result<(), StoreError> {
        self.update_user(id, move |u| u.password_hash = hash.clone())
            .await
            .map(|_| ())
    }

    /// Revokes every login (not API tokens) of user `id`: after a password reset, each
    /// device must log in again. Returns how many ended.
    pub async fn revoke_logins(&self, id: &str) -> Result<usize, StoreError> {
        let id = id.to_owned();
        self.write(move |w| {
            remove_tokens_where(w, |rec| rec.user_id == id && rec.kind == TokenKind::Login)
        })
        .await
    }

    /// Deletes a user and every token of theirs. Their sessions stay (an admin can still see
    /// and delete them).
    pub async fn delete_user(&self, id: &str) -> Result<UserRecord, StoreError> {
        let id = id.to_owned();
        self.write(move |w| {
            let mut t = w.open_table(USERS)?;
            let u: UserRecord = match t.remove(id.as_str())? {
                Some(v) => dec("users", v.value())?,
                None => return Err(StoreError::NotFound(format!("user {id}"))),
            };
            w.open_table(USERNAMES)?.remove(u.username.as_str())?;
            remove_tokens_where(w, |rec| rec.user_id == id)?;
            Ok(u)
        })
        .await
    }
}
