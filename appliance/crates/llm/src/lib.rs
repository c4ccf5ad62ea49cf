//! zigral-llm: LLM provider wire formats (Anthropic Messages, OpenAI Responses, Chat
//! Completions) shared by the client and the fake provider server, an SSE parser/writer, and
//! (being built) the streaming client with SDK-style retries.

pub mod anthropic;
pub mod chat;
pub mod responses;
pub mod sse;

pub use responses::SafetyCheck;
