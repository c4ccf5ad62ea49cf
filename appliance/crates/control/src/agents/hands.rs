//! The agent's hands: one model tool call → native actions on the session's desktop, run and
//! logged like any other action (`who` = `agent:<profile id>`, `via` = `agent`), then the
//! result the model gets back (text and a screenshot at the declared display size), a small
//! JPEG thumbnail kept for the step's event, and an `agent.step` event.

use std::time::Instant;

use base64::Engine;
use serde_json::{Value, json};
use std::future::Future;

use zigral_actions::{
    ActionError, BatchRequest, BatchResponse, Executor, ImageFormat, ScaleSpec, ScreenshotSpec,
    anthropic, functions, openai,
};
use zigral_desktop::Size;
use zigral_llm::{Call, ExtraTool, Image, ToolCall, ToolOutcome};
use zigral_store::{HitlSettings, SessionRecord};

use crate::api::actions::run_logged;
use crate::events::Event;
use crate::hitl::secret::{self, Screen};
use crate::hitl::{feedback, input, undo};
use crate::state::AppState;
use crate::vault::Field;

use super::SessionAgent;

/// The display size declared to the model for a `screen`, as the reference loop picks it:
/// XGA (4:3), WXGA (16:10) or FWXGA (~16:9) when the screen's aspect ratio is within 0.02 of
/// one and the screen is larger; otherwise the screen itself (scaled to a long edge of 1568 px
/// at most, the vision encoder's limit).
pub fn declared_display(screen: Size) -> Size {
    const TARGETS: [(u32, u32); 3] = [(1024, 768), (1280, 800), (1366, 768)];
    let ratio = f64::from(screen.width) / f64::from(screen.height.max(1));
    for (w, h) in TARGETS {
        if (f64::from(w) / f64::from(h) - ratio).abs() < 0.02 && screen.width > w {
            return Size {
                width: w,
                height: h,
            };
        }
    }
    let long = screen.width.max(screen.height);
    if long <= 1568 {
        return screen;
    }
    let f = 1568.0 / f64::from(long);
    Size {
        width: (f64::from(screen.width) * f).round() as u32,
        height: (f64::from(screen.height) * f).round() as u32,
    }
}

/// What a step needs besides the call.
pub struct StepCtx<'a> {
    pub st: &'a AppState,
    pub agent: &'a SessionAgent,
    pub session: &'a SessionRecord,
    pub exec: &'a Executor,
    pub profile: &'a str,
    pub declared: Size,
    /// Whether the provider wants the page URL with each screenshot (OpenAI Responses).
    pub want_url: bool,
    /// The profile's human-in-the-loop settings.
    pub hitl: &'a HitlSettings,
    /// The person's request this turn works on (feedback context).
    pub instruction: &'a str,
    /// Whether the loop approved this call as a risky action (a checkpoint is taken first).
    pub risky: bool,
}

/// The extra tools every provider format offers besides the computer tool.
pub fn extra_tools() -> Vec<ExtraTool> {
    vec![
        ExtraTool {
            name: TYPE_SECRET.into(),
            description: "Types a credential the person stored for you into the field that has \
                keyboard focus, without you ever seeing it. Click the field first. `name` is \
                one of the credential names you were told; `field` is `username` or \
                `password`. It only works on the credential's own sites."
                .into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "credential name"},
                    "field": {"type": "string", "enum": ["username", "password"]}
                },
                "required": ["name", "field"],
                "additionalProperties": false
            }),
        },
        ExtraTool {
            name: REQUEST_HUMAN_INPUT.into(),
            description: "Asks the person for help and waits for the answer: `2fa` for a \
                one-time code (focus the code field first: the person's code is typed into \
                it without you seeing it), `captcha` to have them solve a captcha, `confirm` \
                for a yes/no question, `takeover` to have them do something themselves."
                .into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "kind": {"type": "string", "enum": ["2fa", "captcha", "confirm", "takeover"]},
                    "prompt": {"type": "string", "description": "what to tell the person"}
                },
                "required": ["kind", "prompt"],
                "additionalProperties": false
            }),
        },
    ]
}

