//! Every redb table definition, the schema key, and the helpers shared by the entity modules:
//! JSON encoding of records and range scans over `(session, seq)`-keyed tables.

use redb::{ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::StoreError;

pub(crate) type Json = &'static [u8];
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const USERS: TableDefinition<&str, Json> = TableDefinition::new("users");
pub(crate) const USERNAMES: TableDefinition<&str, &str> = TableDefinition::new("usernames");
/// token hash (hex SHA-256) → TokenRecord.
pub(crate) const API_TOKENS: TableDefinition<&str, Json> = TableDefinition::new("api_tokens");
/// token id → token hash.
pub(crate) const TOKEN_IDS: TableDefinition<&str, &str> = TableDefinition::new("token_ids");
pub(crate) const SESSIONS: TableDefinition<&str, Json> = TableDefinition::new("sessions");
/// (owner, session id) → ().
pub(crate) const SESSIONS_BY_OWNER: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("sessions_by_owner");
pub(crate) const MESSAGES: TableDefinition<(&str, u64), Json> = TableDefinition::new("messages");
pub(crate) const ACTIONS: TableDefinition<(&str, u64), Json> = TableDefinition::new("actions");
pub(crate) const FEEDBACK: TableDefinition<(&str, u64), Json> = TableDefinition::new("feedback");
pub(crate) const CHECKPOINTS: TableDefinition<(&str, &str), Json> =
    TableDefinition::new("checkpoints");
/// (session, to_seq) → SummaryRecord.
pub(crate) const SUMMARIES: TableDefinition<(&str, u64), Json> = TableDefinition::new("summaries");
pub(crate) const CONFIG: TableDefinition<&str, Json> = TableDefinition::new("config");
/// desktop number → DesktopRecord.
pub(crate) const DESKTOPS: TableDefinition<u32, Json> = TableDefinition::new("desktops");
/// agent profile id → AgentProfileRecord.
pub(crate) const AGENTS: TableDefinition<&str, Json> = TableDefinition::new("agents");
/// (session, turn) → AgentTurnRecord.
pub(crate) const AGENT_TURNS: TableDefinition<(&str, u64), Json> =
    TableDefinition::new("agent_turns");
pub(crate) const AUDIT: TableDefinition<u64, Json> = TableDefinition::new("audit");
/// Desktop recordings by id.
pub(crate) const RECORDINGS: TableDefinition<&str, Json> = TableDefinition::new("recordings");

pub(crate) const SCHEMA_KEY: &str = "schema_version";

pub(crate) fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Invalid(format!("cannot encode record: {e}")))
}

pub(crate) fn dec<T: DeserializeOwned>(table: &'static str, b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt {
        table,
        message: e.to_string(),
    })
}

/// The smallest string greater than every string starting with `s` is hard to name; instead we
/// bound `(s, "")..(s + "\0", "")`, which covers exactly the keys whose first part is `s`.
pub(crate) fn next_str(s: &str) -> String {
    let mut x = String::with_capacity(s.len() + 1);
    x.push_str(s);
    x.push('\0');
    x
}

pub(crate) fn next_seq_in<T: ReadableTable<(&'static str, u64), Json>>(
    t: &T,
    sid: &str,
) -> Result<u64, StoreError> {
    let last = t
        .range((sid, 0u64)..=(sid, u64::MAX))?
        .next_back()
        .transpose()?;
    Ok(match last {
        Some((k, _)) => k.value().1 + 1,
        None => 0,
    })
}

pub(crate) fn range_after<R: DeserializeOwned, T: ReadableTable<(&'static str, u64), Json>>(
    t: &T,
    table: &'static str,
    session: &str,
    after: Option<u64>,
    limit: usize,
) -> Result<Vec<R>, StoreError> {
    let lo = match after {
        Some(u64::MAX) => return Ok(Vec::new()),
        Some(a) => a + 1,
        None => 0,
    };
    let mut out = Vec::new();
    for e in t.range((session, lo)..=(session, u64::MAX))?.take(limit) {
        let (_, v) = e?;
        out.push(dec(table, v.value())?);
    }
    Ok(out)
}
