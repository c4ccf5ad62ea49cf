//! zigral-agent: the built-in agent of a session.
//!
//! - [`profile`]: an agent profile (stored by zigral-store) checked and turned into what the
//!   loop and the provider client need ([`Settings`]): the tool generation, the provider spec,
//!   the allowed domains and the risky-action patterns.
//! - [`turn`]: one chat turn of the loop ([`run_turn`]): the conversation goes to the provider,
//!   its tool calls run on the desktop through an [`Env`] the control plane implements (which
//!   logs them and publishes events), the results go back, until the model ends the turn, the
//!   step limit, a stop, a wait for a person, or an error. Before each request the
//!   conversation is kept under the profile's token budget (older turns summarized by the
//!   provider) and old screenshots are pruned in chunks.
//! - [`describe`]: a one-line, secret-free description of a tool call (events, approvals,
//!   risky-pattern matching).
//!
//! The wire formats and the HTTP client live in zigral-llm; the actions themselves in
//! zigral-actions (the control plane maps a [`zigral_llm::Call`] to native actions).

pub mod describe;
pub mod feedback;
pub mod profile;
pub mod redact;
pub mod turn;

pub use profile::{ProfileError, Settings};
pub use turn::{Acted, Answer, Approval, Env, Halt, Outcome, Report, TurnOutcome, run_turn};
