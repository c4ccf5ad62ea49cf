//! The executor: plans a whole batch first ([`crate::plan`]: nothing runs when any action is
//! invalid), then runs the steps in order under the session's input lock against the desktop
//! (XTEST, SHM screenshots) and the browser (CDP), stopping at the first failure, with
//! per-action timings and an optional screenshot after the last action. Before that screenshot
//! the executor waits for the screen to settle ([`Executor::settle`], X Damage) when the batch
//! ran anything that can change the screen, so the image shows the result, not a transition.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use tokio::sync::Mutex;
use zigral_browser::{Browser, UrlPolicy};
use zigral_desktop as desk;
use zigral_desktop::Desktop;

use crate::ActionError;
use crate::plan::{MULTI_CLICK_GAP, Step, plan, screenshot_opts};
use crate::schema::{
    Action, ActionResult, BatchRequest, BatchResponse, ImageOut, Output, ScaleOut, ScreenshotSpec,
};

/// A boxed future of a [`ScreenGate`]'s answer.
pub type GateFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>>;

/// Decides, right before each capture, whether the screen may be captured now (the control
/// plane refuses while a field holding a secret has keyboard focus); `Err` carries the note
/// the caller gets instead of the image.
pub trait ScreenGate: Send + Sync {
    fn allow(&self) -> GateFuture<'_>;
}

/// Runs actions for one session's desktop and browser. Cheap to clone (shared).
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("desktop", &self.inner.desktop)
            .field("browser", &self.inner.browser)
            .finish()
    }
}

struct Inner {
    desktop: Desktop,
    browser: Option<Browser>,
    /// The session's input lock: one batch at a time drives the desktop.
    lock: Mutex<()>,
    policy: RwLock<UrlPolicy>,
    /// Settle before a batch's screenshot (`None`: never).
    settle: RwLock<Option<desk::SettleOpts>>,
    /// Asked before every capture (see [`ScreenGate`]).
    gate: RwLock<Option<Arc<dyn ScreenGate>>>,
}

impl Executor {
    /// An executor over `desktop` and (optionally) the desktop's Chrome.
    pub fn new(desktop: Desktop, browser: Option<Browser>) -> Executor {
        Executor {
            inner: Arc::new(Inner {
                desktop,
                browser,
                lock: Mutex::new(()),
                policy: RwLock::new(UrlPolicy::default()),
                settle: RwLock::new(Some(desk::SettleOpts::default())),
                gate: RwLock::new(None),
            }),
        }
    }

    /// The desktop handle.
    pub fn desktop(&self) -> &Desktop {
        &self.inner.desktop
    }

    /// The browser owner, if any.
    pub fn browser(&self) -> Option<&Browser> {
        self.inner.browser.as_ref()
    }

    /// Sets the session's navigation policy (scheme allowlist, optional domain allowlist).
    pub fn set_policy(&self, policy: UrlPolicy) {
        if let Ok(mut p) = self.inner.policy.write() {
            *p = policy;
        }
    }

