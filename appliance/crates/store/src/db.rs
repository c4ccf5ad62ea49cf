//! The one owner of the redb file: table definitions, schema migrations and the single writer.
//!
//! Writes are closures sent to one writer thread. It takes every request that is waiting,
//! runs them in one write transaction and commits with `Durability::Immediate` (fsync) before
//! answering any of them (group commit). If one request fails, the batch is rolled back and
//! each request is re-run in its own transaction so a bad request never sinks a good one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::records::*;
use crate::{StoreError, now_ms};

/// Schema version written by this build.
pub const SCHEMA_VERSION: u64 = 1;

/// File name of the database inside the state directory.
pub const DB_FILE: &str = "zigral.redb";

type Json = &'static [u8];
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const USERS: TableDefinition<&str, Json> = TableDefinition::new("users");
const USERNAMES: TableDefinition<&str, &str> = TableDefinition::new("usernames");
/// token hash (hex SHA-256) → TokenRecord.
const API_TOKENS: TableDefinition<&str, Json> = TableDefinition::new("api_tokens");
/// token id → token hash.
const TOKEN_IDS: TableDefinition<&str, &str> = TableDefinition::new("token_ids");
const SESSIONS: TableDefinition<&str, Json> = TableDefinition::new("sessions");
/// (owner, session id) → ().
const SESSIONS_BY_OWNER: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("sessions_by_owner");
const MESSAGES: TableDefinition<(&str, u64), Json> = TableDefinition::new("messages");
const ACTIONS: TableDefinition<(&str, u64), Json> = TableDefinition::new("actions");
const FEEDBACK: TableDefinition<(&str, u64), Json> = TableDefinition::new("feedback");
const CHECKPOINTS: TableDefinition<(&str, &str), Json> = TableDefinition::new("checkpoints");
/// (session, to_seq) → SummaryRecord.
const SUMMARIES: TableDefinition<(&str, u64), Json> = TableDefinition::new("summaries");
const CONFIG: TableDefinition<&str, Json> = TableDefinition::new("config");
const AUDIT: TableDefinition<u64, Json> = TableDefinition::new("audit");

const SCHEMA_KEY: &str = "schema_version";
/// redb page cache; the working set is small and RSS matters on the appliance.
const CACHE_BYTES: usize = 16 * 1024 * 1024;
/// Most requests folded into one commit.
const MAX_BATCH: usize = 256;

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Invalid(format!("cannot encode record: {e}")))
}

fn dec<T: DeserializeOwned>(table: &'static str, b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt {
        table,
        message: e.to_string(),
    })
}

/// Counters exposed on `/metrics`.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub commits: AtomicU64,
    pub commit_micros_total: AtomicU64,
    pub batched_requests: AtomicU64,
    pub failed_requests: AtomicU64,
}

trait Job: Send {
    fn run(&mut self, txn: &WriteTransaction) -> Result<(), StoreError>;
    fn finish(self: Box<Self>, outcome: Result<(), StoreError>);
}

