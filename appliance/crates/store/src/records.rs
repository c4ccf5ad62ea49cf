//! The records kept in the store's tables (serialised as JSON values in redb).
//!
//! These are also the API shapes for everything that holds no secret material; `UserRecord` and
//! `TokenRecord` carry hashes and are mapped to safer views by the control plane.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A person (or operator) who can log in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: String,
    pub username: String,
    /// argon2id PHC string; never the password.
    pub password_hash: String,
    pub is_admin: bool,
    pub created_at: u64,
    /// A disabled user cannot log in or use any credential; their desktops are destroyed.
    #[serde(default)]
    pub disabled: bool,
    /// Keep this user's Chrome profile (cookies, storage, history) across desktops and reboots.
    #[serde(default)]
    pub persistent_profile: bool,
    /// Per-user overrides of the appliance's desktop limits and quota.
    #[serde(default)]
    pub limits: UserLimits,
}

/// Per-user desktop limits; `None` uses the appliance default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserLimits {
    /// CPUs per desktop, in thousandths (2000 = 2 CPUs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub millicpus: Option<u64>,
    /// Memory per desktop, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// Processes per desktop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    /// Desktops this user may hold at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_desktops: Option<u32>,
}

/// Where a desktop is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DesktopState {
    /// Spawned; waiting for its services' readiness probes.
    Starting,
    /// Every service is ready.
    Ready,
    /// Being destroyed (its files are removed unless the profile is persistent).
    Destroying,
}

/// A desktop the control plane spawned or adopted (`desktop@N` under zigral-init). The record
/// is written before the desktop is spawned or handed to a user, and removed only once it is
/// destroyed, so a restart never mistakes a used desktop for a fresh one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DesktopRecord {
    /// Desktop number N (display base + N, VNC base + N, CDP base + N, Unix user zigral-dN).
    pub n: u32,
    /// Owning user id; `None` for a warm-pool desktop nobody has used.
    pub owner: Option<String>,
    /// Sessions using it.
    pub sessions: Vec<String>,
    pub state: DesktopState,
    /// Its Chrome profile lives in the owner's persistent profile directory.
    pub persistent: bool,
    /// Current lease (tokens minted for an earlier lease are refused by the proxy).
    pub lease: Option<String>,
    /// Limits asked for: thousandths of a CPU, bytes, processes.
    pub millicpus: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    pub created_at: u64,
    /// When it was handed to its owner.
    pub assigned_at: Option<u64>,
}
/// What kind of bearer credential a token record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// Issued by `POST /auth/login`; also carried by the session cookie.
    Login,
    /// A long-lived API token created by a user for an agent or script.
    Api,
}

/// A bearer credential, stored under the SHA-256 of its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public identifier (used to list and revoke), not the secret.
    pub id: String,
    pub user_id: String,
    pub kind: TokenKind,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: u64,
    /// Milliseconds since the epoch; `None` = never.
    pub expires_at: Option<u64>,
}

/// A conversation/agent session, bound to one desktop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SessionRecord {
    pub id: String,
    /// User id of the owner.
    pub owner: String,
    pub title: String,
    /// Desktop number N (display `:N`).
    pub desktop: u32,
    /// System prompt placed first in every context window.
    pub system_prompt: Option<String>,
    /// Free-form session state (agent status etc.).
    pub state: String,
    pub created_at: u64,
    pub updated_at: u64,
    /// Number of messages appended so far.
    pub message_count: u64,
    /// Sequence number the next message will get.
    pub next_seq: u64,
    /// The agent profile driving this session (`None`: no built-in agent; messages are only
    /// stored and published for external agents).
    #[serde(default)]
    pub agent: Option<String>,
    /// Human-in-the-loop feedback prompts for this session: `None` follows the profile,
    /// `Some(false)` turns them off, `Some(true)` on (when the profile allows them).
    #[serde(default)]
    pub hitl: Option<bool>,
}

/// A message to append (the store assigns `seq` and `created_at`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewMessage {
    pub role: String,
    /// Array of content parts (`{"type":"text","text":..}`, `{"type":"image",..}`).
    pub content: Value,
    /// Estimated tokens of this message (computed by the caller).
    pub tokens: u32,
    /// Principal that appended it (user id or token id).
    pub author: String,
}

/// One message of a session's conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MessageRecord {
    pub seq: u64,
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Array of content parts.
    #[schema(value_type = Vec<Object>)]
    pub content: Value,
    /// Estimated token count of this message, including framing.
    pub tokens: u32,
    pub author: String,
    pub created_at: u64,
}

/// An entry to add to the action log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAction {
    /// Who drove: an agent name, an API token id or a user id.
    pub who: String,
    /// The action request (JSON).
    pub what: Value,
    /// The outcome (JSON).
    pub result: Value,
    pub ok: bool,
    pub duration_ms: u64,
}

