//! Feedback: human feedback on a session (optionally on one action), keyed by (session, seq).

use redb::ReadableTable;

use crate::db::Store;
use crate::records::*;
use crate::sessions::require_session;
use crate::tables::{FEEDBACK, dec, enc, next_seq_in, range_after};
use crate::{StoreError, now_ms};

impl Store {
    /// Appends a feedback record to a session (seq and time assigned here).
    pub async fn append_feedback(
        &self,
        session: &str,
        by: &str,
        action_seq: Option<u64>,
        data: serde_json::Value,
    ) -> Result<FeedbackRecord, StoreError> {
        let (sid, by) = (session.to_owned(), by.to_owned());
        self.write(move |w| {
            require_session(w, &sid)?;
            let mut t = w.open_table(FEEDBACK)?;
            let rec = FeedbackRecord {
                seq: next_seq_in(&t, &sid)?,
                by: by.clone(),
                action_seq,
                data: data.clone(),
                created_at: now_ms(),
            };
            t.insert((sid.as_str(), rec.seq), enc(&rec)?.as_slice())?;
            Ok(rec)
        })
        .await
    }

    /// Replaces the body of feedback record `seq` (a prompt answered, a verdict amended);
    /// `NotFound` if absent.
    pub async fn update_feedback(
        &self,
        session: &str,
        seq: u64,
        data: serde_json::Value,
    ) -> Result<FeedbackRecord, StoreError> {
        let sid = session.to_owned();
        self.write(move |w| {
            let mut t = w.open_table(FEEDBACK)?;
            let mut rec: FeedbackRecord = match t.get((sid.as_str(), seq))? {
                Some(v) => dec("feedback", v.value())?,
                None => return Err(StoreError::NotFound(format!("feedback {seq}"))),
            };
            rec.data = data.clone();
            t.insert((sid.as_str(), seq), enc(&rec)?.as_slice())?;
            Ok(rec)
        })
        .await
    }

    /// One feedback record.
    pub fn get_feedback(
        &self,
        session: &str,
        seq: u64,
    ) -> Result<Option<FeedbackRecord>, StoreError> {
        self.read(|r| {
            r.open_table(FEEDBACK)?
                .get((session, seq))?
                .map(|v| dec("feedback", v.value()))
                .transpose()
        })
    }

    /// Up to `limit` feedback records with `seq > after`, oldest first.
    pub fn list_feedback(
        &self,
        session: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<FeedbackRecord>, StoreError> {
        self.read(|r| range_after(&r.open_table(FEEDBACK)?, "feedback", session, after, limit))
    }

    /// Every feedback record of every session, as (session id, record), for export.
    pub fn all_feedback(&self) -> Result<Vec<(String, FeedbackRecord)>, StoreError> {
        self.read(|r| {
            let t = r.open_table(FEEDBACK)?;
            let mut out = Vec::new();
            for e in t.iter()? {
                let (k, v) = e?;
                out.push((k.value().0.to_owned(), dec("feedback", v.value())?));
            }
            Ok(out)
        })
    }
}
