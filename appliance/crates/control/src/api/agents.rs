//! `/api/v1/agents`: agent profiles (name, system prompt, provider and tool generation, start
//! URL, allowed domains, step limit, context budget, human-in-the-loop settings and risky-action
//! patterns) and their write-only provider API keys. Users manage their own profiles and may
//! use those an administrator made; administrators see and manage every profile.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use zigral_agent::Settings;
use zigral_store::{AgentProfileRecord, AgentProvider, HitlSettings};

use crate::auth::{Principal, Scope, new_id};
use crate::error::{ApiError, ApiResult, CommonErrors, Json, Path};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_agents, create_agent))
        .routes(routes!(get_agent, replace_agent, delete_agent))
        .routes(routes!(set_key, delete_key))
}

/// The provider part of a profile.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderBody {
    /// Tool generation (fixes the wire format): `computer_20250124`, `computer_20251124`,
    /// `computer_toolset_20260801` (Anthropic), `computer_use_preview`, `computer` (OpenAI
    /// Responses), `functions` (OpenAI-compatible Chat Completions: vLLM, Ollama, llama.cpp).
    pub generation: String,
    pub model: String,
    /// Base URL without `/v1`; default: the provider's public API (Ollama's local port for
    /// `functions`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Most output tokens per reply (default 4096).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Anthropic thinking: `adaptive` or a budget of at least 1024 tokens.
    #[serde(default)]
    pub thinking: Option<String>,
    /// Retries of failed requests (default 2, like the official SDKs).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Per-request timeout in seconds (default 600).
    #[serde(default)]
    pub timeout_secs: Option<u32>,
    /// Take the API key from this environment variable of the control plane.
    #[serde(default)]
    pub api_key_env: Option<String>,
}

/// A profile to create or replace.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileBody {
    pub name: String,
    #[serde(default)]
    pub system_prompt: String,
    pub provider: ProviderBody,
    #[serde(default)]
    pub start_url: Option<String>,
    /// Domains (and subdomains) the agent may visit; empty = any http(s) site.
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// Most tool calls in one chat turn (default 50).
    #[serde(default)]
    pub max_steps: Option<u32>,
    /// Token budget of the conversation (default 100000); older turns are summarized past it.
    #[serde(default)]
    pub context_budget_tokens: Option<u32>,
    /// Screenshots kept in the conversation, dropped in chunks (default: 0 = all for
    /// Anthropic, where prompt caching makes old screenshots cheap; 3 otherwise).
    #[serde(default)]
    pub keep_images: Option<u32>,
    #[serde(default)]
    pub hitl: Option<HitlSettings>,
    /// Regular expressions over a call's description that make it risky.
    #[serde(default)]
    pub risky_patterns: Vec<String>,
    /// The provider API key (write-only: never returned; absent on replace keeps the old one).
    #[serde(default)]
    #[schema(write_only)]
    pub api_key: Option<String>,
}

/// A write-only API key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyBody {
    #[schema(write_only)]
    pub api_key: String,
}

fn record_of(
    id: String,
    owner: String,
    b: ProfileBody,
) -> ApiResult<(AgentProfileRecord, Option<String>)> {
    let anthropic = b.provider.generation.starts_with("computer_20")
        || b.provider.generation.starts_with("computer_toolset");
    let rec = AgentProfileRecord {
        id,
        owner,
        name: b.name.trim().to_owned(),
        system_prompt: b.system_prompt,
        provider: AgentProvider {
            generation: b.provider.generation,
            model: b.provider.model.trim().to_owned(),
            base_url: b.provider.base_url,
            max_tokens: b.provider.max_tokens.unwrap_or(4096),
            thinking: b.provider.thinking,
            max_retries: b.provider.max_retries.unwrap_or(2),
            timeout_secs: b.provider.timeout_secs.unwrap_or(600),
            api_key_env: b.provider.api_key_env,
        },
        start_url: b.start_url,
        allowed_domains: b
            .allowed_domains
            .into_iter()
            .map(|d| d.trim().to_ascii_lowercase())
            .collect(),
        max_steps: b.max_steps.unwrap_or(50),
        context_budget_tokens: b.context_budget_tokens.unwrap_or(100_000),
        keep_images: b.keep_images.unwrap_or(if anthropic { 0 } else { 3 }),
        hitl: b.hitl.unwrap_or_default(),
        risky_patterns: b.risky_patterns,
        api_key_set: false,
        created_at: 0,
        updated_at: 0,
    };
    Settings::check(&rec).map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok((rec, b.api_key))
}

/// Profile `id` if the caller may see it: its owner, an admin, or anyone for a profile an
/// admin made (shared). 404 otherwise.
pub(crate) fn visible(st: &AppState, who: &Principal, id: &str) -> ApiResult<AgentProfileRecord> {
    let not_found = || ApiError::not_found(format!("agent profile {id} not found"));
    if id.len() > 128 {
        return Err(not_found());
    }
    let p = st.store().get_agent(id)?.ok_or_else(not_found)?;
    if who.is_admin || p.owner == who.user_id || owner_is_admin(st, &p) {
        Ok(p)
    } else {
        Err(not_found())
    }
}

fn owner_is_admin(st: &AppState, p: &AgentProfileRecord) -> bool {
    matches!(st.store().get_user(&p.owner), Ok(Some(u)) if u.is_admin)
}