    /// The session's navigation policy.
    pub fn policy(&self) -> UrlPolicy {
        self.inner
            .policy
            .read()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    /// The current screen size.
    pub async fn screen_size(&self) -> Result<desk::Size, ActionError> {
        Ok(self.inner.desktop.size().await?)
    }

    /// Checks every action of `req` without running anything.
    pub async fn validate(&self, req: &BatchRequest) -> Result<(), ActionError> {
        self.plan(req).await.map(|_| ())
    }

    async fn plan(&self, req: &BatchRequest) -> Result<Vec<Step>, ActionError> {
        let screen = self.screen_size().await?;
        plan(req, screen, &self.policy(), self.inner.browser.is_some())
    }

    /// True when both handles drive the same executor (same X connection).
    pub fn same(&self, other: &Executor) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Validates `req` (error: nothing ran), then runs it under the input lock. Execution
    /// failures do not make this an `Err`: the response says which action failed and why.
    pub async fn run(&self, req: &BatchRequest) -> Result<BatchResponse, ActionError> {
        let start = Instant::now();
        let steps = self.plan(req).await?;
        let _guard = self.inner.lock.lock().await;
        let mut results = Vec::with_capacity(steps.len());
        let mut failed_index = None;
        for (i, (step, action)) in steps.into_iter().zip(&req.actions).enumerate() {
            let t = Instant::now();
            let r = if matches!(action, Action::Screenshot { .. } | Action::Zoom { .. }) {
                match self.screen_allowed().await {
                    Ok(()) => self.run_step(step).await,
                    Err(e) => Err(e),
                }
            } else {
                self.run_step(step).await
            };
            let duration_ms = t.elapsed().as_secs_f64() * 1000.0;
            match r {
                Ok(output) => results.push(ActionResult {
                    index: i,
                    action: action.name().to_owned(),
                    ok: true,
                    duration_ms,
                    output,
                    error: None,
                }),
                Err(e) => {
                    if !e.is_client_error() {
                        tracing::warn!(action = action.name(), error = %e, "action failed");
                    }
                    results.push(ActionResult {
                        index: i,
                        action: action.name().to_owned(),
                        ok: false,
                        duration_ms,
                        output: None,
                        error: Some(e.body()),
                    });
                    failed_index = Some(i);
                    break;
                }
            }
        }
        let mut withheld = None;
        let screenshot = match &req.screenshot {
            Some(spec) => {
                self.settle_after(&req.actions[..results.len()]).await;
                match self.screenshot(spec).await {
                    Ok(img) => Some(img),
                    // The actions ran: the batch succeeds without its screenshot.
                    Err(ActionError::ScreenshotWithheld(note)) => {
                        withheld = Some(note);
                        None
                    }
                    Err(e) => return Err(e),
                }
            }
            None => None,
        };
        Ok(BatchResponse {
            ok: failed_index.is_none(),
            results,
            failed_index,
            screenshot,
            withheld,
            duration_ms: start.elapsed().as_secs_f64() * 1000.0,
        })
    }

    /// Sets (or with `None` removes) the gate asked before every capture.
    pub fn set_screen_gate(&self, gate: Option<Arc<dyn ScreenGate>>) {
        if let Ok(mut g) = self.inner.gate.write() {
            *g = gate;
        }
    }

    /// Asks the screen gate, if any; `Err` when a capture must not happen now.
    pub async fn screen_allowed(&self) -> Result<(), ActionError> {
        let gate = self.inner.gate.read().ok().and_then(|g| g.clone());
        match gate {
            Some(g) => g.allow().await.map_err(ActionError::ScreenshotWithheld),
            None => Ok(()),
        }
    }

    /// Sets how a batch waits for the screen to settle before its screenshot (`None`: it
    /// does not wait). Default: [`desk::SettleOpts::default`] (100 ms quiet, 1.5 s cap).
    pub fn set_settle(&self, settle: Option<desk::SettleOpts>) {
        if let Ok(mut s) = self.inner.settle.write() {
            *s = settle;
        }
    }

    /// How a batch waits for the screen to settle before its screenshot.
    pub fn settle_opts(&self) -> Option<desk::SettleOpts> {
        self.inner.settle.read().map(|s| *s).unwrap_or_default()
    }

    /// Waits until the screen has had no changes (X Damage, carets ignored) for `quiet`, at
    /// most `cap` (see [`Desktop::settle`]). Does not take the input lock.
    pub async fn settle(
        &self,
        quiet: Duration,
        cap: Duration,
    ) -> Result<desk::Settle, ActionError> {
        Ok(self.inner.desktop.settle(quiet, cap).await?)
    }

    /// Settles after `ran` (the actions of a batch that ran) when any of them can change the
    /// screen. Best effort: on failure the screenshot is taken anyway.
    async fn settle_after(&self, ran: &[Action]) {
        let Some(o) = self.settle_opts() else {
            return;
        };
        if !ran.iter().any(changes_screen) {
            return;
        }
        match self.settle(o.quiet, o.cap).await {
            Ok(s) => tracing::debug!(
                waited_ms = s.waited.as_secs_f64() * 1000.0,
                damage_events = s.damage_events,
                capped = s.capped,
                "screen settled before the screenshot"
            ),
            Err(e) => tracing::warn!(error = %e, "settling before the screenshot failed"),
        }
    }

    /// Captures a screenshot (does not take the input lock: a quick look never waits for a
    /// long batch).
    pub async fn screenshot(&self, spec: &ScreenshotSpec) -> Result<ImageOut, ActionError> {
        let size = self.screen_size().await?;
        self.screen_allowed().await?;
        let opts = screenshot_opts(spec, size).map_err(|m| ActionError::Invalid {
            index: 0,
            code: crate::ErrorCode::InvalidArgument,
            message: format!("screenshot: {m}"),
        })?;
        let s = self.inner.desktop.screenshot(opts).await?;
        Ok(image_out(s))
    }

    /// Captures a screenshot as raw encoded bytes (for `GET .../screenshot`).
    pub async fn screenshot_bytes(
        &self,
        spec: &ScreenshotSpec,
    ) -> Result<desk::Screenshot, ActionError> {
        let size = self.screen_size().await?;
        self.screen_allowed().await?;
        let opts = screenshot_opts(spec, size).map_err(|m| ActionError::Invalid {
            index: 0,
            code: crate::ErrorCode::InvalidArgument,
            message: format!("screenshot: {m}"),
        })?;
        Ok(self.inner.desktop.screenshot(opts).await?)
    }

    async fn run_step(&self, step: Step) -> Result<Option<Output>, ActionError> {
        match step {
            Step::Desk(actions) => {
                let outs = self
                    .inner
                    .desktop
                    .batch(actions)
                    .await
                    .map_err(|e| ActionError::Desktop(e.error))?;
                Ok(outs.into_iter().rev().find_map(desk_output))
            }
            Step::DeskSpaced(segs) => {
                // Separate the first click from whatever input came just before, too.
                self.inner.desktop.cursor_position().await?;
                tokio::time::sleep(MULTI_CLICK_GAP).await;
                let mut last = None;
                let n = segs.len();
                for (i, seg) in segs.into_iter().enumerate() {
                    let outs = self
                        .inner
                        .desktop
                        .batch(seg)
                        .await
                        .map_err(|e| ActionError::Desktop(e.error))?;
                    last = outs.into_iter().rev().find_map(desk_output);
                    if i + 1 < n {
                        tokio::time::sleep(MULTI_CLICK_GAP).await;
                    }
                }
                Ok(last)
            }
            Step::HoldKey(combo, d) => {
                self.inner.desktop.hold_key(&combo, d).await?;
                Ok(None)
            }
            Step::Wait(d) => {
                tokio::time::sleep(d).await;
                Ok(None)
            }
            Step::Browser(a) => {
                let b = self.inner.browser.as_ref().ok_or(ActionError::NoBrowser)?;
                let policy = self.policy();
                let out = match a {
                    Action::Navigate { url } => Output::Tab {
                        tab: b.navigate(&url, &policy).await?,
                    },
                    Action::Back {} => Output::Tab {
                        tab: b.back().await?,
                    },
                    Action::Forward {} => Output::Tab {
                        tab: b.forward().await?,
                    },
                    Action::Reload {} => Output::Tab {
                        tab: b.reload().await?,
                    },
                    Action::WaitForLoad { timeout_ms } => Output::Tab {
                        tab: b
                            .wait_for_load(Duration::from_millis(timeout_ms.unwrap_or(30_000)))
                            .await?,
                    },
                    Action::TabList {} => Output::Tabs {
                        tabs: b.tabs().await?,
                    },
                    Action::TabNew { url } => Output::Tab {
                        tab: b.new_tab(url.as_deref(), &policy).await?,
                    },
                    Action::TabSwitch { id } => Output::Tab {
                        tab: b.switch_tab(&id).await?,
                    },
                    Action::TabClose { id } => Output::Tabs {
                        tabs: b.close_tab(&id).await?,
                    },
                    Action::PageText { max_chars } => Output::PageText {
                        page: b.page_text(max_chars.unwrap_or(20_000)).await?,
                    },
                    Action::A11ySnapshot { max_nodes } => Output::A11y {
                        snapshot: b.a11y_snapshot(max_nodes.unwrap_or(300)).await?,
                    },
                    other => {
                        return Err(ActionError::BadRequest(format!(
                            "{} is not a browser action",
                            other.name()
                        )));
                    }
                };
                Ok(Some(out))
            }
        }
    }
}

/// False for actions that only read (the screen, pointer, clipboard or page).
fn changes_screen(a: &Action) -> bool {
    !matches!(
        a,
        Action::CursorPosition {}
            | Action::Screenshot { .. }
            | Action::Zoom { .. }
            | Action::ClipboardGet {}
            | Action::TabList {}
            | Action::PageText { .. }
            | Action::A11ySnapshot { .. }
    )
}

fn desk_output(o: desk::ActionOutput) -> Option<Output> {
    match o {
        desk::ActionOutput::Done => None,
        desk::ActionOutput::Position(p) => Some(Output::Position { x: p.x, y: p.y }),
        desk::ActionOutput::Screenshot(s) => Some(Output::Image(image_out(s))),
        desk::ActionOutput::Text(text) => Some(Output::Text { text }),
        desk::ActionOutput::Size(s) => Some(Output::Size {
            width: s.width,
            height: s.height,
        }),
    }
}

/// Converts a desktop screenshot into the API's image object (base64).
pub fn image_out(s: desk::Screenshot) -> ImageOut {
    ImageOut {
        mime: s.mime.to_owned(),
        width: s.width,
        height: s.height,
        data: base64::engine::general_purpose::STANDARD.encode(&s.bytes),
        scale: ScaleOut {
            source_x: s.scale.source.x,
            source_y: s.scale.source.y,
            source_width: s.scale.source.width,
            source_height: s.scale.source.height,
            width: s.scale.image.width,
            height: s.scale.image.height,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_skip_the_settle() {
        let reads = [
            r#"{"action": "screenshot"}"#,
            r#"{"action": "cursor_position"}"#,
            r#"{"action": "clipboard_get"}"#,
            r#"{"action": "page_text"}"#,
        ];
        for r in reads {
            let a: Action = serde_json::from_str(r).expect(r);
            assert!(!changes_screen(&a), "{r}");
        }
        let writes = [
            r#"{"action": "left_click", "x": 1, "y": 1}"#,
            r#"{"action": "type", "text": "a"}"#,
            r#"{"action": "key", "keys": "Return"}"#,
            r#"{"action": "scroll", "direction": "down"}"#,
            r#"{"action": "navigate", "url": "https://example.com/"}"#,
        ];
        for w in writes {
            let a: Action = serde_json::from_str(w).expect(w);
            assert!(changes_screen(&a), "{w}");
        }
    }
}
