//! Agent profiles (`AGENTS`, keyed by profile id) and the built-in agent's per-turn usage
//! (`AGENT_TURNS`, keyed by (session, turn)).

use redb::{ReadableTable, ReadableTableMetadata};

use crate::db::Store;
use crate::records::{AgentProfileRecord, AgentTurnRecord};
use crate::sessions::require_session;
use crate::tables::{AGENT_TURNS, AGENTS, SESSIONS, dec, enc, next_seq_in, range_after};
use crate::{StoreError, now_ms};

impl Store {
    /// Inserts a new profile (its id must be unused); sets `created_at`/`updated_at`.
    pub async fn create_agent(
        &self,
        p: AgentProfileRecord,
    ) -> Result<AgentProfileRecord, StoreError> {
        self.write(move |w| {
            let mut p = p.clone();
            let mut t = w.open_table(AGENTS)?;
            if t.get(p.id.as_str())?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "agent profile {} exists",
                    p.id
                )));
            }
            let now = now_ms();
            p.created_at = now;
            p.updated_at = now;
            t.insert(p.id.as_str(), enc(&p)?.as_slice())?;
            Ok(p)
        })
        .await
    }

    /// Replaces an existing profile (keeps `id`, `owner` and `created_at`; sets `updated_at`).
    pub async fn replace_agent(
        &self,
        p: AgentProfileRecord,
    ) -> Result<AgentProfileRecord, StoreError> {
        self.write(move |w| {
            let mut t = w.open_table(AGENTS)?;
            let old: AgentProfileRecord = match t.get(p.id.as_str())? {
                Some(v) => dec("agents", v.value())?,
                None => return Err(StoreError::NotFound(format!("agent profile {}", p.id))),
            };
            let mut rec = p.clone();
            rec.owner = old.owner;
            rec.created_at = old.created_at;
            rec.updated_at = now_ms().max(old.updated_at);
            t.insert(rec.id.as_str(), enc(&rec)?.as_slice())?;
            Ok(rec)
        })
        .await
    }

    /// A profile by id.
    pub fn get_agent(&self, id: &str) -> Result<Option<AgentProfileRecord>, StoreError> {
        self.read(|r| {
            let t = r.open_table(AGENTS)?;
            t.get(id)?.map(|v| dec("agents", v.value())).transpose()
        })
    }

    /// Every profile (of `owner` only, if given), by name.
    pub fn list_agents(&self, owner: Option<&str>) -> Result<Vec<AgentProfileRecord>, StoreError> {
        self.read(|r| {
            let t = r.open_table(AGENTS)?;
            let mut out: Vec<AgentProfileRecord> =
                Vec::with_capacity(usize::try_from(t.len()?).unwrap_or(0));
            for e in t.iter()? {
                let (_, v) = e?;
                let p: AgentProfileRecord = dec("agents", v.value())?;
                if owner.is_none_or(|o| o == p.owner) {
                    out.push(p);
                }
            }
            out.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
            Ok(out)
        })
    }

    /// Deletes a profile; refused (`Conflict`) while a session still uses it.
    pub async fn delete_agent(&self, id: &str) -> Result<AgentProfileRecord, StoreError> {
        let id = id.to_owned();
        self.write(move |w| {
            {
                let sessions = w.open_table(SESSIONS)?;
                for e in sessions.iter()? {
                    let (k, v) = e?;
                    let s: crate::records::SessionRecord = dec("sessions", v.value())?;
                    if s.agent.as_deref() == Some(id.as_str()) {
                        return Err(StoreError::Conflict(format!(
                            "agent profile {id} is used by session {}",
                            k.value()
                        )));
                    }
                }
            }
            match w.open_table(AGENTS)?.remove(id.as_str())? {
                Some(v) => dec("agents", v.value()),
                None => Err(StoreError::NotFound(format!("agent profile {id}"))),
            }
        })
        .await
    }

    /// Appends one finished agent turn to a session; returns it with its turn number.
    pub async fn append_agent_turn(
        &self,
        session: &str,
        rec: AgentTurnRecord,
    ) -> Result<AgentTurnRecord, StoreError> {
        let sid = session.to_owned();
        self.write(move |w| {
            let mut rec = rec.clone();
            require_session(w, &sid)?;
            let mut t = w.open_table(AGENT_TURNS)?;
            rec.turn = next_seq_in(&t, &sid)?;
            t.insert((sid.as_str(), rec.turn), enc(&rec)?.as_slice())?;
            Ok(rec)
        })
        .await
    }

    /// Up to `limit` agent turns of a session with `turn > after`, oldest first.
    pub fn list_agent_turns(
        &self,
        session: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AgentTurnRecord>, StoreError> {
        self.read(|r| {
            range_after(
                &r.open_table(AGENT_TURNS)?,
                "agent_turns",
                session,
                after,
                limit,
            )
        })
    }
}
