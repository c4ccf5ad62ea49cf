//! `/api/v1/sessions/{id}/messages`, `/context` and `/summaries`: the context manager —
//! conversation history, context windows under a token budget, and summaries of old turns.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use zigral_store::{MessageRecord, NewMessage, SummaryRecord};

use crate::auth::{Principal, authorize_session};
use crate::context::{ContextError, ContextWindow, assemble};
use crate::error::{ApiError, ApiResult, CommonErrors, Json, Path, Query};
use crate::events::Event;
use crate::state::AppState;
use crate::tokens_estimate::{IMAGE_TOKENS, MESSAGE_OVERHEAD, text_tokens};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(append_message, list_messages))
        .routes(routes!(context))
        .routes(routes!(put_summary, list_summaries))
}

/// Most parts in one message.
const MAX_PARTS: usize = 64;
/// Default and largest page size.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One part of a message's content.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Plain text.
    Text { text: String },
    /// A reference to an image (e.g. a screenshot id or URL); the bytes are not stored here.
    Image {
        #[serde(rename = "ref")]
        reference: String,
        media_type: Option<String>,
        /// Token cost of the image if known (default 1600).
        tokens: Option<u32>,
    },
}

/// A message to append.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendMessage {
    pub role: Role,
    /// 1–64 content parts.
    pub content: Vec<ContentPart>,
}

/// Page query of a sequence-keyed list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Return items with `seq` greater than this (default: from the start).
    pub after: Option<u64>,
    /// Page size, 1..=1000 (default 100).
    pub limit: Option<usize>,
}

impl Page {
    /// Validates the page (after within int64, limit 1..=1000) and returns its size.
    pub fn limit(&self) -> Result<usize, ApiError> {
        if self.after.is_some_and(|a| a > i64::MAX as u64) {
            return Err(ApiError::invalid("after is out of range"));
        }
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(_) => Err(ApiError::invalid("limit must be 1..=1000")),
        }
    }
}

/// A page of messages.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessagePage {
    pub messages: Vec<MessageRecord>,
    /// Pass as `after` to get the next page; absent at the end.
    pub next_after: Option<u64>,
}

/// Context query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContextQuery {
    /// Token budget of the window (1..=10,000,000).
    pub budget_tokens: u32,
}

/// A summary to store.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSummary {
    /// First message seq covered.
    pub from_seq: u64,
    /// Last message seq covered (must exist).
    pub to_seq: u64,
    pub text: String,
}

/// Estimated tokens of a message with these parts.
pub fn message_tokens(parts: &[ContentPart]) -> u32 {
    let mut t = MESSAGE_OVERHEAD;
    for p in parts {
        t = t.saturating_add(match p {
            ContentPart::Text { text } => text_tokens(text),
            ContentPart::Image { tokens, .. } => tokens.unwrap_or(IMAGE_TOKENS),
        });
    }
    t
}

/// Appends a message to the conversation; durable when the 201 arrives.
#[utoipa::path(post, path = "/sessions/{id}/messages", tag = "context",
    request_body = AppendMessage,
    params(("id" = String, Path, description = "session id")),
    responses((status = 201, body = MessageRecord), CommonErrors))]
async fn append_message(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<AppendMessage>,
) -> ApiResult<(StatusCode, Json<MessageRecord>)> {
    let s = authorize_session(&st, &who, &id)?;
    if body.content.is_empty() || body.content.len() > MAX_PARTS {
        return Err(ApiError::invalid("content must have 1 to 64 parts"));
    }
    for p in &body.content {
        if let ContentPart::Image { reference, .. } = p
            && (reference.is_empty() || reference.len() > 2048)
        {
            return Err(ApiError::invalid("image ref must have 1 to 2048 bytes"));
        }
    }
    let tokens = message_tokens(&body.content);
    let mut content = serde_json::to_value(&body.content).map_err(ApiError::internal)?;
    // Live secret values of the owner never reach the database.
    st.hitl().redact_value(&s.owner, &mut content);
    let m = st
        .store()
        .append_message(
            &id,
            NewMessage {
                role: body.role.as_str().to_owned(),
                content,
                tokens,
                author: who.actor(),
            },
        )
        .await?;
    st.metrics()
        .messages_appended
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    st.publish(Event::new(
        "message.appended",
        Some(&id),
        Some(&s.owner),
        json!({"seq": m.seq, "role": m.role}),
    ));
    Ok((StatusCode::CREATED, Json(m)))
}

