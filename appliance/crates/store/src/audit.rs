//! Audit: the append-only log of who did what to which target, keyed by a global seq.

use redb::ReadableTable;

use crate::db::Store;
use crate::records::*;
use crate::tables::{AUDIT, dec, enc};
use crate::{StoreError, now_ms};

impl Store {
    /// Appends an audit entry (seq and time assigned here).
    pub async fn append_audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: serde_json::Value,
    ) -> Result<AuditRecord, StoreError> {
        let (actor, action, target) = (actor.to_owned(), action.to_owned(), target.to_owned());
        self.write(move |w| {
            let mut t = w.open_table(AUDIT)?;
            let seq = match t.last()? {
                Some((k, _)) => k.value() + 1,
                None => 0,
            };
            let rec = AuditRecord {
                seq,
                timestamp: now_ms(),
                actor: actor.clone(),
                action: action.clone(),
                target: target.clone(),
                detail: detail.clone(),
            };
            t.insert(seq, enc(&rec)?.as_slice())?;
            Ok(rec)
        })
        .await
    }

    /// Up to `limit` audit entries with `seq > after`, oldest first.
    pub fn list_audit(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.read(|r| {
            let t = r.open_table(AUDIT)?;
            let lo = match after {
                Some(u64::MAX) => return Ok(Vec::new()),
                Some(a) => a + 1,
                None => 0,
            };
            let mut out = Vec::new();
            for e in t.range(lo..)?.take(limit) {
                let (_, v) = e?;
                out.push(dec("audit", v.value())?);
            }
            Ok(out)
        })
    }
}