/// One entry of a session's action log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ActionRecord {
    pub seq: u64,
    pub who: String,
    pub what: Value,
    pub result: Value,
    pub ok: bool,
    pub duration_ms: u64,
    /// Milliseconds since the epoch.
    pub timestamp: u64,
}

/// A piece of human feedback on a session (HITL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FeedbackRecord {
    pub seq: u64,
    /// User id who gave it.
    pub by: String,
    /// Action it refers to, if any.
    pub action_seq: Option<u64>,
    /// Free-form feedback body (verdict, comment, correction...).
    pub data: Value,
    pub created_at: u64,
}

/// A checkpoint's metadata (without its data blob).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckpointMeta {
    pub id: String,
    pub label: String,
    /// Last action seq covered by the checkpoint, if any.
    pub action_seq: Option<u64>,
    pub created_at: u64,
    /// Size of the serialised data blob in bytes.
    pub size_bytes: u64,
    pub meta: Value,
}

/// A checkpoint: metadata plus the JSON blob (e.g. cookies and storage of the browser).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckpointRecord {
    #[serde(flatten)]
    pub meta: CheckpointMeta,
    pub data: Value,
}

/// A summary of a range of old turns `[from_seq, to_seq]` of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SummaryRecord {
    pub from_seq: u64,
    pub to_seq: u64,
    pub text: String,
    pub tokens: u32,
    pub author: String,
    pub created_at: u64,
}

/// An audit log entry: who did what to which target, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditRecord {
    pub seq: u64,
    pub timestamp: u64,
    /// User id, token id or `system`.
    pub actor: String,
    /// Dotted verb, e.g. `auth.login`, `session.delete`.
    pub action: String,
    pub target: String,
    /// Extra detail; never secret values.
    pub detail: Value,
}

/// Which LLM a profile talks to, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentProvider {
    /// Tool generation, which fixes the provider's wire format: `computer_20250124`,
    /// `computer_20251124`, `computer_toolset_20260801` (Anthropic Messages),
    /// `computer_use_preview`, `computer` (OpenAI Responses), `functions` (OpenAI-compatible
    /// Chat Completions: vLLM, Ollama, llama.cpp).
    pub generation: String,
    pub model: String,
    /// Base URL without `/v1` (default: the provider's public API; Ollama's local port for
    /// `functions`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Most output tokens per reply.
    pub max_tokens: u32,
    /// Anthropic extended thinking: `adaptive` or a token budget such as `4096`; absent = off.
    #[serde(default)]
    pub thinking: Option<String>,
    /// Retries of a failed request (408/409/429/5xx/529, connection errors), like the SDKs.
    pub max_retries: u32,
    /// Per-request timeout in seconds.
    pub timeout_secs: u32,
    /// Read the API key from this environment variable of the control plane instead of the
    /// profile's write-only key.
    #[serde(default)]
    pub api_key_env: Option<String>,
}

/// Human-in-the-loop settings of a profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HitlSettings {
    /// Ask a person before an action matching one of the profile's risky patterns.
    #[serde(default)]
    pub approve_risky: bool,
    /// Ask a person before acknowledging a provider's pending safety checks (OpenAI). When off,
    /// a turn with a safety check stops and waits anyway: checks are never acknowledged blindly.
    #[serde(default = "yes")]
    pub approve_safety_checks: bool,
    /// Feedback prompts on the seeds' schedule (after agent actions 1–5, every 5th up to 25,
    /// then every 25th). A session can turn them off for itself (`SessionRecord::hitl`).
    #[serde(default = "yes")]
    pub feedback: bool,
    /// The loop waits for each feedback prompt's answer (up to `approval_timeout_secs`)
    /// instead of going on.
    #[serde(default)]
    pub wait_for_feedback: bool,
    /// How long an approval (or a waited-for feedback prompt) waits for a person before it
    /// counts as declined.
    #[serde(default = "approval_timeout")]
    pub approval_timeout_secs: u32,
    /// How long a `request_human_input` waits for a person.
    #[serde(default = "input_timeout")]
    pub input_timeout_secs: u32,
    /// A browser checkpoint is taken before every K-th agent step (and before risky actions
    /// and actions that get a feedback prompt), so a reject or an undo can roll back.
    #[serde(default = "checkpoint_every")]
    pub checkpoint_every: u32,
    /// Automatic checkpoints kept per session (the oldest are pruned).
    #[serde(default = "max_checkpoints")]
    pub max_checkpoints: u32,
    /// The latest corrections people gave this profile that go into its agent's context.
    #[serde(default = "corrections_in_context")]
    pub corrections_in_context: u32,
}

impl Default for HitlSettings {
    fn default() -> HitlSettings {
        HitlSettings {
            approve_risky: false,
            approve_safety_checks: true,
            feedback: true,
            wait_for_feedback: false,
            approval_timeout_secs: approval_timeout(),
            input_timeout_secs: input_timeout(),
            checkpoint_every: checkpoint_every(),
            max_checkpoints: max_checkpoints(),
            corrections_in_context: corrections_in_context(),
        }
    }
}

