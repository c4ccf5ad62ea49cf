//! The WebSocket→VNC proxy (`zigral proxy`): a websockify replacement that relays noVNC
//! connections to a desktop's x11vnc, routed and authorised by signed tokens (bound to the
//! desktop's current lease, see [`server`]), with view-only enforcement (and the control lease:
//! [`control`]), the live-view switch ([`live_view`]), limits, TLS, static files and
//! stream-health metrics.
//!
//! Library use (tests, embedding): build a [`Config`], make a [`Proxy`], and run
//! [`serve`]`(listener, proxy, shutdown)` on a bound listener.

pub mod cli;
pub mod config;
pub mod control;
pub mod live_view;
pub mod metrics;
pub mod relay;
pub mod rfb;
pub mod server;
pub mod tls;
pub mod web;
pub mod ws;

pub use config::{Config, OriginPolicy, Routing, Target};
pub use metrics::Metrics;
pub use server::{Proxy, ServeError, serve};
