//! Sessions: records with an owner index; deleting one deletes everything recorded under it.

use redb::{ReadableTable, WriteTransaction};

use crate::db::Store;
use crate::records::*;
use crate::tables::{
    ACTIONS, AGENT_TURNS, AGENTS, CHECKPOINTS, FEEDBACK, MESSAGES, SESSIONS, SESSIONS_BY_OWNER,
    SUMMARIES, dec, enc, next_str,
};
use crate::{StoreError, now_ms};

impl Store {
    /// Adds a session.
    pub async fn create_session(&self, s: SessionRecord) -> Result<SessionRecord, StoreError> {
        self.write(move |w| {
            let mut t = w.open_table(SESSIONS)?;
            if t.get(s.id.as_str())?.is_some() {
                return Err(StoreError::Conflict(format!("session {} exists", s.id)));
            }
            t.insert(s.id.as_str(), enc(&s)?.as_slice())?;
            w.open_table(SESSIONS_BY_OWNER)?
                .insert((s.owner.as_str(), s.id.as_str()), ())?;
            Ok(s.clone())
        })
        .await
    }

    /// A session by id.
    pub fn get_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.read(|r| {
            let t = r.open_table(SESSIONS)?;
            t.get(id)?.map(|v| dec("sessions", v.value())).transpose()
        })
    }

    /// Sessions of `owner` (all sessions with `None`), newest first.
    pub fn list_sessions(&self, owner: Option<&str>) -> Result<Vec<SessionRecord>, StoreError> {
        self.read(|r| {
            let t = r.open_table(SESSIONS)?;
            let mut out: Vec<SessionRecord> = Vec::new();
            match owner {
                Some(o) => {
                    let idx = r.open_table(SESSIONS_BY_OWNER)?;
                    for e in idx.range((o, "")..)? {
                        let (k, _) = e?;
                        let (ko, sid) = k.value();
                        if ko != o {
                            break;
                        }
                        if let Some(v) = t.get(sid)? {
                            out.push(dec("sessions", v.value())?);
                        }
                    }
                }
                None => {
                    for e in t.iter()? {
                        let (_, v) = e?;
                        out.push(dec("sessions", v.value())?);
                    }
                }
            }
            out.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
            Ok(out)
        })
    }

    /// Changes a session's title, system prompt and/or state.
    pub async fn update_session(
        &self,
        id: &str,
        title: Option<String>,
        system_prompt: Option<Option<String>>,
        state: Option<String>,
    ) -> Result<SessionRecord, StoreError> {
        let id = id.to_owned();
        self.write(move |w| {
            let mut t = w.open_table(SESSIONS)?;
            let mut s: SessionRecord = match t.get(id.as_str())? {
                Some(v) => dec("sessions", v.value())?,
                None => return Err(StoreError::NotFound(format!("session {id}"))),
            };
            if let Some(x) = &title {
                s.title = x.clone();
            }
            if let Some(x) = &system_prompt {
                s.system_prompt = x.clone();
            }
            if let Some(x) = &state {
                s.state = x.clone();
            }
            s.updated_at = now_ms();
            t.insert(id.as_str(), enc(&s)?.as_slice())?;
            Ok(s)
        })
        .await
    }

    /// Binds a session to desktop `n` (after its earlier desktop was destroyed).
    pub async fn set_session_desktop(&self, id: &str, n: u32) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.write(move |w| {
            let mut s = require_session(w, &id)?;
            s.desktop = n;
            s.updated_at = now_ms();
            w.open_table(SESSIONS)?
                .insert(id.as_str(), enc(&s)?.as_slice())?;
            Ok(())
        })
        .await
    }

    /// Sets (or clears) the agent profile driving a session.
    pub async fn set_session_agent(
        &self,
        id: &str,
        agent: Option<String>,
    ) -> Result<SessionRecord, StoreError> {
        let id = id.to_owned();
        self.write(move |w| {
            let mut s = require_session(w, &id)?;
            if let Some(a) = &agent
                && w.open_table(AGENTS)?.get(a.as_str())?.is_none()
            {
                return Err(StoreError::NotFound(format!("agent profile {a}")));
            }
            s.agent = agent.clone();
            s.updated_at = now_ms();
            w.open_table(SESSIONS)?
                .insert(id.as_str(), enc(&s)?.as_slice())?;
            Ok(s)
        })
        .await
    }

    /// Sets (or with `None` clears) the session's human-in-the-loop override.
    pub async fn set_session_hitl(
        &self,
        id: &str,
        hitl: Option<bool>,
    ) -> Result<SessionRecord, StoreError> {
        let id = id.to_owned();
        self.write(move |w| {
            let mut s = require_session(w, &id)?;
            s.hitl = hitl;
            s.updated_at = now_ms();
            w.open_table(SESSIONS)?
                .insert(id.as_str(), enc(&s)?.as_slice())?;
            Ok(s)
        })
        .await
    }

    /// Deletes a session and everything recorded under it (messages, actions, feedback,
    /// checkpoints, summaries).
    pub async fn delete_session(&self, id: &str) -> Result<SessionRecord, StoreError> {
        let id = id.to_owned();
        self.write(move |w| {
            let s: SessionRecord = match w.open_table(SESSIONS)?.remove(id.as_str())? {
                Some(v) => dec("sessions", v.value())?,
                None => return Err(StoreError::NotFound(format!("session {id}"))),
            };
            let sid = id.as_str();
            w.open_table(SESSIONS_BY_OWNER)?
                .remove((s.owner.as_str(), sid))?;
            for def in [MESSAGES, ACTIONS, FEEDBACK, SUMMARIES, AGENT_TURNS] {
                w.open_table(def)?
                    .retain_in((sid, 0u64)..=(sid, u64::MAX), |_, _| false)?;
            }
            w.open_table(CHECKPOINTS)?
                .retain_in((sid, "")..(next_str(sid).as_str(), ""), |_, _| false)?;
            Ok(s)
        })
        .await
    }
}

pub(crate) fn require_session(
    w: &WriteTransaction,
    sid: &str,
) -> Result<SessionRecord, StoreError> {
    match w.open_table(SESSIONS)?.get(sid)? {
        Some(v) => dec("sessions", v.value()),
        None => Err(StoreError::NotFound(format!("session {sid}"))),
    }
}
