//! Human in the loop: everything a person adds to an agent's work.
//!
//! - [`secret`]: credentials the agent never sees — typed through XTEST into the focused field
//!   only on the credential's domains, screenshots withheld while such a field has focus, and
//!   secret values redacted from every text that leaves the appliance.
//! - [`feedback`]: feedback prompts on the seeds' schedule, the answers (approve, reject,
//!   correct, comment, rating) with before/after screenshots, their JSONL export and the
//!   corrections that go back into a profile's context.
//! - [`undo`]: automatic browser checkpoints (sealed at rest, bounded) and rolling a session
//!   back N agent steps or to before a rejected step.
//! - [`input`]: the agent asking a person (2FA code, captcha, confirmation, takeover).
//!
//! The shared state lives in [`Hitl`] (one per control plane); per-session waits live on the
//! session's agent ([`crate::agents::SessionAgent`]).

pub mod feedback;
pub mod input;
pub mod secret;
pub mod undo;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use zigral_agent::redact::Redactor;

use crate::sealed::Sealer;
use crate::vault::Vault;

/// Credentials kept per user.
pub const MAX_CREDENTIALS: usize = 64;
/// A credential's life when the person gives none.
pub const DEFAULT_TTL: Duration = Duration::from_secs(8 * 3600);
/// The longest life a credential may have.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// What makes a secret field "still focused" for one session.
#[derive(Debug, Clone)]
pub struct SecretFocus {
    pub handle: zigral_browser::FocusHandle,
    /// The credential (or `2fa code`) typed into it.
    pub label: String,
}

/// Which session has a secret field that may still have focus (shared with the desktops'
/// screen gates, which must not hold the whole state).
pub type FocusMap = std::sync::Arc<Mutex<HashMap<String, SecretFocus>>>;

/// The control plane's human-in-the-loop state.
pub struct Hitl {
    vault: Vault,
    sealer_path: PathBuf,
    sealer: OnceLock<Result<Sealer, String>>,
    focus: FocusMap,
}

/// Desktop `n`'s executor, or why not in plain words.
pub async fn executor(
    st: &crate::state::AppState,
    n: u32,
) -> Result<zigral_actions::Executor, String> {
    st.desktops()
        .executor(n)
        .await
        .map_err(|e| format!("the desktop is not available: {e}"))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Hitl {
    pub fn new(state_dir: &Path) -> Hitl {
        Hitl {
            vault: Vault::new(MAX_CREDENTIALS, DEFAULT_TTL, MAX_TTL),
            sealer_path: state_dir.join("secrets").join("checkpoint.key"),
            sealer: OnceLock::new(),
            focus: FocusMap::default(),
        }
    }

    /// The in-memory credential vault.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// The checkpoint sealer (its key is created on first use); the error in plain words.
    pub fn sealer(&self) -> Result<&Sealer, String> {
        self.sealer
            .get_or_init(|| Sealer::load_or_create(&self.sealer_path).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Redacts every live secret of every user from `text`.
    pub fn redact_all<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        let r = self.vault.redactor_all();
        if r.is_empty() {
            return std::borrow::Cow::Borrowed(text);
        }
        std::borrow::Cow::Owned(r.redact(text).into_owned())
    }

    /// Redacts `user`'s live secrets from every string of `v` (messages a person or the model
    /// wrote before they are stored or passed on).
    pub fn redact_value(&self, user: &str, v: &mut serde_json::Value) {
        let r = self.vault.redactor(user);
        if !r.is_empty() {
            redact_strings(&r, v);
        }
    }

    /// The redactor of one user's secrets.
    pub fn redactor(&self, user: &str) -> Redactor {
        self.vault.redactor(user)
    }

    /// Marks a secret field of `session` as focused (screenshots to the model are withheld
    /// until it loses focus).
    pub fn set_focus(&self, session: &str, f: SecretFocus) {
        lock(&self.focus).insert(session.to_owned(), f);
    }

    /// The secret field `session` last typed into, if it may still have focus.
    pub fn focus(&self, session: &str) -> Option<SecretFocus> {
        lock(&self.focus).get(session).cloned()
    }

    /// The shared secret-focus map.
    pub fn focus_map(&self) -> FocusMap {
        self.focus.clone()
    }

    /// Forgets `session`'s secret field (it lost focus, or the session ended).
    pub fn clear_focus(&self, session: &str) {
        lock(&self.focus).remove(session);
    }
}

fn redact_strings(r: &Redactor, v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => {
            if let std::borrow::Cow::Owned(o) = r.redact(s) {
                *s = o;
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| redact_strings(r, x)),
        serde_json::Value::Object(o) => o.values_mut().for_each(|x| redact_strings(r, x)),
        _ => {}
    }
}
