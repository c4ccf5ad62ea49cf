//! Agent-blind secrets: typing a stored credential (or a person's 2FA code) into the focused
//! field through XTEST, and what the model may see afterwards.
//!
//! - [`type_secret`] types `name`'s username or password only when an editable field has
//!   keyboard focus and the URL of the document owning it is on one of the credential's
//!   domains. The action log gets `type_secret {name, field, host}`, never the value; the
//!   events and the audit log the same.
//! - From the moment a secret is typed until its field loses focus, [`screen`] says
//!   `Withheld`: the desktop's screen gate refuses every capture (REST, MCP and the built-in
//!   agent alike: `screenshot_withheld`), and the agent's hands send the model a text note
//!   instead (or a blank image where the wire format requires one). The gate asks before each
//!   capture, and lets the screen settle once the field has lost focus, so the first
//!   screenshot allowed afterwards was taken after that check and the repaint.

use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use zeroize::{Zeroize, Zeroizing};
use zigral_actions::{Action, BatchRequest, Executor, GateFuture, ScreenGate};
use zigral_browser::Browser;
use zigral_store::{NewAction, SessionRecord};

use super::{FocusMap, SecretFocus};
use crate::events::Event;
use crate::state::AppState;
use crate::vault::{Field, VaultError};

/// Why a secret was not typed.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("this desktop has no browser to type into")]
    NoBrowser,
    #[error(
        "no editable field has keyboard focus (or it is inside a cross-origin frame): click the field first"
    )]
    NoField,
    #[error("{0}")]
    Vault(#[from] VaultError),
    #[error("the focused page's address has no host")]
    NoHost,
    #[error("typing failed: {0}")]
    Desktop(String),
}

impl SecretError {
    /// Whether the caller's request was at fault (4xx) rather than the desktop (5xx).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, SecretError::Desktop(_))
    }
}

/// What was typed, for the caller's reply (no value).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Typed {
    pub name: String,
    pub field: Field,
    /// Host of the document that received the keys.
    pub host: String,
    /// Kind of the focused field (`password`, `text`, `email`, …).
    pub kind: String,
}

/// The host of the focused field's document, checked non-empty.
fn host_of(url: &str) -> Result<String, SecretError> {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .filter(|h| !h.is_empty())
        .ok_or(SecretError::NoHost)
}

/// Types the focused field's value `value` through XTEST, unlogged (the caller logs what it
/// may), and marks the field as holding a secret.
pub async fn type_value(
    st: &AppState,
    s: &SessionRecord,
    exec: &Executor,
    field: &zigral_browser::FocusedField,
    label: &str,
    value: &Zeroizing<String>,
) -> Result<(), SecretError> {
    let session = s.id.as_str();
    // The desktop's recording is frozen before the first keystroke and stays so until the
    // field loses focus and the page repainted.
    if let Some(hold) = st
        .recordings()
        .hold(st, s.desktop, &format!("secret typed: {label}"))
        .await
    {
        frozen_while_focused(st.clone(), session.to_owned(), exec.clone(), hold);
    }
    st.hitl().set_focus(
        session,
        SecretFocus {
            handle: field.handle.clone(),
            label: label.to_owned(),
        },
    );
    exec.set_screen_gate(Some(std::sync::Arc::new(FocusGate {
        map: st.hitl().focus_map(),
        session: session.to_owned(),
        browser: exec.browser().cloned(),
        desktop: exec.desktop().clone(),
    })));
    let mut req = BatchRequest {
        actions: vec![Action::Type {
            text: value.to_string(),
            delay_ms: None,
        }],
        screenshot: None,
    };
    let ran = exec.run(&req).await;
    for a in &mut req.actions {
        if let Action::Type { text, .. } = a {
            text.zeroize();
        }
    }
    let resp = ran.map_err(|e| SecretError::Desktop(e.to_string()))?;
    if !resp.ok {
        let why = resp
            .results
            .last()
            .and_then(|r| r.error.as_ref())
            .map(|e| e.message.clone())
            .unwrap_or_else(|| "the keystrokes were not delivered".into());
        return Err(SecretError::Desktop(why));
    }
    Ok(())
}

/// The focused editable field of `exec`'s browser and its host.
pub async fn focused(
    exec: &Executor,
) -> Result<(zigral_browser::FocusedField, String), SecretError> {
    let browser = exec.browser().ok_or(SecretError::NoBrowser)?;
    let field = browser
        .focused_field()
        .await
        .map_err(|e| SecretError::Desktop(e.to_string()))?
        .ok_or(SecretError::NoField)?;
    let host = host_of(&field.url)?;
    Ok((field, host))
}

