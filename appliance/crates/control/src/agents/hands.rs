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
use zigral_llm::{Call, Image, ToolCall, ToolOutcome};
use zigral_store::SessionRecord;

use crate::api::actions::run_logged;
use crate::events::Event;
use crate::state::AppState;

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
/// event says so).
pub async fn act(cx: &StepCtx<'_>, step: u32, call: &ToolCall) -> (ToolOutcome, bool) {
    let t = Instant::now();
    // The loop waited for any lease before this call; one taken since wins.
    if let Some(h) = cx.st.control().holder(&cx.session.id) {
        let why = format!(
            "Not run: {} took control of the desktop; wait until they release it.",
            h.user_name
        );
        return finish(cx, step, call, t, Err(why)).await;
    }
    cx.st.vdi().touch(cx.session.desktop);
    let (w, h) = (Some(cx.declared.width), Some(cx.declared.height));
    let id = call.id.clone();
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
    finish(cx, step, call, t, ran).await
}

async fn finish(
    cx: &StepCtx<'_>,
    step: u32,
    call: &ToolCall,
    t: Instant,
    ran: Result<(ToolOutcome, bool), String>,
) -> (ToolOutcome, bool) {
    let described = zigral_agent::describe::describe(&call.call, false);
    let names = zigral_agent::describe::action_names(&call.call);
    let (mut outcome, ok, error) = match ran {
        Ok((o, ok)) => {
            let err = (!ok).then(|| o.text.clone().unwrap_or_default());
            (o, ok, err)
        }
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
    let n = cx
        .agent
        .step_counter
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    let thumb = ScreenshotSpec {
        format: Some(ImageFormat::Jpeg),
        quality: Some(50),
        scale: Some(ScaleSpec::Factor(0.25)),
        cursor: Some(true),
    };
    let thumbnail = match cx.exec.screenshot(&thumb).await {
        Ok(img) => match base64::engine::general_purpose::STANDARD.decode(img.data) {
            Ok(b) => {
                cx.agent.put_thumbnail(n, b);
                Some(format!(
                    "/api/v1/sessions/{}/agent/steps/{n}/thumbnail",
                    cx.session.id
                ))
            }
            Err(_) => None,
        },
        Err(_) => None,
    };
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
        }),
    ));
    (outcome, ok)
}
