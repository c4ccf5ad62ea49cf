//! Summaries: condensed ranges of a session's turns, keyed by (session, to_seq).

use crate::db::Store;
use crate::records::*;
use crate::sessions::require_session;
use crate::tables::{SUMMARIES, dec, enc, range_after};
use crate::{StoreError, now_ms};

impl Store {
    /// Stores a summary of turns `[from_seq, to_seq]`; the range must lie within the messages
    /// appended so far.
    pub async fn put_summary(
        &self,
        session: &str,
        sum: SummaryRecord,
    ) -> Result<SummaryRecord, StoreError> {
        let sid = session.to_owned();
        self.write(move |w| {
            let s = require_session(w, &sid)?;
            if sum.from_seq > sum.to_seq || sum.to_seq >= s.next_seq {
                return Err(StoreError::Invalid(format!(
                    "summary range {}..={} is not within the session's messages 0..{}",
                    sum.from_seq, sum.to_seq, s.next_seq
                )));
            }
            let mut rec = sum.clone();
            rec.created_at = now_ms();
            w.open_table(SUMMARIES)?
                .insert((sid.as_str(), rec.to_seq), enc(&rec)?.as_slice())?;
            Ok(rec)
        })
        .await
    }

    /// The summary reaching furthest into the conversation.
    pub fn latest_summary(&self, session: &str) -> Result<Option<SummaryRecord>, StoreError> {
        self.read(|r| {
            let t = r.open_table(SUMMARIES)?;
            let last = t
                .range((session, 0u64)..=(session, u64::MAX))?
                .next_back()
                .transpose()?;
            last.map(|(_, v)| dec("summaries", v.value())).transpose()
        })
    }

    /// All summaries of a session, ordered by `to_seq`.
    pub fn list_summaries(&self, session: &str) -> Result<Vec<SummaryRecord>, StoreError> {
        self.read(|r| {
            range_after(
                &r.open_table(SUMMARIES)?,
                "summaries",
                session,
                None,
                usize::MAX,
            )
        })
    }
}