/// Tool names of [`extra_tools`].
pub const TYPE_SECRET: &str = "type_secret";
pub const REQUEST_HUMAN_INPUT: &str = "request_human_input";

/// `type_secret`'s input.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TypeSecretInput {
    name: String,
    field: Field,
}

fn image_of_data_url(u: &str) -> Option<Image> {
    let rest = u.strip_prefix("data:")?;
    let (mime, b64) = rest.split_once(";base64,")?;
    Some(Image {
        media_type: mime.to_owned(),
        base64: b64.to_owned(),
    })
}

/// Runs one adapter batch through the action log (`who` = `agent:<profile>`, `via` = agent).
async fn logged<T, F>(
    cx: &StepCtx<'_>,
    batch: impl FnOnce(Executor) -> F,
) -> Result<(T, BatchResponse), String>
where
    T: Send + 'static,
    F: Future<Output = Result<(T, BatchRequest, BatchResponse), ActionError>> + Send + 'static,
{
    let who = format!("agent:{}", cx.profile);
    run_logged(cx.st, cx.session, who, "agent", cx.exec.clone(), batch)
        .await
        .map_err(|e| e.to_string())
}

/// The model's result of an Anthropic `tool_result` content (text blocks and an image).
fn from_blocks(call_id: &str, content: &[Value], is_error: bool) -> ToolOutcome {
    let mut o = ToolOutcome {
        call_id: call_id.to_owned(),
        is_error,
        ..ToolOutcome::default()
    };
    let mut texts = Vec::new();
    for b in content {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => texts.push(b["text"].as_str().unwrap_or_default().to_owned()),
            Some("image") => {
                let src = &b["source"];
                o.image = Some(Image {
                    media_type: src["media_type"].as_str().unwrap_or("image/png").to_owned(),
                    base64: src["data"].as_str().unwrap_or_default().to_owned(),
                });
            }
            _ => {}
        }
    }
    if !texts.is_empty() {
        o.text = Some(texts.join("\n"));
    }
    o
}

