//! Files Chrome downloaded on a session's desktop: the list and each file's bytes.

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::api::actions::browser_error;
use crate::auth::{Principal, session_with_desktop};
use crate::error::{ApiError, ApiResult, CommonErrors, Json, Path};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_downloads))
        .routes(routes!(get_download))
}

/// A file in the desktop's downloads directory.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DownloadEntry {
    pub name: String,
    pub size: u64,
    /// Last modification, Unix milliseconds.
    pub modified_ms: u64,
    /// False while Chrome is still writing it.
    pub complete: bool,
}

/// Files Chrome downloaded on the session's desktop, newest first.
#[utoipa::path(get, path = "/sessions/{id}/downloads", tag = "actions",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = Vec<DownloadEntry>), CommonErrors))]
async fn list_downloads(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<DownloadEntry>>> {
    let s = session_with_desktop(&st, &who, &id).await?;
    let browser = st.desktops().browser(s.desktop).await;
    let list = browser.downloads().map_err(browser_error)?;
    Ok(Json(
        list.into_iter()
            .map(|d| DownloadEntry {
                name: d.name,
                size: d.size,
                modified_ms: d.modified_ms,
                complete: d.complete,
            })
            .collect(),
    ))
}

/// One downloaded file's bytes (`Content-Disposition: attachment`).
#[utoipa::path(get, path = "/sessions/{id}/downloads/{name}", tag = "actions",
    params(("id" = String, Path, description = "session id"),
        ("name" = String, Path, description = "file name (no directories)")),
    responses((status = 200, description = "the file", content_type = "application/octet-stream", body = Vec<u8>),
        CommonErrors))]
async fn get_download(
    State(st): State<AppState>,
    who: Principal,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let s = session_with_desktop(&st, &who, &id).await?;
    let browser = st.desktops().browser(s.desktop).await;
    let path = browser.download_path(&name).map_err(browser_error)?;
    let data = match tokio::fs::read(&path).await {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found("no such download"));
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{safe}\""),
            ),
        ],
        Body::from(data),
    )
        .into_response())
}