/// Lists messages oldest first, `limit` at a time after `after`.
#[utoipa::path(get, path = "/sessions/{id}/messages", tag = "context",
    params(("id" = String, Path, description = "session id"), Page),
    responses((status = 200, body = MessagePage), CommonErrors))]
async fn list_messages(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> ApiResult<Json<MessagePage>> {
    authorize_session(&st, &who, &id)?;
    let limit = page.limit()?;
    let messages = st.store().list_messages(&id, page.after, limit)?;
    let next_after = if messages.len() == limit {
        messages.last().map(|m| m.seq)
    } else {
        None
    };
    Ok(Json(MessagePage {
        messages,
        next_after,
    }))
}

/// The context window: system prompt + latest summary + the newest turns after it that fit
/// `budget_tokens`, each part with its token count (`zigral-estimate-v1`, an offline estimate
/// that errs on the high side). 422 if even the system prompt does not fit.
#[utoipa::path(get, path = "/sessions/{id}/context", tag = "context",
    params(("id" = String, Path, description = "session id"), ContextQuery),
    responses((status = 200, body = ContextWindow), CommonErrors))]
async fn context(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<ContextQuery>,
) -> ApiResult<Json<ContextWindow>> {
    let s = authorize_session(&st, &who, &id)?;
    if q.budget_tokens == 0 || q.budget_tokens > 10_000_000 {
        return Err(ApiError::invalid("budget_tokens must be 1..=10000000"));
    }
    match assemble(st.store(), &s, q.budget_tokens) {
        Ok(w) => Ok(Json(w)),
        Err(e @ ContextError::BudgetTooSmall { .. }) => Err(ApiError::invalid(e.to_string())),
        Err(ContextError::Store(e)) => Err(e.into()),
    }
}

/// Stores a summary of turns `from_seq..=to_seq` (written by the agent loop). The newest
/// summary replaces the turns it covers in context windows.
#[utoipa::path(post, path = "/sessions/{id}/summaries", tag = "context",
    request_body = NewSummary,
    params(("id" = String, Path, description = "session id")),
    responses((status = 201, body = SummaryRecord), CommonErrors))]
async fn put_summary(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<NewSummary>,
) -> ApiResult<(StatusCode, Json<SummaryRecord>)> {
    let s = authorize_session(&st, &who, &id)?;
    if body.text.is_empty() || body.text.len() > 256 * 1024 {
        return Err(ApiError::invalid("text must have 1 byte to 256 KiB"));
    }
    let rec = st
        .store()
        .put_summary(
            &id,
            SummaryRecord {
                from_seq: body.from_seq,
                to_seq: body.to_seq,
                tokens: text_tokens(&body.text) + MESSAGE_OVERHEAD,
                text: body.text,
                author: who.actor(),
                created_at: 0,
            },
        )
        .await?;
    st.publish(Event::new(
        "summary.stored",
        Some(&id),
        Some(&s.owner),
        json!({"from_seq": rec.from_seq, "to_seq": rec.to_seq}),
    ));
    Ok((StatusCode::CREATED, Json(rec)))
}

/// Lists a session's summaries ordered by `to_seq`.
#[utoipa::path(get, path = "/sessions/{id}/summaries", tag = "context",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = Vec<SummaryRecord>), CommonErrors))]
async fn list_summaries(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<SummaryRecord>>> {
    authorize_session(&st, &who, &id)?;
    Ok(Json(st.store().list_summaries(&id)?))
}
