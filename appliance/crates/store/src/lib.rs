//! zigral-store: the appliance's embedded redb database (`<state>/zigral.redb`).
//!
//! [`Store`] (module `db`) is the only owner of the tables and of the single writer thread:
//! handlers call typed async methods, the writer groups concurrent requests into one durable
//! redb commit, and a method returns only after that commit is on disk. Reads run on the
//! caller's thread from a consistent snapshot. The tables are defined in `tables` and migrated
//! by `migrate`; each entity's methods are an `impl Store` block in a module of their own
//! (`users`, `tokens`, `sessions`, `messages`, `actions`, `feedback`, `checkpoints`,
//! `summaries`, `config`, `audit`, `desktops`, `agents`, `recordings`). The record types stored in the tables live in
//! [`records`]. Secrets are never stored: users carry an argon2id PHC hash, tokens a SHA-256
//! hash.

mod actions;
mod agents;
mod audit;
mod checkpoints;
mod config;
mod db;
mod desktops;
mod feedback;
mod messages;
mod migrate;
mod recordings;
pub mod records;
mod sessions;
mod summaries;
mod tables;
mod tokens;
mod users;

pub use db::{DB_FILE, Store, StoreStats};
pub use migrate::{SCHEMA_VERSION, force_schema_version};
pub use records::*;

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error("cannot open database {path}: {message}")]
    Open { path: String, message: String },
    /// The file was written by a newer build with a schema this build does not know.
    #[error(
        "database {path} has schema version {found}, newer than this build supports ({supported}); \
         run a newer zigral or restore a backup made by this version"
    )]
    NewerSchema {
        path: String,
        found: u64,
        supported: u64,
    },
    /// redb reported an I/O or consistency error.
    #[error("storage error: {0}")]
    Storage(String),
    /// A record could not be (de)serialised.
    #[error("corrupt record in {table}: {message}")]
    Corrupt {
        table: &'static str,
        message: String,
    },
    /// The addressed record does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The write conflicts with existing data (e.g. a duplicate user name).
    #[error("{0}")]
    Conflict(String),
    /// The request is inconsistent with stored data (e.g. a summary range past the end).
    #[error("{0}")]
    Invalid(String),
    /// The writer thread has stopped.
    #[error("the store is closed")]
    Closed,
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Storage(e.to_string())
            }
        }
    )*};
}
storage_from!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
