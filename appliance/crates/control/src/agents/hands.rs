//! The agent's hands: one model tool call → native actions on the session's desktop, run and
//! logged like any other action (`who` = `agent:<profile id>`, `via` = `agent`), then the
//! result the model gets back (text and a screenshot at the declared display size), a small
//! JPEG thumbnail kept for the step's event, and an `agent.step` event.

use std::time::Instant;

use base64::Engine;
use serde_json::{Value, json};
use zigral_actions::{
    ActionError, BatchRequest, Executor, ImageFormat, ScaleSpec, ScreenshotSpec, anthropic,
    functions, openai,
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

fn error_outcome(call: &ToolCall, text: String) -> ToolOutcome {
    ToolOutcome {
        call_id: call.id.clone(),
        text: Some(text),
        image: None,
        is_error: true,
        acknowledged: Vec::new(),
        current_url: None,
    }
}

fn image_of_data_url(u: &str) -> Option<Image> {
    let rest = u.strip_prefix("data:")?;
    let (mime, b64) = rest.split_once(";base64,")?;
    Some(Image {
        media_type: mime.to_owned(),
        base64: b64.to_owned(),
    })
}

/// Runs one tool call; every failure becomes an error result for the model (and the step
/// event says so).
pub async fn act(cx: &StepCtx<'_>, step: u32, call: &ToolCall) -> (ToolOutcome, bool) {
    let t = Instant::now();
    cx.st.vdi().touch(cx.session.desktop);
    let who = format!("agent:{}", cx.profile);
    let described = zigral_agent::describe::describe(&call.call, false);
    let names = zigral_agent::describe::action_names(&call.call);
    let declared = (Some(cx.declared.width), Some(cx.declared.height));
    let ran: Result<(ToolOutcome, bool, Vec<u64>), String> = match &call.call {
        Call::Malformed { error, .. } => Err(format!("invalid tool input: {error}")),
        Call::Anthropic { input } => {
            match serde_json::from_value::<anthropic::ComputerInput>(input.clone()) {
                Err(e) => Err(format!("invalid computer tool input: {e}")),
                Ok(input) => {
                    let opts = anthropic::Options {
                        display_width_px: declared.0,
                        display_height_px: declared.1,
                        format: Some(ImageFormat::Png),
                        screenshot: Some(true),
                        verbose: None,
                    };
                    run_logged(
                        cx.st,
                        cx.session,
                        who.clone(),
                        "agent",
                        cx.exec.clone(),
                        |exec| async move { anthropic::run(&exec, &input, &opts).await },
                    )
                    .await
                    .map(|(out, resp)| {
                        let mut o = ToolOutcome {
                            call_id: call.id.clone(),
                            text: None,
                            image: None,
                            is_error: out.is_error,
                            acknowledged: Vec::new(),
                            current_url: None,
                        };
                        let mut texts = Vec::new();
                        for b in &out.content {
                            match b.get("type").and_then(Value::as_str) {
                                Some("text") => texts.push(
                                    b.get("text")
                                        .and_then(Value::as_str)
                                        .unwrap_or_default()
                                        .to_owned(),
                                ),
                                Some("image") => {
                                    let src = &b["source"];
                                    o.image = Some(Image {
                                        media_type: src["media_type"]
                                            .as_str()
                                            .unwrap_or("image/png")
                                            .to_owned(),
                                        base64: src["data"].as_str().unwrap_or_default().to_owned(),
                                    });
                                }
                                _ => {}
                            }
                        }
                        if !texts.is_empty() {
                            o.text = Some(texts.join("\n"));
                        }
                        (o, resp.ok, Vec::new())
                    })
                    .map_err(|e| e.to_string())
                }
            }
        }
        Call::OpenAi { actions, .. } => {
            match openai::Call::from_value(json!({ "actions": actions })) {
                Err(e) => Err(format!("invalid computer action: {e}")),
                Ok(oc) => {
                    let opts = openai::Options {
                        display_width: declared.0,
                        display_height: declared.1,
                        format: Some(ImageFormat::Png),
                        verbose: None,
                    };
                    run_logged(
                        cx.st,
                        cx.session,
                        who.clone(),
                        "agent",
                        cx.exec.clone(),
                        |exec| async move { openai::run(&exec, &oc, &opts).await },
                    )
                    .await
                    .map(|(out, resp)| {
                        let url = out
                            .output
                            .get("image_url")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        let text = out.error.as_ref().map(|e| {
                            format!(
                                "error: {}",
                                e.get("message")
                                    .and_then(Value::as_str)
                                    .unwrap_or("action failed")
                            )
                        });
                        (
                            ToolOutcome {
                                call_id: call.id.clone(),
                                is_error: text.is_some(),
                                text,
                                image: image_of_data_url(url),
                                acknowledged: Vec::new(),
                                current_url: None,
                            },
                            resp.ok,
                            Vec::new(),
                        )
                    })
                    .map_err(|e| e.to_string())
                }
            }
        }
        Call::Function { name, arguments } => {
            let screen = match cx.exec.screen_size().await {
                Ok(s) => s,
                Err(e) => {
                    return finish(cx, step, call, &described, &names, t, Err(e.to_string())).await;
                }
            };
            let sc = anthropic::Scaling {
                declared: cx.declared,
                screen,
            };
            match functions::to_actions(name, arguments, &sc) {
                Err(e) => Err(e.to_string()),
                Ok(actions) => {
                    let req = BatchRequest {
                        actions,
                        screenshot: Some(ScreenshotSpec {
                            format: Some(ImageFormat::Png),
                            quality: None,
                            scale: sc.scale_spec(),
                            cursor: None,
                        }),
                    };
                    run_logged(
                        cx.st,
                        cx.session,
                        who.clone(),
                        "agent",
                        cx.exec.clone(),
                        |exec| async move {
                            let resp = exec.run(&req).await?;
                            Ok::<_, ActionError>(((), req, resp))
                        },
                    )
                    .await
                    .map(|((), resp)| {
                        let err = resp
                            .results
                            .iter()
                            .find(|r| !r.ok)
                            .and_then(|r| r.error.as_ref())
                            .map(|e| format!("error: {}", e.message));
                        let texts: Vec<String> = resp
                            .results
                            .iter()
                            .filter_map(|r| r.output.as_ref())
                            .filter_map(|o| serde_json::to_value(o).ok())
                            .filter(|v| v.get("type").and_then(Value::as_str) != Some("image"))
                            .map(|v| v.to_string())
                            .collect();
                        let text = match (err, texts.is_empty()) {
                            (Some(e), _) => Some(e),
                            (None, false) => Some(texts.join("\n")),
                            (None, true) => Some("ok".to_owned()),
                        };
                        (
                            ToolOutcome {
                                call_id: call.id.clone(),
                                is_error: !resp.ok,
                                text,
                                image: resp.screenshot.as_ref().map(|i| Image {
                                    media_type: i.mime.clone(),
                                    base64: i.data.clone(),
                                }),
                                acknowledged: Vec::new(),
                                current_url: None,
                            },
                            resp.ok,
                            Vec::new(),
                        )
                    })
                    .map_err(|e| e.to_string())
                }
            }
        }
    };
    finish(cx, step, call, &described, &names, t, ran).await
}

async fn finish(
    cx: &StepCtx<'_>,
    step: u32,
    call: &ToolCall,
    described: &str,
    names: &[String],
    t: Instant,
    ran: Result<(ToolOutcome, bool, Vec<u64>), String>,
) -> (ToolOutcome, bool) {
    let (mut outcome, ok, error) = match ran {
        Ok((o, ok, _)) => {
            let err = (!ok).then(|| o.text.clone().unwrap_or_default());
            (o, ok, err)
        }
        Err(e) => (error_outcome(call, e.clone()), false, Some(e)),
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