/// Runs one tool call; every failure becomes an error result for the model (and the step
/// event says so). Around the call: a checkpoint when it is risky, gets a feedback prompt or
/// starts a new block of `checkpoint_every` steps; screenshots withheld while a secret field
/// has focus; the feedback prompt (waited for when the profile says so).
pub async fn act(cx: &StepCtx<'_>, step: u32, call: &ToolCall) -> (ToolOutcome, bool) {
    let t = Instant::now();
    let n = cx.agent.next_step(cx.st.store());
    // The loop waited for any lease before this call; one taken since wins.
    if let Some(h) = cx.st.control().holder(&cx.session.id) {
        let why = format!(
            "Not run: {} took control of the desktop; wait until they release it.",
            h.user_name
        );
        let (o, ok, _) = finish(cx, step, n, call, t, Err(why), false).await;
        return (o, ok);
    }
    cx.st.vdi().touch(cx.session.desktop);
    let mut hands = Some(cx.agent.hands.lock().await);
    let asks = matches!(&call.call, Call::Function { name, .. } if name == REQUEST_HUMAN_INPUT);
    let enabled = cx.hitl.feedback && cx.session.hitl != Some(false);
    let prompt = !asks && zigral_agent::feedback::should_prompt_feedback(enabled, n);
    let every = u64::from(cx.hitl.checkpoint_every.max(1));
    let mut checkpoint = None;
    if !asks && (cx.risky || prompt || (n - 1).is_multiple_of(every)) {
        let why = if cx.risky {
            "risky action"
        } else if prompt {
            "feedback prompt"
        } else {
            "periodic"
        };
        match undo::take(cx.st, cx.session, cx.exec, n, why, cx.hitl.max_checkpoints).await {
            Ok(m) => checkpoint = Some(m.id),
            Err(e) => tracing::warn!(session = %cx.session.id, step = n, error = %e,
                "no checkpoint before the agent step"),
        }
    }
    // (The screen gate refuses it while a secret field has focus.)
    let before = if prompt { thumbnail(cx).await } else { None };
    if asks {
        // A person may answer by undoing or rejecting: never hold the hands while waiting.
        hands = None;
    }
    let ran = run_call(cx, call).await;
    let (mut outcome, ok, error) = settle_outcome(call, ran);
    let withheld = gate_image(cx, call, &mut outcome).await;
    let (mut outcome, ok, after) =
        finish(cx, step, n, call, t, Ok((outcome, ok, error)), withheld).await;
    drop(hands);
    if prompt {
        let facts = feedback::StepFacts {
            step: n,
            profile: cx.profile,
            call: zigral_agent::describe::describe(&call.call, false),
            actions: zigral_agent::describe::action_names(&call.call),
            instruction: Some(cx.instruction.chars().take(2000).collect()),
            url: outcome.current_url.clone().or(current_url(cx).await),
            checkpoint,
            before,
            after,
        };
        match feedback::prompt(cx.st, cx.session, facts).await {
            Ok(rec) if cx.hitl.wait_for_feedback => {
                if wait_feedback(cx, rec.seq).await && outcome.image.is_some() {
                    // A reject rolled the browser back: show the model the screen as it is.
                    outcome.image = look(cx.exec, cx.declared).await;
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!(session = %cx.session.id, error = %e,
                "cannot record a feedback prompt"),
        }
    }
    (outcome, ok)
}

/// Waits for feedback prompt `seq` (up to the approval timeout); true when it was rejected.
async fn wait_feedback(cx: &StepCtx<'_>, seq: u64) -> bool {
    let rx = cx.agent.wait_feedback(seq);
    let status = cx.agent.update(|s| {
        s.state = super::AgentState::Waiting;
        s.waiting_for = Some(format!("feedback on step (prompt {seq})"));
    });
    cx.st.publish(Event::new(
        "agent.state",
        Some(&cx.session.id),
        Some(&cx.session.owner),
        json!({"state": status.state, "waiting_for": status.waiting_for}),
    ));
    let limit = std::time::Duration::from_secs(u64::from(cx.hitl.approval_timeout_secs));
    let _ = tokio::time::timeout(limit, rx).await;
    cx.agent.update(|s| {
        s.state = super::AgentState::Running;
        s.waiting_for = None;
    });
    cx.st
        .store()
        .get_feedback(&cx.session.id, seq)
        .ok()
        .flatten()
        .and_then(|r| feedback::data_of(&r))
        .and_then(|d| d.answer)
        .is_some_and(|a| a.verdict == feedback::Verdict::Reject)
}

async fn current_url(cx: &StepCtx<'_>) -> Option<String> {
    Some(cx.exec.browser()?.current().await.ok()?.url)
}

/// Applies the secret-field rule to a result's screenshot; true when withheld.
async fn gate_image(cx: &StepCtx<'_>, call: &ToolCall, o: &mut ToolOutcome) -> bool {
    match secret::screen(cx.st, &cx.session.id, cx.exec.browser()).await {
        Screen::Withheld(label) => {
            let needs_image = matches!(call.call, Call::OpenAi { .. });
            if o.image.is_some() || needs_image {
                o.image = needs_image.then(|| blank(cx.declared));
                let note = secret::withheld_note(&label);
                o.text = Some(match o.text.take() {
                    // The adapter may have said so already.
                    Some(t) if t.contains(&note) => t,
                    Some(t) if !t.is_empty() => format!("{t}\n{note}"),
                    _ => note,
                });
            }
            true
        }
        // Any image in the result passed the desktop's screen gate after the field lost focus.
        Screen::Clear | Screen::Reopened => false,
    }
}

fn blank(size: Size) -> Image {
    Image {
        media_type: "image/png".into(),
        base64: base64::engine::general_purpose::STANDARD
            .encode(secret::blank_png(size.width, size.height)),
    }
}

/// The screen as the model sees it (PNG at the declared size).
pub async fn look(exec: &Executor, declared: Size) -> Option<Image> {
    let spec = ScreenshotSpec {
        format: Some(ImageFormat::Png),
        quality: None,
        scale: Some(ScaleSpec::Named(format!(
            "{}x{}",
            declared.width, declared.height
        ))),
        cursor: None,
    };
    let img = exec.screenshot(&spec).await.ok()?;
    Some(Image {
        media_type: img.mime,
        base64: img.data,
    })
}

/// The model screenshot for `look()` calls of the loop, under the secret-field rule.
pub async fn look_gated(cx: &StepCtx<'_>) -> Option<Image> {
    match secret::screen(cx.st, &cx.session.id, cx.exec.browser()).await {
        Screen::Withheld(_) => Some(blank(cx.declared)),
        Screen::Clear | Screen::Reopened => look(cx.exec, cx.declared).await,
    }
}

/// A small JPEG of the screen (step thumbnails, feedback screenshots).
async fn thumbnail(cx: &StepCtx<'_>) -> Option<Vec<u8>> {
    let spec = ScreenshotSpec {
        format: Some(ImageFormat::Jpeg),
        quality: Some(50),
        scale: Some(ScaleSpec::Factor(0.25)),
        cursor: Some(true),
    };
    let img = cx.exec.screenshot(&spec).await.ok()?;
    base64::engine::general_purpose::STANDARD
        .decode(img.data)
        .ok()
}

type Ran = Result<(ToolOutcome, bool), String>;

fn settle_outcome(call: &ToolCall, ran: Ran) -> (ToolOutcome, bool, Option<String>) {
    match ran {
        Ok((o, ok)) => {
            let err = (!ok).then(|| o.text.clone().unwrap_or_default());
            (o, ok, err)
        }
        Err(e) => (
            ToolOutcome::error(call.id.clone(), e.clone()),
            false,
            Some(e),
        ),
    }
}

/// Runs the call itself.
async fn run_call(cx: &StepCtx<'_>, call: &ToolCall) -> Ran {
    let id = call.id.clone();
    if let Call::Function { name, arguments } = &call.call {
        if name == TYPE_SECRET {
            let input: TypeSecretInput = serde_json::from_value(arguments.clone())
                .map_err(|e| format!("invalid type_secret input: {e}"))?;
            let who = format!("agent:{}", cx.profile);
            return secret::type_secret(
                cx.st,
                cx.session,
                cx.exec,
                &who,
                "agent",
                &input.name,
                input.field,
            )
            .await
            .map(|t| {
                let o = ToolOutcome {
                    call_id: id.clone(),
                    text: Some(format!(
                        "Typed the {} of {:?} into the focused {} field on {}. Screenshots are \
                         withheld until that field loses focus.",
                        match t.field {
                            Field::Username => "username",
                            Field::Password => "password",
                        },
                        t.name,
                        t.kind,
                        t.host
                    )),
                    ..ToolOutcome::default()
                };
                (o, true)
            })
            .map_err(|e| format!("type_secret refused: {e}"));
        }
        if name == REQUEST_HUMAN_INPUT {
            let req: input::InputRequest = serde_json::from_value(arguments.clone())
                .map_err(|e| format!("invalid request_human_input input: {e}"))?;
            let limit = std::time::Duration::from_secs(u64::from(cx.hitl.input_timeout_secs));
            let who = format!("agent:{}", cx.profile);
            return input::ask(cx.st, cx.session, cx.agent, cx.exec, req, limit, &who)
                .await
                .map(|text| {
                    let o = ToolOutcome {
                        call_id: id.clone(),
                        text: Some(text),
                        ..ToolOutcome::default()
                    };
                    (o, true)
                })
                .map_err(|e| e.to_string());
        }
    }
    let (w, h) = (Some(cx.declared.width), Some(cx.declared.height));
    let ran: Result<(ToolOutcome, bool), String> = match &call.call {
        Call::Malformed { error, .. } => Err(format!("invalid tool input: {error}")),
        Call::Anthropic { input } => {
            match serde_json::from_value::<anthropic::ComputerInput>(input.clone()) {
                Err(e) => Err(format!("invalid computer tool input: {e}")),
                Ok(input) => {
                    let opts = anthropic::Options {
                        display_width_px: w,
                        display_height_px: h,
                        format: Some(ImageFormat::Png),
                        screenshot: Some(true),
                        verbose: None,
                    };
                    logged(cx, |exec| async move {
                        anthropic::run(&exec, &input, &opts).await
                    })
                    .await
                    .map(|(out, resp)| (from_blocks(&id, &out.content, out.is_error), resp.ok))
                }
            }
        }
        Call::OpenAi { actions, .. } => {
            match openai::Call::from_value(json!({ "actions": actions })) {
                Err(e) => Err(format!("invalid computer action: {e}")),
                Ok(oc) => {
                    let opts = openai::Options {
                        display_width: w,
                        display_height: h,
                        format: Some(ImageFormat::Png),
                        verbose: None,
                    };
                    logged(
                        cx,
                        |exec| async move { openai::run(&exec, &oc, &opts).await },
                    )
                    .await
                    .map(|(out, resp)| {
                        let url = out.output["image_url"].as_str().unwrap_or_default();
                        let text = out.error.as_ref().map(|e| {
                            format!(
                                "error: {}",
                                e["message"].as_str().unwrap_or("action failed")
                            )
                        });
                        let o = ToolOutcome {
                            call_id: id.clone(),
                            is_error: text.is_some(),
                            text,
                            image: image_of_data_url(url),
                            ..ToolOutcome::default()
                        };
                        (o, resp.ok)
                    })
                }
            }
        }
        Call::Function { name, arguments } => {
            let opts = functions::Options {
                display_width: w,
                display_height: h,
                format: Some(ImageFormat::Png),
                screenshot: Some(true),
            };
            let (name, arguments) = (name.clone(), arguments.clone());
            logged(cx, |exec| async move {
                functions::run(&exec, &name, &arguments, &opts).await
            })
            .await
            .map(|(out, resp)| {
                let o = ToolOutcome {
                    call_id: id.clone(),
                    text: Some(out.content.clone()),
                    image: out.image.as_ref().map(|i| Image {
                        media_type: i.mime.clone(),
                        base64: i.data.clone(),
                    }),
                    is_error: out.is_error,
                    ..ToolOutcome::default()
                };
                (o, resp.ok)
            })
        }
    };
    ran
}

async fn finish(
    cx: &StepCtx<'_>,
    step: u32,
    n: u64,
    call: &ToolCall,
    t: Instant,
    ran: Result<(ToolOutcome, bool, Option<String>), String>,
    withheld: bool,
) -> (ToolOutcome, bool, Option<Vec<u8>>) {
    let described = zigral_agent::describe::describe(&call.call, false);
    let names = zigral_agent::describe::action_names(&call.call);
    let (mut outcome, ok, error) = match ran {
        Ok(v) => v,
        Err(e) => (
            ToolOutcome::error(call.id.clone(), e.clone()),
            false,
            Some(e),
        ),
    };
    if cx.want_url
        && let Some(b) = cx.exec.browser()
        && let Ok(tab) = b.current().await
    {
        outcome.current_url = Some(tab.url);
    }
    let shot = if withheld { None } else { thumbnail(cx).await };
    let thumbnail = shot.as_ref().map(|b| {
        cx.agent.put_thumbnail(n, b.clone());
        format!(
            "/api/v1/sessions/{}/agent/steps/{n}/thumbnail",
            cx.session.id
        )
    });
    cx.st.publish(Event::new(
        "agent.step",
        Some(&cx.session.id),
        Some(&cx.session.owner),
        json!({
            "profile": cx.profile,
            "step": step,
            "n": n,
            "call_id": call.id,
            "call": described,
            "actions": names,
            "ok": ok,
            "error": error,
            "duration_ms": t.elapsed().as_secs_f64() * 1000.0,
            "thumbnail": thumbnail,
            "screenshot_withheld": withheld,
        }),
    ));
    (outcome, ok, shot)
}
