//! Desktop recordings over HTTP: start, stop, list, download (202 + Retry-After while the file
//! is still being written), chapters (the sidecar JSON) and delete. Starting and stopping need
//! the desktop (its owner or an admin); a recording stays its starter's (and admins') after the
//! desktop goes to someone else. Every change is audited and on the events websocket.

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};
use zigral_store::{RecordingRecord, RecordingState};

use crate::api::desktops::visible;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, CommonErrors, ErrorBody, Json, Path};
use crate::recording::{RecordingError, StartRecording, chapters::Sidecar, files};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start_recording, list_recordings))
        .routes(routes!(stop_recording))
        .routes(routes!(get_recording, delete_recording))
        .routes(routes!(get_chapters))
}

/// Seconds a client should wait before asking again for a file still being written.
const RETRY_AFTER_SECS: u64 = 2;

fn api_error(e: RecordingError) -> ApiError {
    match e {
        RecordingError::BadRequest(m) => ApiError::bad_request(m),
        e @ RecordingError::AlreadyRecording { .. } => {
            ApiError::new(StatusCode::CONFLICT, "already_recording", e.to_string())
        }
        e @ (RecordingError::NotRecording(_) | RecordingError::NotFound(_)) => {
            ApiError::not_found(e.to_string())
        }
        e @ RecordingError::DiskFull { .. } => {
            ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "disk_full", e.to_string())
        }
        e @ RecordingError::Recorder(_) => ApiError::unavailable(e.to_string()),
        RecordingError::Store(e) => ApiError::internal(e),
    }
}

/// Recording `id` of desktop `n`, if `who` may see it (its starter or an admin).
fn owned(st: &AppState, who: &Principal, n: u32, id: &str) -> ApiResult<RecordingRecord> {
    let not_found = || ApiError::not_found(format!("recording {id} not found"));
    let rec = st
        .store()
        .get_recording(id)
        .map_err(ApiError::internal)?
        .ok_or_else(not_found)?;
    if rec.desktop != n || !(who.is_admin || rec.owner == who.user_id) {
        return Err(not_found());
    }
    Ok(rec)
}

/// Starts recording the desktop (H.264 MP4, chapters from the agent's steps, control changes
/// and human-in-the-loop events); the reply comes once the first frame is captured. While a
/// secret is typed or a 2FA prompt is open the recording pauses: those frames never exist.
#[utoipa::path(post, path = "/desktops/{n}/recordings", tag = "recordings",
    params(("n" = u32, Path, description = "desktop number")),
    request_body(content = StartRecording, description = "all fields optional; an empty body takes the defaults"),
    responses((status = 201, body = RecordingRecord),
        (status = 409, description = "the desktop is already recording (`already_recording`)", body = ErrorBody),
        (status = 503, description = "the recorder could not start", body = ErrorBody),
        (status = 507, description = "too little free disk space (`disk_full`)", body = ErrorBody),
        CommonErrors))]
async fn start_recording(
    State(st): State<AppState>,
    who: Principal,
    Path(n): Path<u32>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<RecordingRecord>)> {
    visible(&st, &who, n)?;
    let req: StartRecording = if body.iter().all(u8::is_ascii_whitespace) {
        StartRecording::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?
    };
    let rec = st
        .recordings()
        .start(&st, n, &who.user_id, &req)
        .await
        .map_err(api_error)?;
    st.audit(
        &who.actor(),
        "recording.start",
        &rec.id,
        json!({"desktop": n, "fps": rec.fps, "max_mb": rec.max_mb, "max_secs": rec.max_secs}),
    )
    .await;
    Ok((StatusCode::CREATED, Json(rec)))
}

/// Recordings of this desktop you started (administrators: everyone's), oldest first.
#[utoipa::path(get, path = "/desktops/{n}/recordings", tag = "recordings",
    params(("n" = u32, Path, description = "desktop number")),
    responses((status = 200, body = Vec<RecordingRecord>), CommonErrors))]
async fn list_recordings(
    State(st): State<AppState>,
    who: Principal,
    Path(n): Path<u32>,
) -> ApiResult<Json<Vec<RecordingRecord>>> {
    if n >= crate::config::DESKTOP_NUMBERS {
        return Err(ApiError::not_found(format!("desktop {n} not found")));
    }
    let mut all = st.store().list_recordings().map_err(ApiError::internal)?;
    all.retain(|r| r.desktop == n && (who.is_admin || r.owner == who.user_id));
    Ok(Json(all))
}

/// Stops the desktop's recording. The reply is the record in state `finalizing`; the file is
/// ready (state `ready`, event `recording.ready`) once the chapters are written into it.
#[utoipa::path(delete, path = "/desktops/{n}/recordings/current", tag = "recordings",
    params(("n" = u32, Path, description = "desktop number")),
    responses((status = 200, body = RecordingRecord), CommonErrors))]
async fn stop_recording(
    State(st): State<AppState>,
    who: Principal,
    Path(n): Path<u32>,
) -> ApiResult<Json<RecordingRecord>> {
    visible(&st, &who, n)?;
    let id = st
        .recordings()
        .current(n)
        .ok_or_else(|| api_error(RecordingError::NotRecording(n)))?;
    owned(&st, &who, n, &id)?;
    let rec = st
        .recordings()
        .stop(&st, n, "stopped")
        .await
        .map_err(api_error)?;
    st.audit(
        &who.actor(),
        "recording.stop",
        &rec.id,
        json!({"desktop": n}),
    )
    .await;
    Ok(Json(rec))
}

