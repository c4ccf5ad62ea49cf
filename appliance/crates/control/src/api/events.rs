//! `GET /api/v1/events`: the authenticated events websocket (see [`crate::events`]).

use axum::extract::State;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::response::{IntoResponse, Response};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, CommonErrors};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

/// Websocket of status events (JSON text frames of `Event`, starting with `hello`). Users see
/// events of their own sessions and global ones; admins see all. A client more than the
/// configured queue behind is closed with code 1013.
#[utoipa::path(get, path = "/events", tag = "events",
    responses((status = 101, description = "switching to the websocket protocol"), CommonErrors))]
async fn events(
    State(st): State<AppState>,
    who: Principal,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let ws = ws.map_err(|e| ApiError::bad_request(format!("websocket upgrade required: {e}")))?;
    let bus = st.events().clone();
    Ok(ws
        .max_message_size(64 * 1024)
        .on_upgrade(move |sock| crate::events::run_client(sock, bus, who))
        .into_response())
}