struct TypedJob<T, F> {
    f: F,
    out: Option<T>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send + 'static,
    F: FnMut(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
{
    fn run(&mut self, txn: &WriteTransaction) -> Result<(), StoreError> {
        self.out = Some((self.f)(txn)?);
        Ok(())
    }
    fn finish(self: Box<Self>, outcome: Result<(), StoreError>) {
        let this = *self;
        let res = match (outcome, this.out) {
            (Ok(()), Some(v)) => Ok(v),
            (Ok(()), None) => Err(StoreError::Storage("write produced no result".into())),
            (Err(e), _) => Err(e),
        };
        let _ = this.reply.send(res);
    }
}

struct Inner {
    db: Arc<Database>,
    path: PathBuf,
    tx: mpsc::Sender<Box<dyn Job>>,
    stats: Arc<StoreStats>,
}

/// Handle to the open database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl Store {
    /// Opens (or creates) `<state_dir>/zigral.redb`.
    pub fn open_in(state_dir: &Path) -> Result<Store, StoreError> {
        Store::open(&state_dir.join(DB_FILE))
    }

    /// Opens (or creates) the database at `path`, migrating it to [`SCHEMA_VERSION`]. Refuses a
    /// file with a newer schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |e: &dyn std::fmt::Display| StoreError::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| open_err(&e))?;
        // Users, sessions, checkpoints (cookies): readable by the control plane's user only,
        // whatever the umask it was started with.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| open_err(&e))?;
        }
        migrate(&db, path)?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
        let stats = Arc::new(StoreStats::default());
        let wdb = db.clone();
        let wstats = stats.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(&wdb, &rx, &wstats))
            .map_err(|e| open_err(&e))?;
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                path: path.to_owned(),
                tx,
                stats,
            }),
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Commit counters.
    pub fn stats(&self) -> &StoreStats {
        &self.inner.stats
    }

    /// The schema version stored in the file.
    pub fn schema_version(&self) -> Result<u64, StoreError> {
        self.read(|r| {
            let t = r.open_table(META)?;
            Ok(t.get(SCHEMA_KEY)?.map(|v| v.value()).unwrap_or(0))
        })
    }

    /// Checks that the database answers a read (for readiness probes).
    pub fn ping(&self) -> Result<(), StoreError> {
        self.schema_version().map(|_| ())
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.inner.db.begin_read()?;
        f(&txn)
    }

    /// Runs `f` inside a durable write transaction on the writer thread; resolves after commit.
    /// `f` may run more than once (if a batch is retried), so it must not have side effects
    /// outside the transaction.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(TypedJob {
            f,
            out: None,
            reply,
        });
        self.inner.tx.send(job).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    // ---------------------------------------------------------------- users

    /// Number of users.
    pub fn user_count(&self) -> Result<u64, StoreError> {
        self.read(|r| Ok(r.open_table(USERS)?.len()?))
    }

    /// Adds a user; `Conflict` if the user name is taken.
    pub async fn create_user(&self, user: UserRecord) -> Result<UserRecord, StoreError> {
        self.write(move |w| {
            let mut names = w.open_table(USERNAMES)?;
            if names.get(user.username.as_str())?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "user name '{}' is taken",
                    user.username
                )));
            }
            names.insert(user.username.as_str(), user.id.as_str())?;
            w.open_table(USERS)?
                .insert(user.id.as_str(), enc(&user)?.as_slice())?;
            Ok(user.clone())
        })
        .await
    }

    /// A user by id.
    pub fn get_user(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        self.read(|r| {
            let t = r.open_table(USERS)?;
            t.get(id)?.map(|v| dec("users", v.value())).transpose()
        })
    }

    /// A user by user name.
    pub fn get_user_by_name(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        self.read(|r| {
            let names = r.open_table(USERNAMES)?;
            let Some(id) = names.get(username)? else {
                return Ok(None);
            };
            let t = r.open_table(USERS)?;
            t.get(id.value())?
                .map(|v| dec("users", v.value()))
                .transpose()
        })
    }

    /// All users, ordered by id.
    pub fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.read(|r| {
            let t = r.open_table(USERS)?;
            t.iter()?
                .map(|e| {
                    let (_, v) = e?;
                    dec("users", v.value())
                })
                .collect()
        })
    }

    /// Replaces a user's password hash.
    pub async fn set_password_hash(&self, id: &str, hash: String) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.write(move |w| {
            let mut t = w.open_table(USERS)?;
            let mut u: UserRecord = match t.get(id.as_str())? {
                Some(v) => dec("users", v.value())?,
                None => return Err(StoreError::NotFound(format!("user {id}"))),
            };
            u.password_hash = hash.clone();
            t.insert(id.as_str(), enc(&u)?.as_slice())?;
            Ok(())
        })
        .await
    }

    /// Deletes a user and every token of theirs. Their sessions stay (an admin can still see
    /// and delete them).
    pub async fn delete_user(&self, id: &str) -> Result<UserRecord, StoreError> {
        let id = id.to_owned();
        self.write(move |w| {
            let mut t = w.open_table(USERS)?;
            let u: UserRecord = match t.remove(id.as_str())? {
                Some(v) => dec("users", v.value())?,
                None => return Err(StoreError::NotFound(format!("user {id}"))),
            };
            w.open_table(USERNAMES)?.remove(u.username.as_str())?;
            let mut tokens = w.open_table(API_TOKENS)?;
            let mut ids = w.open_table(TOKEN_IDS)?;
            let mut doomed = Vec::new();
            for e in tokens.iter()? {
                let (k, v) = e?;
                let rec: TokenRecord = dec("api_tokens", v.value())?;
                if rec.user_id == id {
                    doomed.push((k.value().to_owned(), rec.id));
                }
            }
            for (hash, tid) in doomed {
                tokens.remove(hash.as_str())?;
                ids.remove(tid.as_str())?;
            }
            Ok(u)
        })
        .await
    }

    // --------------------------------------------------------------- tokens

    /// Stores a token record under the hash of its secret.
    pub async fn put_token(&self, hash: String, rec: TokenRecord) -> Result<(), StoreError> {
        self.write(move |w| {
            let mut ids = w.open_table(TOKEN_IDS)?;
            if ids.get(rec.id.as_str())?.is_some() {
                return Err(StoreError::Conflict(format!("token id {} exists", rec.id)));
            }
            ids.insert(rec.id.as_str(), hash.as_str())?;
            w.open_table(API_TOKENS)?
                .insert(hash.as_str(), enc(&rec)?.as_slice())?;
            Ok(())
        })
        .await
    }

    /// The token whose secret hashes to `hash`.
    pub fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.read(|r| {
            let t = r.open_table(API_TOKENS)?;
            t.get(hash)?
                .map(|v| dec("api_tokens", v.value()))
                .transpose()
        })
    }

    /// A token by its public id.
    pub fn token_by_id(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.read(|r| {
            let ids = r.open_table(TOKEN_IDS)?;
            let Some(h) = ids.get(id)? else {
                return Ok(None);
            };
            let t = r.open_table(API_TOKENS)?;
            t.get(h.value())?
                .map(|v| dec("api_tokens", v.value()))
                .transpose()
        })
    }

    /// Tokens of one user (or all users with `None`) of one kind, oldest first.
    pub fn list_tokens(
        &self,
        user_id: Option<&str>,
        kind: TokenKind,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        self.read(|r| {
            let t = r.open_table(API_TOKENS)?;
            let mut out = Vec::new();
            for e in t.iter()? {
                let (_, v) = e?;
                let rec: TokenRecord = dec("api_tokens", v.value())?;
                if rec.kind == kind && user_id.is_none_or(|u| u == rec.user_id) {
                    out.push(rec);
                }
            }
            out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            Ok(out)
        })
    }

    /// Removes a token by its public id; returns it, `NotFound` if unknown.
    pub async fn revoke_token(&self, id: &str) -> Result<TokenRecord, StoreError> {
        let id = id.to_owned();
        self.write(move |w| {
            let mut ids = w.open_table(TOKEN_IDS)?;
            let hash = match ids.remove(id.as_str())? {
                Some(h) => h.value().to_owned(),
                None => return Err(StoreError::NotFound(format!("token {id}"))),
            };
            let mut t = w.open_table(API_TOKENS)?;
            let rec = match t.remove(hash.as_str())? {
                Some(v) => dec("api_tokens", v.value())?,
                None => return Err(StoreError::NotFound(format!("token {id}"))),
            };
            Ok(rec)
        })
        .await
    }

    /// Deletes tokens that expired before `now_ms`; returns how many.
    pub async fn purge_expired_tokens(&self, now: u64) -> Result<usize, StoreError> {
        self.write(move |w| {
            let mut t = w.open_table(API_TOKENS)?;
            let mut ids = w.open_table(TOKEN_IDS)?;
            let mut doomed = Vec::new();
            for e in t.iter()? {
                let (k, v) = e?;
                let rec: TokenRecord = dec("api_tokens", v.value())?;
                if rec.expires_at.is_some_and(|x| x <= now) {
                    doomed.push((k.value().to_owned(), rec.id));
                }
            }
            for (hash, id) in &doomed {
                t.remove(hash.as_str())?;
                ids.remove(id.as_str())?;
            }
            Ok(doomed.len())
        })
        .await
    }

    // ------------------------------------------------------------- sessions

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
            for def in [MESSAGES, ACTIONS, FEEDBACK, SUMMARIES] {
                w.open_table(def)?
                    .retain_in((sid, 0u64)..=(sid, u64::MAX), |_, _| false)?;
            }
            w.open_table(CHECKPOINTS)?
                .retain_in((sid, "")..(next_str(sid).as_str(), ""), |_, _| false)?;
            Ok(s)
        })
        .await
    }

    // ------------------------------------------------------------- messages

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

    // -------------------------------------------------------------- actions

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

    // ------------------------------------------------------------- feedback

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

    // ---------------------------------------------------------- checkpoints

    /// Stores (or replaces) a checkpoint of a session.
    pub async fn put_checkpoint(
        &self,
        session: &str,
        cp: CheckpointRecord,
    ) -> Result<CheckpointMeta, StoreError> {
        let sid = session.to_owned();
        self.write(move |w| {
            require_session(w, &sid)?;
            let mut cp = cp.clone();
            let data = enc(&cp.data)?;
            cp.meta.size_bytes = data.len() as u64;
            w.open_table(CHECKPOINTS)?
                .insert((sid.as_str(), cp.meta.id.as_str()), enc(&cp)?.as_slice())?;
            Ok(cp.meta)
        })
        .await
    }

    /// One checkpoint with its data.
    pub fn get_checkpoint(
        &self,
        session: &str,
        id: &str,
    ) -> Result<Option<CheckpointRecord>, StoreError> {
        self.read(|r| {
            let t = r.open_table(CHECKPOINTS)?;
            t.get((session, id))?
                .map(|v| dec("checkpoints", v.value()))
                .transpose()
        })
    }

    /// Metadata of a session's checkpoints, ordered by id.
    pub fn list_checkpoints(&self, session: &str) -> Result<Vec<CheckpointMeta>, StoreError> {
        self.read(|r| {
            let t = r.open_table(CHECKPOINTS)?;
            let end = next_str(session);
            let mut out = Vec::new();
            for e in t.range((session, "")..(end.as_str(), ""))? {
                let (_, v) = e?;
                let rec: CheckpointRecord = dec("checkpoints", v.value())?;
                out.push(rec.meta);
            }
            Ok(out)
        })
    }

    /// Deletes one checkpoint; `NotFound` if absent.
    pub async fn delete_checkpoint(&self, session: &str, id: &str) -> Result<(), StoreError> {
        let (sid, id) = (session.to_owned(), id.to_owned());
        self.write(move |w| {
            match w
                .open_table(CHECKPOINTS)?
                .remove((sid.as_str(), id.as_str()))?
            {
                Some(_) => Ok(()),
                None => Err(StoreError::NotFound(format!("checkpoint {id}"))),
            }
        })
        .await
    }

    // ------------------------------------------------------------ summaries

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

    // --------------------------------------------------------------- config

    /// Sets a configuration value.
    pub async fn put_config(&self, key: &str, value: serde_json::Value) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.write(move |w| {
            w.open_table(CONFIG)?
                .insert(key.as_str(), enc(&value)?.as_slice())?;
            Ok(())
        })
        .await
    }

    /// A configuration value.
    pub fn get_config(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        self.read(|r| {
            let t = r.open_table(CONFIG)?;
            t.get(key)?.map(|v| dec("config", v.value())).transpose()
        })
    }

    /// All configuration values, ordered by key.
    pub fn list_config(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        self.read(|r| {
            let t = r.open_table(CONFIG)?;
            t.iter()?
                .map(|e| {
                    let (k, v) = e?;
                    Ok((k.value().to_owned(), dec("config", v.value())?))
                })
                .collect()
        })
    }

    /// Removes a configuration value; `NotFound` if absent.
    pub async fn delete_config(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.write(move |w| match w.open_table(CONFIG)?.remove(key.as_str())? {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound(format!("config key {key}"))),
        })
        .await
    }

    // ---------------------------------------------------------------- audit

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