/// 202 with Retry-After while the recording is still being written.
fn not_yet(rec: &RecordingRecord) -> Response {
    let mut r = (
        StatusCode::ACCEPTED,
        Json(json!({"id": rec.id, "state": rec.state,
                    "message": "the recording is still being written; ask again"})),
    )
        .into_response();
    r.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(RETRY_AFTER_SECS),
    );
    r
}

/// `ms` since the epoch as RFC 3339 UTC with milliseconds (empty when unknown).
fn rfc3339(ms: Option<u64>) -> String {
    let Some(ms) = ms else {
        return String::new();
    };
    let secs = crate::control_lease::utc(ms);
    format!("{}.{:03}Z", secs.trim_end_matches('Z'), ms % 1000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(super::rfc3339(Some(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::rfc3339(Some(1_795_548_219_408)),
            "2026-11-24T19:23:39.408Z"
        );
        assert_eq!(
            super::rfc3339(Some(951_782_400_001)),
            "2000-02-29T00:00:00.001Z"
        );
    }
}

/// A 202 while the recording is still being written, the 410 of a failed one, `None` once
/// its files are there.
fn unfinished(rec: &RecordingRecord) -> ApiResult<Option<Response>> {
    match rec.state {
        RecordingState::Recording | RecordingState::Finalizing => Ok(Some(not_yet(rec))),
        RecordingState::Failed => Err(failed(rec)),
        RecordingState::Ready => Ok(None),
    }
}

fn failed(rec: &RecordingRecord) -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "recording_failed",
        format!(
            "recording {} has no file: {}",
            rec.id,
            rec.error.as_deref().unwrap_or("it failed")
        ),
    )
}

/// Downloads the recording (`video/mp4`, chapters inside; headers `X-Recording-Started-At`,
/// `X-Recording-Finished-At`), or 202 with `Retry-After` while it is still being written.
#[utoipa::path(get, path = "/desktops/{n}/recordings/{id}", tag = "recordings",
    params(("n" = u32, Path, description = "desktop number"), ("id" = String, Path, description = "recording id")),
    responses((status = 200, description = "the MP4 file", content_type = "video/mp4", body = Vec<u8>),
        (status = 202, description = "still recording or finalizing; retry after `Retry-After` seconds"),
        (status = 410, description = "the recording failed and has no file (`recording_failed`)", body = ErrorBody),
        CommonErrors))]
async fn get_recording(
    State(st): State<AppState>,
    who: Principal,
    Path((n, id)): Path<(u32, String)>,
) -> ApiResult<Response> {
    let rec = owned(&st, &who, n, &id)?;
    if let Some(wait) = unfinished(&rec)? {
        return Ok(wait);
    }
    let path = files::own_path(st.recordings().dir(), &rec.id, "mp4");
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiError::not_found(format!("recording {id}'s file is gone")))?;
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (header::CONTENT_TYPE, "video/mp4".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.mp4\"", rec.id),
            ),
            (
                header::HeaderName::from_static("x-recording-started-at"),
                rfc3339(rec.first_frame_ms.or(Some(rec.started_at))),
            ),
            (
                header::HeaderName::from_static("x-recording-finished-at"),
                rfc3339(rec.stopped_at),
            ),
        ],
        body,
    )
        .into_response())
}

/// The recording's chapters and paused intervals (times from the first frame and wall-clock),
/// or 202 with `Retry-After` while it is still being written.
#[utoipa::path(get, path = "/desktops/{n}/recordings/{id}/chapters", tag = "recordings",
    params(("n" = u32, Path, description = "desktop number"), ("id" = String, Path, description = "recording id")),
    responses((status = 200, body = Sidecar),
        (status = 202, description = "still recording or finalizing; retry after `Retry-After` seconds"),
        (status = 410, description = "the recording failed (`recording_failed`)", body = ErrorBody),
        CommonErrors))]
async fn get_chapters(
    State(st): State<AppState>,
    who: Principal,
    Path((n, id)): Path<(u32, String)>,
) -> ApiResult<Response> {
    let rec = owned(&st, &who, n, &id)?;
    if let Some(wait) = unfinished(&rec)? {
        return Ok(wait);
    }
    let path = files::own_path(st.recordings().dir(), &rec.id, "json");
    let data = tokio::fs::read(&path)
        .await
        .map_err(|_| ApiError::not_found(format!("recording {id}'s chapters are gone")))?;
    Ok((
        [(header::CONTENT_TYPE, "application/json".to_owned())],
        Body::from(data),
    )
        .into_response())
}

/// Deletes a finished recording (409 while it is still recording or finalizing).
#[utoipa::path(delete, path = "/desktops/{n}/recordings/{id}", tag = "recordings",
    params(("n" = u32, Path, description = "desktop number"), ("id" = String, Path, description = "recording id")),
    responses((status = 204, description = "deleted"),
        (status = 409, description = "still recording or finalizing", body = ErrorBody),
        CommonErrors))]
async fn delete_recording(
    State(st): State<AppState>,
    who: Principal,
    Path((n, id)): Path<(u32, String)>,
) -> ApiResult<StatusCode> {
    let rec = owned(&st, &who, n, &id)?;
    st.recordings()
        .delete(&st, &rec, &who.actor())
        .await
        .map_err(|e| match e {
            RecordingError::AlreadyRecording { .. } => ApiError::conflict(format!(
                "recording {id} is still being written; stop it first"
            )),
            other => api_error(other),
        })?;
    st.audit(&who.actor(), "recording.delete", &id, json!({"desktop": n}))
        .await;
    Ok(StatusCode::NO_CONTENT)
}
