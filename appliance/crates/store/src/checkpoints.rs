//! Checkpoints: a session's saved state (e.g. browser cookies and storage), keyed by (session, id).

use crate::StoreError;
use crate::db::Store;
use crate::records::*;
use crate::sessions::require_session;
use crate::tables::{CHECKPOINTS, dec, enc, next_str};

impl Store {
    /// Stores (or replaces) a checkpoint of a session.
    pub async fn put_checkpoint(
        &self,
        session: &str,
        cp: CheckpointRecord,
    ) -> Result<CheckpointMeta, StoreError> {
        let sid = session.to_owned();
        self.write(move |w| {
            require_session(w, &sid)?;
            let mut cp = cp.clone();
            let data = enc(&cp.data)?;
            cp.meta.size_bytes = data.len() as u64;
            w.open_table(CHECKPOINTS)?
                .insert((sid.as_str(), cp.meta.id.as_str()), enc(&cp)?.as_slice())?;
            Ok(cp.meta)
        })
        .await
    }

    /// One checkpoint with its data.
    pub fn get_checkpoint(
        &self,
        session: &str,
        id: &str,
    ) -> Result<Option<CheckpointRecord>, StoreError> {
        self.read(|r| {
            let t = r.open_table(CHECKPOINTS)?;
            t.get((session, id))?
                .map(|v| dec("checkpoints", v.value()))
                .transpose()
        })
    }

    /// Metadata of a session's checkpoints, ordered by id.
    pub fn list_checkpoints(&self, session: &str) -> Result<Vec<CheckpointMeta>, StoreError> {
        self.read(|r| {
            let t = r.open_table(CHECKPOINTS)?;
            let end = next_str(session);
            let mut out = Vec::new();
            for e in t.range((session, "")..(end.as_str(), ""))? {
                let (_, v) = e?;
                let rec: CheckpointRecord = dec("checkpoints", v.value())?;
                out.push(rec.meta);
            }
            Ok(out)
        })
    }

    /// Deletes one checkpoint; `NotFound` if absent.
    pub async fn delete_checkpoint(&self, session: &str, id: &str) -> Result<(), StoreError> {
        let (sid, id) = (session.to_owned(), id.to_owned());
        self.write(move |w| {
            match w
                .open_table(CHECKPOINTS)?
                .remove((sid.as_str(), id.as_str()))?
            {
                Some(_) => Ok(()),
                None => Err(StoreError::NotFound(format!("checkpoint {id}"))),
            }
        })
        .await
    }
}
