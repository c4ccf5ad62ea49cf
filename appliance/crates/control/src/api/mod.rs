//! The HTTP API, assembled from one module per area. Each area exposes `routes()` returning a
//! documented `OpenApiRouter`; [`openapi_router`] merges them (add new areas there) and the
//! OpenAPI document is generated from the same handlers that serve requests.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

pub mod actions;
pub mod admin;
pub mod agents;
pub mod auth;
pub mod chat;
pub mod checkpoints;
pub mod control;
pub mod desktops;
pub mod downloads;
pub mod events;
pub mod health;
pub mod hitl;
pub mod info;
pub mod live_view;
pub mod messages;
pub mod recordings;
pub mod sessions;
pub mod tokens;
pub mod users;

/// Prefix of the versioned API.
pub const API_PREFIX: &str = "/api/v1";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Zigral control plane",
        description = "Sessions, conversation context, auth and events of the Zigral appliance. \
                       Every endpoint except /healthz, /readyz, GET /api/v1/info and \
                       POST /api/v1/auth/login needs a bearer token or the session cookie."
    ),
    modifiers(&SecuritySchemes),
    security(("bearer" = []), ("cookie" = [])),
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        c.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::auth::COOKIE))),
        );
        openapi.info.version = info::VERSION.to_owned();
    }
}

/// Every documented route. New areas (actions, screenshots, checkpoints, ...) are merged here.
pub fn openapi_router() -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::new()
        .merge(auth::routes())
        .merge(users::routes())
        .merge(desktops::routes())
        .merge(tokens::routes())
        .merge(sessions::routes())
        .merge(messages::routes())
        .merge(events::routes())
        .merge(admin::routes())
        .merge(crate::fleet::routes())
        .merge(actions::routes())
        .merge(agents::routes())
        .merge(chat::routes())
        .merge(checkpoints::routes())
        .merge(control::routes())
        .merge(downloads::routes())
        .merge(live_view::routes())
        .merge(hitl::routes())
        .merge(info::routes())
        .merge(recordings::routes())
        .merge(crate::update::api::routes());
    let mut router = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::routes())
        .nest(API_PREFIX, v1);
    crate::control_lease::document_refusals(router.get_openapi_mut());
    router
}
