//! `POST /api/v1/admin/update` (upload a signed bundle) and `GET /api/v1/admin/update` (what
//! runs and how the last update went), administrators only.

use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use zigral_update::{BUNDLE_EXT, UpdateStatus};

use super::{Accepted, Offer, ReleaseInfo, RemoveOnDrop};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, CommonErrors, ErrorBody, Json};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    // The bundle's size is capped by `update_max_bytes` while it streams to disk, not by the
    // request body limit.
    OpenApiRouter::new()
        .routes(routes!(upload, report))
        .layer(DefaultBodyLimit::disable())
}

/// The upload's fields (`multipart/form-data`).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The bundle (`NAME.tar.zst`).
    #[schema(value_type = String, format = Binary)]
    bundle: Vec<u8>,
    /// The bundle's minisign signature file (`NAME.tar.zst.minisig`), as text.
    signature: String,
    /// `true`/`1`: install even if not newer than what runs.
    force: Option<String>,
}

/// What runs and where updates stand.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UpdateReport {
    /// An update key is configured (uploads can be checked).
    pub available: bool,
    /// The running slot's release.
    pub running: ReleaseInfo,
    /// The updater's status (`<state>/updates/status.json`): the update under way, or how
    /// the last one ended; null when there has been none.
    #[schema(value_type = Option<Object>)]
    pub update: Option<UpdateStatus>,
}

fn multipart_error(e: MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(e.status(), "payload_too_large", e.body_text())
    } else {
        ApiError::bad_request(format!("bad multipart body: {}", e.body_text()))
    }
}

/// Streams a bundle field to `path`, at most `max` bytes (413 beyond).
async fn save(field: &mut Field<'_>, path: &std::path::Path, max: u64) -> ApiResult<()> {
    let mut f = tokio::fs::File::create(path)
        .await
        .map_err(|e| ApiError::internal(format!("cannot create {}: {e}", path.display())))?;
    let mut n: u64 = 0;
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        n += chunk.len() as u64;
        if n > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the bundle is larger than the update_max_bytes limit ({max} bytes)"),
            ));
        }
        f.write_all(&chunk)
            .await
            .map_err(|e| ApiError::internal(format!("cannot write the bundle: {e}")))?;
    }
    f.sync_all()
        .await
        .map_err(|e| ApiError::internal(format!("cannot write the bundle: {e}")))?;
    Ok(())
}

/// A small text field (signature, force).
async fn text(field: &mut Field<'_>, name: &str) -> ApiResult<String> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        buf.extend_from_slice(&chunk);
        if buf.len() > super::MAX_SIG_BYTES {
            return Err(ApiError::bad_request(format!(
                "the {name} field is larger than {} bytes",
                super::MAX_SIG_BYTES
            )));
        }
    }
    String::from_utf8(buf)
        .map_err(|_| ApiError::bad_request(format!("the {name} field is not text")))
}

fn parse_force(v: &str) -> ApiResult<bool> {
    match v.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        o => Err(ApiError::bad_request(format!(
            "force must be true, 1, false or 0, not {o:?}"
        ))),
    }
}

/// Uploads a signed update bundle (`multipart/form-data`: `bundle`, `signature`, optional
/// `force`). The bundle streams to disk (at most `update_max_bytes`), its signature is checked
/// against the appliance's update key and its version against the running one; then
/// zigral-init's updater applies it (the control plane restarts meanwhile; follow it with
/// `GET /admin/update`). Every refusal changes nothing.
#[utoipa::path(post, path = "/admin/update", tag = "admin",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 202, description = "handed to the updater", body = Accepted),
        (status = 400, description = "bad_signature, wrong_key, bad_manifest or a malformed form", body = ErrorBody),
        (status = 409, description = "not_newer, updates_unavailable or update_in_progress", body = ErrorBody),
        (status = 413, description = "the bundle is larger than update_max_bytes", body = ErrorBody),
        CommonErrors))]
async fn upload(
    State(st): State<AppState>,
    who: Principal,
    form: Result<Multipart, MultipartRejection>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    who.require_admin()?;
    let mut form = form.map_err(|r| {
        ApiError::bad_request(format!(
            "the body must be multipart/form-data with the fields bundle and signature: {}",
            r.body_text()
        ))
    })?;
    let cfg = st.config();
    let id = super::new_id();
    let dir = super::updates_dir(cfg);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| ApiError::internal(format!("cannot create {}: {e}", dir.display())))?;
    let incoming = dir.join(format!(".incoming-{id}.{BUNDLE_EXT}"));
    // The partial or refused bundle goes away whatever happens (client gone included).
    let mut cleanup = RemoveOnDrop(None);
    let (mut sig, mut force) = (None, false);
    while let Some(mut field) = form.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or_default() {
            "bundle" if cleanup.0.is_none() => {
                cleanup.0 = Some(incoming.clone());
                save(&mut field, &incoming, cfg.update_max_bytes).await?;
            }
            "signature" if sig.is_none() => sig = Some(text(&mut field, "signature").await?),
            "force" => force = parse_force(&text(&mut field, "force").await?)?,
            n @ ("bundle" | "signature") => {
                return Err(ApiError::bad_request(format!(
                    "the {n} field is given twice"
                )));
            }
            n => {
                return Err(ApiError::bad_request(format!(
                    "unknown field {n:?}: expected bundle, signature and force"
                )));
            }
        }
    }
    if cleanup.0.is_none() {
        return Err(ApiError::bad_request("the bundle field is missing"));
    }
    let Some(sig_text) = sig else {
        return Err(ApiError::bad_request("the signature field is missing"));
    };
    let offer = Offer {
        bundle: incoming,
        sig_text,
        force,
        id: id.clone(),
    };
    match super::apply(&st, &offer).await {
        Ok(a) => {
            cleanup.0 = None;
            tracing::info!(id = %a.id, version = %a.version, from = %a.from_version, forced = a.forced, "update requested");
            super::tell(
                &st,
                &who.actor(),
                "update.requested",
                &a.id,
                json!({"id": a.id, "version": a.version, "from_version": a.from_version,
                       "forced": a.forced, "source": "upload"}),
            )
            .await;
            Ok((StatusCode::ACCEPTED, Json(a)))
        }
        Err(r) => {
            if !matches!(r, super::Refusal::Internal(_)) {
                super::tell(
                    &st,
                    &who.actor(),
                    "update.refused",
                    &id,
                    json!({"code": r.code(), "reason": r.to_string(), "source": "upload"}),
                )
                .await;
            }
            Err(r.into())
        }
    }
}

/// Whether updates are available, what runs, and the updater's status.
#[utoipa::path(get, path = "/admin/update", tag = "admin",
    responses((status = 200, body = UpdateReport), CommonErrors))]
async fn report(State(st): State<AppState>, who: Principal) -> ApiResult<Json<UpdateReport>> {
    who.require_admin()?;
    let cfg = st.config().clone();
    let r = tokio::task::spawn_blocking(move || UpdateReport {
        available: super::available(&cfg),
        running: super::running_release(&cfg).into(),
        update: super::read_status(&cfg),
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(Json(r))
}
