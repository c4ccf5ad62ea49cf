//! `GET /api/v1/info`: what the web app needs before anyone logs in: the control plane's
//! version, the running slot's release, the port its live view connects to (the proxy, on
//! the same host name) and the appliance's place in a fleet (name, draining, free desktop
//! slots; see [`crate::fleet`]).

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::Json;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(info))
}

/// The control plane's version (this build's `zigral` package version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Public facts about this appliance.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Info {
    /// The control plane's version.
    pub version: String,
    /// The port browsers open the live view's WebSocket on (`ws://<this host>:<port>/websockify`):
    /// the `live_view_port` setting, else the port of `proxy_url`.
    pub live_view_port: u16,
    /// The running slot's release (its `release` file; without one: this build's version,
    /// serial 0, the store's schema, git `unknown`).
    pub release: crate::update::ReleaseInfo,
    /// This appliance in a fleet: its name, whether it is draining and its desktop slots.
    pub appliance: crate::fleet::ApplianceInfo,
}

/// The version, the live view's port and the appliance's name, draining switch and free
/// desktop slots. No authentication.
#[utoipa::path(get, path = "/info", tag = "health", security(()),
    responses((status = 200, body = Info)))]
async fn info(State(st): State<AppState>, headers: axum::http::HeaderMap) -> Json<Info> {
    Json(Info {
        version: VERSION.to_owned(),
        live_view_port: st.config().live_view_port(),
        release: crate::update::running_release(st.config()).into(),
        appliance: crate::fleet::info(&st, &headers),
    })
}
