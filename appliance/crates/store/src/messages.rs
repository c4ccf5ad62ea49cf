//! Messages: a session's conversation turns, keyed by (session, seq).

use redb::ReadableTable;

use crate::db::Store;
use crate::records::*;
use crate::tables::{MESSAGES, SESSIONS, dec, enc, range_after};
use crate::{StoreError, now_ms};

impl Store {
    /// Appends one message; returns it with its sequence number.
    pub async fn append_message(
        &self,
        session: &str,
        msg: NewMessage,
    ) -> Result<MessageRecord, StoreError> {
        let mut v = self.append_messages(session, vec![msg]).await?;
        v.pop()
            .ok_or_else(|| StoreError::Storage("append returned nothing".into()))
    }

    /// Appends messages in order in one commit; returns them with their sequence numbers.
    pub async fn append_messages(
        &self,
        session: &str,
        msgs: Vec<NewMessage>,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let sid = session.to_owned();
        self.write(move |w| {
            let mut st = w.open_table(SESSIONS)?;
            let mut s: SessionRecord = match st.get(sid.as_str())? {
                Some(v) => dec("sessions", v.value())?,
                None => return Err(StoreError::NotFound(format!("session {sid}"))),
            };
            let now = now_ms();
            let mut mt = w.open_table(MESSAGES)?;
            let mut out = Vec::with_capacity(msgs.len());
            for m in &msgs {
                let rec = MessageRecord {
                    seq: s.next_seq,
                    role: m.role.clone(),
                    content: m.content.clone(),
                    tokens: m.tokens,
                    author: m.author.clone(),
                    created_at: now,
                };
                mt.insert((sid.as_str(), rec.seq), enc(&rec)?.as_slice())?;
                s.next_seq += 1;
                s.message_count += 1;
                out.push(rec);
            }
            s.updated_at = now;
            st.insert(sid.as_str(), enc(&s)?.as_slice())?;
            Ok(out)
        })
        .await
    }

    /// Up to `limit` messages with `seq > after` (from the start with `None`), oldest first.
    pub fn list_messages(
        &self,
        session: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        self.read(|r| range_after(&r.open_table(MESSAGES)?, "messages", session, after, limit))
    }

    /// Visits messages newest first, down to (excluding) `stop_at_or_below` if given, while
    /// `visit` returns true. Used to assemble context windows from the tail.
    pub fn visit_messages_newest_first(
        &self,
        session: &str,
        stop_at_or_below: Option<u64>,
        mut visit: impl FnMut(MessageRecord) -> bool,
    ) -> Result<(), StoreError> {
        self.read(|r| {
            let t = r.open_table(MESSAGES)?;
            let lo = stop_at_or_below.map(|x| x.saturating_add(1)).unwrap_or(0);
            if stop_at_or_below == Some(u64::MAX) {
                return Ok(());
            }
            for e in t.range((session, lo)..=(session, u64::MAX))?.rev() {
                let (_, v) = e?;
                if !visit(dec("messages", v.value())?) {
                    break;
                }
            }
            Ok(())
        })
    }
}
