//! `/api/v1/desktops/{n}/live-view`: the live-view switch of a desktop (see the routes).

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
