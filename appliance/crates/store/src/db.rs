//! The one owner of the redb file: `Store::open`, the single writer thread and snapshot reads.
//!
//! Writes are closures sent to one writer thread. It takes every request that is waiting,
//! runs them in one write transaction and commits with `Durability::Immediate` (fsync) before
//! answering any of them (group commit). If one request fails, the batch is rolled back and
//! each request is re-run in its own transaction so a bad request never sinks a good one.
//! The tables are defined in `tables`, migrated in `migrate`, and each entity's methods are an
//! `impl Store` block in its own module (`users`, `tokens`, `sessions`, …).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};
use tokio::sync::oneshot;

use crate::StoreError;
use crate::migrate::migrate;
use crate::tables::{META, SCHEMA_KEY};

/// File name of the database inside the state directory.
pub const DB_FILE: &str = "zigral.redb";

/// redb page cache; the working set is small and RSS matters on the appliance.
const CACHE_BYTES: usize = 16 * 1024 * 1024;
/// Most requests folded into one commit.
const MAX_BATCH: usize = 256;

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

    /// Opens (or creates) the database at `path`, migrating it to
    /// [`SCHEMA_VERSION`](crate::SCHEMA_VERSION). Refuses a file with a newer schema.
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

    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.inner.db.begin_read()?;
        f(&txn)
    }

    /// Runs `f` inside a durable write transaction on the writer thread; resolves after commit.
    /// `f` may run more than once (if a batch is retried), so it must not have side effects
    /// outside the transaction.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
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