/// Types credential `name`'s `field` (of the session owner's vault) into the focused field of
/// session `s`'s browser, logged as `who` via `via` without the value.
pub async fn type_secret(
    st: &AppState,
    s: &SessionRecord,
    exec: &Executor,
    who: &str,
    via: &str,
    name: &str,
    field: Field,
) -> Result<Typed, SecretError> {
    let started = std::time::Instant::now();
    let result = async {
        let (focused, host) = focused(exec).await?;
        let value = st.hitl().vault().value(&s.owner, name, field, &host)?;
        type_value(st, s, exec, &focused, name, &value).await?;
        Ok::<_, SecretError>(Typed {
            name: name.to_owned(),
            field,
            host,
            kind: focused.kind,
        })
    }
    .await;
    let (ok, detail) = match &result {
        Ok(t) => (true, json!({"host": t.host, "kind": t.kind})),
        Err(e) => (false, json!({"error": e.to_string()})),
    };
    let entry = NewAction {
        who: who.to_owned(),
        what: json!({"action": "type_secret", "input": {"name": name, "field": field},
                     "via": via, "index": 0}),
        result: detail.clone(),
        ok,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    if let Err(e) = st.store().append_actions(&s.id, vec![entry]).await {
        tracing::error!(session = %s.id, error = %e, "cannot log a type_secret action");
    }
    let kind = if ok { "secret.typed" } else { "secret.refused" };
    st.publish(Event::new(
        kind,
        Some(&s.id),
        Some(&s.owner),
        json!({"name": name, "field": field, "via": via, "detail": detail}),
    ));
    st.audit(
        who,
        kind,
        &s.id,
        json!({"name": name, "field": field, "detail": detail}),
    )
    .await;
    result
}

/// What the model may see of the screen of a session now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screen {
    /// No secret field has focus.
    Clear,
    /// A secret field still has focus: no screenshot may go to the model; the label says
    /// which secret.
    Withheld(String),
    /// The secret field just lost focus (and is forgotten): the page may still be repainting.
    Reopened,
}

/// Checks the session's secret field (see the module doc).
pub async fn screen(st: &AppState, session: &str, browser: Option<&Browser>) -> Screen {
    screen_of(&st.hitl().focus_map(), session, browser).await
}

async fn screen_of(map: &FocusMap, session: &str, browser: Option<&Browser>) -> Screen {
    let focus = map
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(session)
        .cloned();
    let Some(f) = focus else {
        return Screen::Clear;
    };
    let still = match browser {
        Some(b) => b.is_focused(&f.handle).await.unwrap_or(false),
        None => false,
    };
    if still {
        Screen::Withheld(f.label)
    } else {
        map.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(session);
        Screen::Reopened
    }
}

/// The desktop's screen gate while its session typed a secret: every capture — the built-in
/// agent's, REST's, MCP's — is refused while the secret field has focus; the first one after
/// it lost focus is taken after that check, so it cannot show the field focused.
struct FocusGate {
    map: FocusMap,
    session: String,
    browser: Option<Browser>,
    desktop: zigral_desktop::Desktop,
}

impl ScreenGate for FocusGate {
    fn allow(&self) -> GateFuture<'_> {
        Box::pin(async move {
            match screen_of(&self.map, &self.session, self.browser.as_ref()).await {
                Screen::Withheld(label) => Err(withheld_note(&label)),
                Screen::Clear => Ok(()),
                Screen::Reopened => {
                    // The field just lost focus: let the page repaint before the first capture
                    // (X Damage quiet for 100 ms, at most 1.5 s).
                    let _ = self
                        .desktop
                        .settle(Duration::from_millis(100), Duration::from_millis(1500))
                        .await;
                    Ok(())
                }
            }
        })
    }
}

/// Keeps `hold` (a frozen recording) until `session`'s secret field lost focus (checked every
/// 200 ms) and the page repainted.
fn frozen_while_focused(
    st: AppState,
    session: String,
    exec: Executor,
    hold: crate::recording::Hold,
) {
    tokio::spawn(async move {
        // The focus is set right after the freeze: give the typing a moment to begin.
        tokio::time::sleep(Duration::from_millis(200)).await;
        while let Some(f) = st.hitl().focus(&session) {
            let still = match exec.browser() {
                Some(b) => b.is_focused(&f.handle).await.unwrap_or(false),
                None => false,
            };
            if !still {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let _ = exec
            .desktop()
            .settle(Duration::from_millis(100), Duration::from_millis(1500))
            .await;
        drop(hold);
    });
}

/// The note the model gets instead of a screenshot.
pub fn withheld_note(label: &str) -> String {
    format!(
        "Screenshot withheld: the field holding the secret {label:?} still has keyboard focus. \
         Move the focus away (press Tab or Enter, or click elsewhere) to see the screen again."
    )
}

/// A plain grey PNG of `w`×`h` (for wire formats that require an image with every result).
pub fn blank_png(w: u32, h: u32) -> Vec<u8> {
    let (w, h) = (w.clamp(1, 4096), h.clamp(1, 4096));
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let row = vec![0x80u8; w as usize];
        let data: Vec<u8> = (0..h).flat_map(|_| row.iter().copied()).collect();
        match enc.write_header() {
            Ok(mut wr) => {
                if wr.write_image_data(&data).is_err() {
                    return Vec::new();
                }
            }
            Err(_) => return Vec::new(),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_png_decodes_at_its_size() {
        let b = blank_png(64, 40);
        let d = png::Decoder::new(std::io::Cursor::new(b));
        let r = d.read_info().expect("png");
        assert_eq!((r.info().width, r.info().height), (64, 40));
    }

    #[test]
    fn host_of_needs_a_host() {
        assert_eq!(
            host_of("https://Login.Example.com/x").ok().as_deref(),
            Some("login.example.com")
        );
        assert!(host_of("about:blank").is_err());
        assert!(host_of("data:text/html,x").is_err());
    }
}
