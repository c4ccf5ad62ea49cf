//! Schema migrations: bring a file to [`SCHEMA_VERSION`] on open, refuse a newer one.

use std::path::Path;

use redb::{Database, ReadableTable};

use crate::StoreError;
use crate::tables::*;

/// Schema version written by this build.
pub const SCHEMA_VERSION: u64 = 4;

/// Brings the file to [`SCHEMA_VERSION`], or refuses a newer one.
pub(crate) fn migrate(db: &Database, path: &Path) -> Result<(), StoreError> {
    let w = db.begin_write()?;
    let found = {
        let t = w.open_table(META)?;
        t.get(SCHEMA_KEY)?.map(|v| v.value()).unwrap_or(0)
    };
    if found > SCHEMA_VERSION {
        w.abort()?;
        return Err(StoreError::NewerSchema {
            path: path.display().to_string(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found == SCHEMA_VERSION {
        w.abort()?;
        return Ok(());
    }
    for v in found + 1..=SCHEMA_VERSION {
        tracing::info!(from = v - 1, to = v, "migrating store schema");
        match v {
            1 => {
                // Version 1: every table exists (opening creates it).
                w.open_table(USERS)?;
                w.open_table(USERNAMES)?;
                w.open_table(API_TOKENS)?;
                w.open_table(TOKEN_IDS)?;
                w.open_table(SESSIONS)?;
                w.open_table(SESSIONS_BY_OWNER)?;
                w.open_table(MESSAGES)?;
                w.open_table(ACTIONS)?;
                w.open_table(FEEDBACK)?;
                w.open_table(CHECKPOINTS)?;
                w.open_table(SUMMARIES)?;
                w.open_table(CONFIG)?;
                w.open_table(AUDIT)?;
            }
            2 => {
                // Version 2: desktops the control plane owns. User records gained fields with
                // serde defaults (disabled, persistent_profile, limits): nothing to rewrite.
                w.open_table(DESKTOPS)?;
            }
            3 => {
                // Version 3: agent profiles and per-turn agent usage. Sessions gained `agent`
                // (serde default `None`): nothing to rewrite.
                w.open_table(AGENTS)?;
                w.open_table(AGENT_TURNS)?;
            }
            4 => {
                // Version 4: desktop recordings.
                w.open_table(RECORDINGS)?;
            }
            other => {
                return Err(StoreError::Storage(format!(
                    "no migration to schema version {other}"
                )));
            }
        }
    }
    w.open_table(META)?.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
    w.commit()?;
    Ok(())
}

/// Test hook: writes an arbitrary schema version (to test refusal of newer files).
#[doc(hidden)]
pub fn force_schema_version(path: &Path, version: u64) -> Result<(), StoreError> {
    let db = Database::create(path).map_err(|e| StoreError::Open {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let w = db.begin_write()?;
    w.open_table(META)?.insert(SCHEMA_KEY, version)?;
    w.commit()?;
    Ok(())
}
