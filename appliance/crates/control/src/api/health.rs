//! Liveness (`/healthz`), readiness (`/readyz`: store open, supervisor answering) and
//! Prometheus metrics (`/metrics`, authenticated).

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::Principal;
use crate::error::{CommonErrors, Json};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// Liveness body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// Readiness body: each check is `ok`, `disabled` or an error message.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    pub ready: bool,
    pub store: String,
    pub supervisor: String,
}

/// The process is up and serving HTTP. No authentication.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()),
    responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Ready to serve: the store answers and the supervisor's control socket replies to `status`.
/// No authentication.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses((status = 200, body = Ready), (status = 503, body = Ready)))]
async fn readyz(State(st): State<AppState>) -> impl IntoResponse {
    let store = match st.store().ping() {
        Ok(()) => "ok".to_owned(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: store check failed");
            "unavailable".to_owned()
        }
    };
    let supervisor = if st.config().require_supervisor {
        match crate::supervisor::request::<crate::supervisor::Status>(
            &st.config().init_socket,
            &crate::supervisor::Request::Status,
            Duration::from_secs(2),
        )
        .await
        {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.to_string(),
        }
    } else {
        "disabled".to_owned()
    };
    let ready = store == "ok" && (supervisor == "ok" || supervisor == "disabled");
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(Ready {
            ready,
            store,
            supervisor,
        }),
    )
}

/// Prometheus text exposition (needs the `read` scope).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, content_type = "text/plain", body = String), CommonErrors))]
async fn metrics(State(st): State<AppState>, _who: Principal) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&st),
    )
}