/// Profile `id` if the caller may change it (its owner or an admin).
fn editable(st: &AppState, who: &Principal, id: &str) -> ApiResult<AgentProfileRecord> {
    who.require(Scope::Write)?;
    let p = visible(st, who, id)?;
    if who.is_admin || p.owner == who.user_id {
        Ok(p)
    } else {
        Err(ApiError::forbidden(
            "this profile belongs to an administrator; copy it to change it",
        ))
    }
}

fn store_key(st: &AppState, id: &str, key: &str) -> ApiResult<()> {
    st.agents().keys().set(id, key).map_err(|e| match e {
        crate::agents::keys::KeyError::Invalid => ApiError::invalid(e.to_string()),
        other => ApiError::internal(other),
    })
}

/// Lists the profiles you may use (yours and the administrators'); administrators see all.
#[utoipa::path(get, path = "/agents", tag = "agents",
    responses((status = 200, body = Vec<AgentProfileRecord>), CommonErrors))]
async fn list_agents(
    State(st): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<AgentProfileRecord>>> {
    let mut all = st.store().list_agents(None)?;
    if !who.is_admin {
        all.retain(|p| p.owner == who.user_id || owner_is_admin(&st, p));
    }
    Ok(Json(all))
}

/// Creates a profile. Every field is checked (422 with the field name); `api_key` is stored
/// apart from the database and never returned.
#[utoipa::path(post, path = "/agents", tag = "agents",
    request_body = ProfileBody,
    responses((status = 201, body = AgentProfileRecord), CommonErrors))]
async fn create_agent(
    State(st): State<AppState>,
    who: Principal,
    Json(body): Json<ProfileBody>,
) -> ApiResult<(StatusCode, Json<AgentProfileRecord>)> {
    who.require(Scope::Write)?;
    let (mut rec, key) = record_of(new_id(), who.user_id.clone(), body)?;
    if let Some(k) = &key {
        store_key(&st, &rec.id, k)?;
        rec.api_key_set = true;
    }
    let rec = st.store().create_agent(rec).await?;
    st.audit(
        &who.actor(),
        "agent.create",
        &rec.id,
        json!({"name": rec.name, "generation": rec.provider.generation, "model": rec.provider.model}),
    )
    .await;
    Ok((StatusCode::CREATED, Json(rec)))
}

/// One profile.
#[utoipa::path(get, path = "/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "profile id")),
    responses((status = 200, body = AgentProfileRecord), CommonErrors))]
async fn get_agent(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<AgentProfileRecord>> {
    Ok(Json(visible(&st, &who, &id)?))
}

/// Replaces a profile (sessions using it pick up the change at their next chat turn).
#[utoipa::path(put, path = "/agents/{id}", tag = "agents",
    request_body = ProfileBody,
    params(("id" = String, Path, description = "profile id")),
    responses((status = 200, body = AgentProfileRecord), CommonErrors))]
async fn replace_agent(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<ProfileBody>,
) -> ApiResult<Json<AgentProfileRecord>> {
    let old = editable(&st, &who, &id)?;
    let (mut rec, key) = record_of(id.clone(), old.owner.clone(), body)?;
    rec.api_key_set = old.api_key_set;
    if let Some(k) = &key {
        store_key(&st, &id, k)?;
        rec.api_key_set = true;
    }
    let rec = st.store().replace_agent(rec).await?;
    st.audit(
        &who.actor(),
        "agent.replace",
        &id,
        json!({"name": rec.name}),
    )
    .await;
    Ok(Json(rec))
}

/// Deletes a profile and its key; 409 while a session uses it.
#[utoipa::path(delete, path = "/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "profile id")),
    responses((status = 204, description = "deleted"), CommonErrors,
        (status = 409, description = "a session uses the profile", body = crate::error::ErrorBody)))]
async fn delete_agent(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    editable(&st, &who, &id)?;
    st.store().delete_agent(&id).await?;
    if let Err(e) = st.agents().keys().remove(&id) {
        tracing::error!(error = %e, profile = %id, "cannot remove an agent's API key file");
    }
    st.audit(&who.actor(), "agent.delete", &id, json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets the profile's provider API key (write-only: no endpoint returns it).
#[utoipa::path(put, path = "/agents/{id}/api-key", tag = "agents",
    request_body = KeyBody,
    params(("id" = String, Path, description = "profile id")),
    responses((status = 204, description = "stored"), CommonErrors))]
async fn set_key(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<KeyBody>,
) -> ApiResult<StatusCode> {
    let mut p = editable(&st, &who, &id)?;
    store_key(&st, &id, &body.api_key)?;
    if !p.api_key_set {
        p.api_key_set = true;
        st.store().replace_agent(p).await?;
    }
    st.audit(&who.actor(), "agent.api_key.set", &id, json!({}))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes the profile's provider API key.
#[utoipa::path(delete, path = "/agents/{id}/api-key", tag = "agents",
    params(("id" = String, Path, description = "profile id")),
    responses((status = 204, description = "removed"), CommonErrors))]
async fn delete_key(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let mut p = editable(&st, &who, &id)?;
    st.agents().keys().remove(&id).map_err(ApiError::internal)?;
    if p.api_key_set {
        p.api_key_set = false;
        st.store().replace_agent(p).await?;
    }
    st.audit(&who.actor(), "agent.api_key.delete", &id, json!({}))
        .await;
    Ok(StatusCode::NO_CONTENT)
}
