//! Actions: a session's action log, keyed by (session, seq); one batch is one commit.

use crate::db::Store;
use crate::records::*;
use crate::sessions::require_session;
use crate::tables::{ACTIONS, dec, enc, next_seq_in, range_after};
use crate::{StoreError, now_ms};

impl Store {
    /// Appends an action-log entry to a session; returns it with its seq and timestamp.
    pub async fn append_action(
        &self,
        session: &str,
        a: NewAction,
    ) -> Result<ActionRecord, StoreError> {
        let mut v = self.append_actions(session, vec![a]).await?;
        v.pop()
            .ok_or_else(|| StoreError::Storage("append returned nothing".into()))
    }

    /// Appends the action-log entries of one batch in order, in one write transaction (one
    /// commit); returns them with their seqs and timestamps. All or nothing: fails (nothing
    /// written) when the session does not exist.
    pub async fn append_actions(
        &self,
        session: &str,
        actions: Vec<NewAction>,
    ) -> Result<Vec<ActionRecord>, StoreError> {
        let sid = session.to_owned();
        self.write(move |w| {
            require_session(w, &sid)?;
            let mut t = w.open_table(ACTIONS)?;
            let first = next_seq_in(&t, &sid)?;
            let now = now_ms();
            let mut out = Vec::with_capacity(actions.len());
            for (seq, a) in (first..).zip(&actions) {
                let rec = ActionRecord {
                    seq,
                    who: a.who.clone(),
                    what: a.what.clone(),
                    result: a.result.clone(),
                    ok: a.ok,
                    duration_ms: a.duration_ms,
                    timestamp: now,
                };
                t.insert((sid.as_str(), seq), enc(&rec)?.as_slice())?;
                out.push(rec);
            }
            Ok(out)
        })
        .await
    }

    /// Up to `limit` actions with `seq > after`, oldest first.
    pub fn list_actions(
        &self,
        session: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ActionRecord>, StoreError> {
        self.read(|r| range_after(&r.open_table(ACTIONS)?, "actions", session, after, limit))
    }

    /// The newest `n` actions, newest first (for undo).
    pub fn last_actions(&self, session: &str, n: usize) -> Result<Vec<ActionRecord>, StoreError> {
        self.read(|r| {
            let t = r.open_table(ACTIONS)?;
            let mut out = Vec::new();
            for e in t
                .range((session, 0u64)..=(session, u64::MAX))?
                .rev()
                .take(n)
            {
                let (_, v) = e?;
                out.push(dec("actions", v.value())?);
            }
            Ok(out)
        })
    }
}
