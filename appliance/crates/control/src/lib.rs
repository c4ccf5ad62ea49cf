//! The control plane (`zigral control`): REST API, events websocket, auth and the context
//! manager over the embedded redb store.
//!
//! Library shape: build an [`AppState`] (config + [`zigral_store::Store`] + signing key), then
//! [`router`] or [`serve`]. Areas of the API live in [`api`], one module each, merged in
//! [`api::openapi_router`]; new areas reuse [`auth::Principal`] (the authenticated caller) and
//! [`auth::authorize_session`] (the ownership check).

pub mod agents;
pub mod api;
pub mod auth;
pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod context;
pub mod control_lease;
pub mod desktops;
pub mod error;
pub mod events;
pub mod fleet;
pub mod fleet_auth;
pub mod fleet_tool;
pub mod hitl;
pub mod keyfile;
pub mod mcp;
pub mod metrics;
pub mod recording;
pub mod sealed;
pub mod server;
pub mod state;
pub mod supervisor;
pub mod tokens_estimate;
pub mod typed_text;
pub mod update;
pub mod vault;
pub mod vdi;
pub mod web;

pub use config::Config;
pub use server::{load_tls, openapi, router, serve, serve_tls};
pub use state::AppState;
