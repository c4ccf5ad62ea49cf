//! The manager's background work: at start, reconcile the records with what zigral-init runs;
//! then keep the warm pool full, reap idle desktops and retry failed destroys.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zigral_store::{DesktopRecord, DesktopState};

use super::init::{self, Readiness};
use super::{Entry, Phase, Vdi, starting_record};

/// Longest wait for zigral-init's socket at start.
const INIT_WAIT: Duration = Duration::from_secs(30);

impl Vdi {
    /// Reconciles with zigral-init, then runs the pool filler and the idle reaper until the
    /// process ends. Managed mode only.
    pub fn start(&self) {
        if !self.managed() {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            me.reconcile().await;
            let filler = me.clone();
            tokio::spawn(async move { filler.fill_pool_forever().await });
            me.reap_forever().await;
        });
    }

    /// Rebuilds the table from the records and zigral-init's running instances: a record
    /// whose desktop is gone is finished off (files purged, record removed); a running
    /// instance with no record was never leased and joins the warm pool (or is destroyed
    /// when the pool is full).
    pub async fn reconcile(&self) {
        self.reconcile_table().await;
        self.inner.reconciled.send_replace(true);
    }

    async fn reconcile_table(&self) {
        let t0 = Instant::now();
        let status = loop {
            match init::status(&self.inner.socket).await {
                Ok(s) => break s,
                Err(e) if t0.elapsed() < INIT_WAIT => {
                    tracing::debug!(error = %e, "waiting for zigral-init");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "zigral-init unreachable: desktops cannot be managed");
                    return;
                }
            }
        };
        let records = match self.inner.store.list_desktops() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read desktop records");
                Vec::new()
            }
        };
        let mut doomed = Vec::new();
        let mut waiters = Vec::new();
        {
            let mut t = self.table();
            for rec in &records {
                let phase = match init::readiness(&status, rec.n) {
                    Readiness::Ready => Phase::Ready,
                    Readiness::Starting => Phase::Starting,
                    Readiness::Failed(why) => Phase::Failed(why),
                };
                let gone = matches!(phase, Phase::Failed(_));
                let mut rec = rec.clone();
                if phase == Phase::Ready {
                    rec.state = DesktopState::Ready;
                }
                if phase == Phase::Starting {
                    waiters.push(rec.n);
                }
                let doom = gone || rec.state == DesktopState::Destroying;
                t.insert(rec.n, Entry::new(rec.clone(), phase));
                if doom {
                    doomed.push(rec.n);
                }
            }
            let pooled = t.values().filter(|e| e.pooled()).count();
            let mut room = (self.inner.settings.warm_pool as usize).saturating_sub(pooled);
            for g in &status.groups {
                if g.template != init::TEMPLATE || t.contains_key(&g.instance) {
                    continue;
                }
                let rec = starting_record(g.instance, None, Vec::new(), g.limits);
                let phase = match init::readiness(&status, g.instance) {
                    Readiness::Ready => Phase::Ready,
                    _ => Phase::Starting,
                };
                t.insert(g.instance, Entry::new(rec, phase.clone()));
                if room > 0 {
                    room -= 1;
                    if phase == Phase::Starting {
                        waiters.push(g.instance);
                    }
                    tracing::info!(
                        desktop = g.instance,
                        "adopted a running desktop into the warm pool"
                    );
                } else {
                    doomed.push(g.instance);
                }
            }
        }
        let known: Vec<u32> = self.table().keys().copied().collect();
        for n in known {
            if let Some(rec) = self.record(n)
                && let Err(e) = self.inner.store.put_desktop(rec).await
            {
                tracing::error!(desktop = n, error = %e, "cannot record the desktop");
            }
        }
        for n in doomed {
            self.destroy(n, "found stale at start").await;
        }
        for n in waiters {
            self.watch_ready(n);
        }
        tracing::info!(
            desktops = self.table().len(),
            "desktops reconciled with zigral-init"
        );
    }

    /// Follows a desktop that was already starting (adopted at start) until it is ready.
    fn watch_ready(&self, n: u32) {
        let me = self.clone();
        tokio::spawn(async move {
            let t0 = Instant::now();
            let timeout = Duration::from_secs(me.inner.settings.ready_timeout_secs);
            let result = init::wait_ready(&me.inner.socket, n, timeout).await;
            me.settle(n, result, t0).await;
        });
    }

    /// Keeps `warm_pool` unowned desktops started (within `max_desktops`), one at a time.
    async fn fill_pool_forever(&self) {
        loop {
            while let Some((n, rec, limits)) = self.plan_pool_desktop() {
                let rx = self.start_spawn(n, rec, limits);
                // One at a time: a pool desktop competes for the CPU with users' desktops.
                let _ = self.wait(n, rx).await;
            }
            tokio::select! {
                _ = self.inner.refill.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            }
        }
    }

    fn plan_pool_desktop(&self) -> Option<(u32, DesktopRecord, zigral_init_protocol::GroupLimits)> {
        let cfg = &self.inner.settings;
        let limits = self.default_limits();
        let mut t = self.table();
        let pooled = t.values().filter(|e| e.pooled()).count();
        let live = t.values().filter(|e| e.live()).count();
        if pooled >= cfg.warm_pool as usize || live >= cfg.max_desktops as usize {
            return None;
        }
        let n = (0..crate::config::DESKTOP_NUMBERS).find(|n| !t.contains_key(n))?;
        let rec = starting_record(n, None, Vec::new(), limits);
        t.insert(n, Entry::new(rec.clone(), Phase::Starting));
        Some((n, rec, limits))
    }

    /// Every tick: desktops with viewers count as active; owned desktops idle longer than
    /// `idle_secs` are destroyed; destroys that failed are retried.
    async fn reap_forever(&self) {
        let idle = self.inner.settings.idle_secs;
        let tick = if idle == 0 {
            Duration::from_secs(5)
        } else {
            Duration::from_secs(idle.div_ceil(4).clamp(1, 5))
        };
        loop {
            tokio::time::sleep(tick).await;
            self.reap_once().await;
        }
    }

    /// One pass of the idle reaper.
    pub async fn reap_once(&self) {
        let idle = self.inner.settings.idle_secs;
        if let Some(v) = viewers(&self.inner.settings.proxy_url).await {
            let mut t = self.table();
            for (n, count) in v {
                if count > 0
                    && let Some(e) = t.get_mut(&n)
                {
                    e.last_active = Instant::now();
                }
            }
        }
        let (idle_ones, retry): (Vec<u32>, Vec<u32>) = {
            let t = self.table();
            let idle_ones = t
                .values()
                .filter(|e| {
                    idle > 0
                        && e.rec.owner.is_some()
                        && e.live()
                        && *e.phase.borrow() == Phase::Ready
                        && e.last_active.elapsed() >= Duration::from_secs(idle)
                })
                .map(|e| e.rec.n)
                .collect();
            let retry = t
                .values()
                .filter(|e| !e.live() && !e.destroying)
                .map(|e| e.rec.n)
                .collect();
            (idle_ones, retry)
        };
        for n in idle_ones {
            self.destroy(n, &format!("idle for {idle} s")).await;
        }
        for n in retry {
            self.destroy(n, "retrying an earlier destroy").await;
        }
    }
}

/// Live viewers per desktop, from the proxy's loopback `/sessions`; `None` when not
/// configured or the proxy does not answer.
pub(super) async fn viewers(proxy_url: &str) -> Option<HashMap<u32, u32>> {
    let hostport = proxy_url.strip_prefix("http://")?.trim_end_matches('/');
    let body = tokio::time::timeout(Duration::from_secs(2), http_get(hostport, "/sessions"))
        .await
        .ok()??;
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let mut out = HashMap::new();
    for s in v.get("sessions")?.as_array()? {
        if let Some(d) = s.get("desktop").and_then(serde_json::Value::as_u64)
            && let Ok(d) = u32::try_from(d)
        {
            *out.entry(d).or_insert(0) += 1;
        }
    }
    Some(out)
}

/// A minimal HTTP/1.0 GET (the proxy's loopback endpoint; no client library needed).
async fn http_get(hostport: &str, path: &str) -> Option<Vec<u8>> {
    let mut s = tokio::net::TcpStream::connect(hostport).await.ok()?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    s.take(8 << 20).read_to_end(&mut buf).await.ok()?;
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..split]).ok()?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return None;
    }
    Some(buf[split + 4..].to_vec())
}