/// The smallest string greater than every string starting with `s` is hard to name; instead we
/// bound `(s, "")..(s + "\0", "")`, which covers exactly the keys whose first part is `s`.
fn next_str(s: &str) -> String {
    let mut x = String::with_capacity(s.len() + 1);
    x.push_str(s);
    x.push('\0');
    x
}

fn require_session(w: &WriteTransaction, sid: &str) -> Result<SessionRecord, StoreError> {
    match w.open_table(SESSIONS)?.get(sid)? {
        Some(v) => dec("sessions", v.value()),
        None => Err(StoreError::NotFound(format!("session {sid}"))),
    }
}

fn next_seq_in<T: ReadableTable<(&'static str, u64), Json>>(
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

fn range_after<R: DeserializeOwned, T: ReadableTable<(&'static str, u64), Json>>(
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

/// Brings the file to [`SCHEMA_VERSION`], or refuses a newer one.
fn migrate(db: &Database, path: &Path) -> Result<(), StoreError> {
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

fn writer_loop(db: &Database, rx: &mpsc::Receiver<Box<dyn Job>>, stats: &StoreStats) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        stats
            .batched_requests
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        if batch.len() == 1 || !run_batch(db, &mut batch, stats) {
            // Either a single request, or the batch failed: one transaction per request.
            for mut job in batch {
                let outcome = run_one(db, job.as_mut(), stats);
                if outcome.is_err() {
                    stats.failed_requests.fetch_add(1, Ordering::Relaxed);
                }
                job.finish(outcome);
            }
        }
    }
    tracing::debug!("store writer stopped");
}

/// Runs every job in one transaction. On success answers them all and empties `batch`;
/// returns false (batch untouched, transaction aborted) if any job failed.
fn run_batch(db: &Database, batch: &mut Vec<Box<dyn Job>>, stats: &StoreStats) -> bool {
    let w = match db.begin_write() {
        Ok(w) => w,
        Err(_) => return false,
    };
    for job in batch.iter_mut() {
        if job.run(&w).is_err() {
            let _ = w.abort();
            return false;
        }
    }
    let t0 = Instant::now();
    let res = w.commit().map_err(StoreError::from);
    note_commit(stats, t0);
    for job in batch.drain(..) {
        job.finish(res.clone());
    }
    true
}

fn run_one(db: &Database, job: &mut dyn Job, stats: &StoreStats) -> Result<(), StoreError> {
    let w = db.begin_write()?;
    if let Err(e) = job.run(&w) {
        let _ = w.abort();
        return Err(e);
    }
    let t0 = Instant::now();
    let res = w.commit().map_err(StoreError::from);
    note_commit(stats, t0);
    res
}

fn note_commit(stats: &StoreStats, t0: Instant) {
    stats.commits.fetch_add(1, Ordering::Relaxed);
    stats
        .commit_micros_total
        .fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
}