fn yes() -> bool {
    true
}
fn approval_timeout() -> u32 {
    300
}
fn input_timeout() -> u32 {
    600
}
fn checkpoint_every() -> u32 {
    5
}
fn max_checkpoints() -> u32 {
    20
}
fn corrections_in_context() -> u32 {
    10
}

/// An agent profile: who the built-in agent is and what it may do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentProfileRecord {
    pub id: String,
    /// User id of the creator (admins see every profile; users see their own).
    pub owner: String,
    pub name: String,
    pub system_prompt: String,
    pub provider: AgentProvider,
    /// Opened when the agent first drives a session.
    #[serde(default)]
    pub start_url: Option<String>,
    /// Domains (and their subdomains) the agent may visit; empty = any http(s) site.
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// Most tool calls in one chat turn.
    pub max_steps: u32,
    /// Token budget of the conversation sent to the model; older turns are summarized past it.
    pub context_budget_tokens: u32,
    /// Screenshots kept in the conversation (older ones are dropped in chunks of this size);
    /// 0 = keep all (best with prompt caching).
    #[serde(default)]
    pub keep_images: u32,
    #[serde(default)]
    pub hitl: HitlSettings,
    /// Regular expressions over an action's description (e.g. `(?i)\\b(send|submit|pay)\\b`)
    /// that make it risky (see `hitl.approve_risky`).
    #[serde(default)]
    pub risky_patterns: Vec<String>,
    /// Whether a write-only API key is stored for this profile (the key itself never is here).
    #[serde(default)]
    pub api_key_set: bool,
    pub created_at: u64,
    pub updated_at: u64,
}

/// Token usage of one model request, as the provider reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
pub struct TokenUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_creation_input_tokens: u64,
    #[serde(default)]
    pub cache_read_input_tokens: u64,
}

/// One chat turn of the built-in agent: what it cost and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentTurnRecord {
    /// Turn number within the session (assigned by the store).
    pub turn: u64,
    /// Agent profile id.
    pub profile: String,
    pub started_at: u64,
    pub ended_at: u64,
    /// Tool calls executed.
    pub steps: u32,
    /// Model requests made (retries excluded).
    pub requests: u32,
    /// How the turn ended: `end_turn`, `max_steps`, `stopped`, `waiting`, `refusal`,
    /// `max_tokens`, `error`.
    pub outcome: String,
    /// The error in plain words, when `outcome` is `error`.
    #[serde(default)]
    pub error: Option<String>,
    /// Summed over the turn's requests (summaries included).
    pub usage: TokenUsage,
    /// Context size estimate before the last request.
    #[serde(default)]
    pub context_tokens: u32,
}

/// Where a desktop recording stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordingState {
    /// ffmpeg is capturing (or frozen while a secret is on screen).
    Recording,
    /// Stopped; chapters are being written into the file.
    Finalizing,
    /// The file is complete and can be downloaded.
    Ready,
    /// Nothing usable was written (no frame, or the finalize failed); `error` says why.
    Failed,
}

/// One chapter of a recording: something that happened on the desktop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecordingChapter {
    /// When it happened, milliseconds since the epoch.
    pub unix_ms: u64,
    /// Source, e.g. `agent.step`, `session.control`, `agent.input_requested`, `paused`.
    pub kind: String,
    /// What happened, in words (the chapter title in the file).
    pub title: String,
}

/// An interval whose frames are not in the file (a secret was on screen).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecordingPause {
    /// Capture frozen (confirmed) at, milliseconds since the epoch.
    pub from_ms: u64,
    /// Capture thawed at; `None` while still paused.
    pub to_ms: Option<u64>,
    pub reason: String,
}

/// A recording of one desktop, owned by the user who started it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecordingRecord {
    /// `^[a-z0-9-]+$`, unique.
    pub id: String,
    pub desktop: u32,
    /// User id of whoever started it (they and admins may list, download and delete it).
    pub owner: String,
    pub state: RecordingState,
    pub fps: u32,
    /// Size cap of the file, MiB.
    pub max_mb: u32,
    /// Duration cap, seconds.
    pub max_secs: u32,
    /// When it was asked for, milliseconds since the epoch.
    pub started_at: u64,
    /// Wall-clock time of the first frame (time 0 of the file), once known.
    pub first_frame_ms: Option<u64>,
    /// When capture ended.
    pub stopped_at: Option<u64>,
    /// When the file was complete.
    pub finished_at: Option<u64>,
    /// Why capture ended: `stopped`, `duration_cap`, `size_cap`, `disk_full`, `desktop_gone`,
    /// `recorder_failed`, ...
    pub stop_reason: Option<String>,
    pub size_bytes: Option<u64>,
    pub duration_ms: Option<u64>,
    pub chapters: Vec<RecordingChapter>,
    pub pauses: Vec<RecordingPause>,
    /// What went wrong, in words.
    pub error: Option<String>,
}
