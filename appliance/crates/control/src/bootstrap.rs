//! First start: create the `admin` user when the store has no users, with the configured
//! password or a generated one that is printed once to the console (never logged or stored).

use std::io::Write;

use base64::Engine;
use rand::RngCore;
use zigral_store::{Store, UserRecord, now_ms};

use crate::auth::{hash_password, new_id};

/// Name of the first administrator.
pub const ADMIN: &str = "admin";

/// What [`ensure_admin`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminOutcome {
    /// Users already exist; nothing changed.
    Exists,
    /// Created with the configured password.
    CreatedFromConfig,
    /// Created with this generated password (show it once).
    Generated(String),
}

/// Creates `admin` if there are no users yet.
pub async fn ensure_admin(store: &Store, configured: Option<&str>) -> anyhow::Result<AdminOutcome> {
    if store.user_count()? > 0 {
        return Ok(AdminOutcome::Exists);
    }
    let (password, outcome) = match configured {
        Some(p) => (p.to_owned(), AdminOutcome::CreatedFromConfig),
        None => {
            let mut b = [0u8; 15];
            rand::rng().fill_bytes(&mut b);
            let p = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
            (p.clone(), AdminOutcome::Generated(p))
        }
    };
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    store
        .create_user(UserRecord {
            id: new_id(),
            username: ADMIN.into(),
            password_hash: hash,
            is_admin: true,
            created_at: now_ms(),
            disabled: false,
            persistent_profile: false,
            limits: Default::default(),
        })
        .await?;
    store
        .append_audit(
            "system",
            "user.create",
            ADMIN,
            serde_json::json!({"first_admin": true}),
        )
        .await?;
    Ok(outcome)
}

/// Prints a generated admin password to the console: stdout when `to` is `-`, else the given
/// device or file (e.g. `/dev/console`), never to the log.
pub fn print_generated(password: &str, url: &str, to: &std::path::Path) {
    let banner = format!(
        "\n==================== zigral control: first start ====================\n\
         created administrator  user: {ADMIN}  password: {password}\n\
         log in at {url}  (this password is shown only once; change it with\n\
         POST /api/v1/auth/password)\n\
         =====================================================================\n"
    );
    if to.as_os_str() != "-" {
        match std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(to)
        {
            Ok(mut f) => {
                let _ = f.write_all(banner.as_bytes());
                return;
            }
            Err(e) => tracing::warn!(path = %to.display(), error = %e,
                "cannot open the admin banner target; printing to stdout"),
        }
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(banner.as_bytes());
    let _ = out.flush();
}
