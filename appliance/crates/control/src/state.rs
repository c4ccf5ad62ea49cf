//! Shared state of the control plane, handed to every handler (cheap to clone).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use zigral_store::Store;
use zigral_token::SigningKey;

use crate::agents::Agents;
use crate::auth::LoginLimiter;
use crate::config::Config;
use crate::control_lease::ControlLeases;
use crate::desktops::Desktops;
use crate::events::{Event, EventBus};
use crate::metrics::Metrics;
use crate::typed_text::TypedTextLog;
use crate::vdi::Vdi;

struct Inner {
    config: Config,
    store: Store,
    key: SigningKey,
    events: EventBus,
    metrics: Metrics,
    limiter: LoginLimiter,
    crypto: Semaphore,
    started: Instant,
    desktops: Desktops,
    vdi: Vdi,
    typed_text: TypedTextLog,
    agents: Agents,
    control: ControlLeases,
    hitl: crate::hitl::Hitl,
    recordings: crate::recording::Recordings,
}

/// Everything a handler needs: configuration, the store, the signing key, the events bus.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl AppState {
    /// Builds the state from an open store and the proxy signing key.
    pub fn new(config: Config, store: Store, key: SigningKey) -> AppState {
        // The agent's provider client (and any reqwest client in this process) needs it.
        zigral_llm::tls::install_default_provider();
        let limiter = LoginLimiter::new(
            config.login_max_failures,
            Duration::from_secs(config.login_window_secs),
        );
        let desktops = Desktops::new(&config);
        let events = EventBus::new(config.events_queue);
        let vdi = Vdi::new(
            config.desktops.clone(),
            config.init_socket.clone(),
            config.state_dir.clone(),
            store.clone(),
            events.clone(),
            desktops.clone(),
        );
        let st = AppState {
            inner: Arc::new(Inner {
                recordings: crate::recording::Recordings::new(&config),
                desktops,
                vdi,
                typed_text: TypedTextLog::new(&config.state_dir, config.log_typed_text),
                agents: Agents::new(&config.state_dir),
                hitl: crate::hitl::Hitl::new(&config.state_dir),
                control: ControlLeases::new(
                    &config.state_dir,
                    store.clone(),
                    events.clone(),
                    key.clone(),
                ),
                events,
                config,
                store,
                key,
                metrics: Metrics::default(),
                limiter,
                crypto: Semaphore::new(2),
                started: Instant::now(),
            }),
        };
        // A desktop's recording ends (and its files leave the desktop's directory) before
        // the desktop's processes stop and its directory is purged.
        let weak = Arc::downgrade(&st.inner);
        st.inner.vdi.set_before_destroy(Arc::new(move |n| {
            let weak = weak.clone();
            Box::pin(async move {
                if let Some(inner) = weak.upgrade() {
                    let st = AppState { inner };
                    let _ = st.recordings().stop(&st, n, "desktop_destroyed").await;
                }
            })
        }));
        st
    }

    /// Desktop recordings.
    pub fn recordings(&self) -> &crate::recording::Recordings {
        &self.inner.recordings
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }
    /// The desktops' action executors (connected lazily).
    pub fn desktops(&self) -> &Desktops {
        &self.inner.desktops
    }
    /// Which desktop each session gets (creates and destroys them in managed mode).
    pub fn vdi(&self) -> &Vdi {
        &self.inner.vdi
    }
    /// The human control leases: who holds which session's desktop; the refusal of actions.
    pub fn control(&self) -> &ControlLeases {
        &self.inner.control
    }
    /// Every session's built-in agent and the profiles' API keys.
    pub fn agents(&self) -> &Agents {
        &self.inner.agents
    }
    /// How typed text appears in the action log.
    pub fn typed_text(&self) -> &TypedTextLog {
        &self.inner.typed_text
    }
    pub fn store(&self) -> &Store {
        &self.inner.store
    }
    /// Now, in milliseconds since the epoch, by the signing key's clock: what token and login
    /// expiry are decided against (tests move it instead of sleeping).
    pub fn now_ms(&self) -> u64 {
        self.inner.key.now_ms()
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.inner.key
    }
    pub fn events(&self) -> &EventBus {
        &self.inner.events
    }
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
    pub fn limiter(&self) -> &LoginLimiter {
        &self.inner.limiter
    }
    pub fn crypto_permits(&self) -> &Semaphore {
        &self.inner.crypto
    }
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }
    /// Publishes an event on the bus.
    /// Human-in-the-loop state: the credential vault, sealed checkpoints, secret focus.
    pub fn hitl(&self) -> &crate::hitl::Hitl {
        &self.inner.hitl
    }

    /// Publishes an event, with every live secret value redacted from its data.
    pub fn publish(&self, mut ev: Event) {
        let r = self.inner.hitl.vault().redactor_all();
        if !r.is_empty()
            && let Ok(text) = serde_json::to_string(&ev.data)
            && r.contains_secret(&text)
        {
            ev.data = serde_json::from_str(&r.redact(&text))
                .unwrap_or_else(|_| serde_json::json!({"redacted": true}));
        }
        self.inner.events.publish(ev);
    }
    /// Records an audit entry; a failure is logged, never surfaced (the action already happened).
    pub async fn audit(&self, actor: &str, action: &str, target: &str, detail: serde_json::Value) {
        if let Err(e) = self
            .inner
            .store
            .append_audit(actor, action, target, detail)
            .await
        {
            tracing::error!(error = %e, action, "cannot write audit entry");
        }
    }
}
