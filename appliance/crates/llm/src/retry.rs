//! The official SDKs' retry policy as pure functions (anthropic-sdk-python `_base_client.py`,
//! openai-python matches it): whether to retry a response, and how long to wait first.
//!
//! - `x-should-retry: true|false` wins; otherwise 408, 409, 429 and >= 500 (529 included) are
//!   retried, as are connection errors and timeouts.
//! - The wait is `retry-after-ms` (milliseconds), else `retry-after` (seconds or an HTTP date),
//!   used when 0 < v <= 60 s; otherwise 0.5 s · 2^n capped at 8 s, times a jitter of
//!   (1 − 0.25·r) for r in [0, 1), n = retries already made.

use std::time::{Duration, SystemTime};

/// First backoff step.
pub const INITIAL_DELAY: Duration = Duration::from_millis(500);
/// Backoff cap.
pub const MAX_DELAY: Duration = Duration::from_secs(8);
/// Longest server-requested wait that is obeyed.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Whether an HTTP status is retried when the server did not say (`x-should-retry`).
pub fn status_retryable(status: u16) -> bool {
    matches!(status, 408 | 409 | 429) || status >= 500
}

/// Whether a response with `status` and the `x-should-retry` header value is retried.
pub fn should_retry(status: u16, x_should_retry: Option<&str>) -> bool {
    match x_should_retry.map(str::trim) {
        Some("true") => true,
        Some("false") => false,
        _ => status_retryable(status),
    }
}

/// Whether a mid-stream provider error of this type is retried (the whole request again).
pub fn stream_error_retryable(kind: &str) -> bool {
    matches!(
        kind,
        "overloaded_error" | "api_error" | "server_error" | "rate_limit_exceeded"
    )
}

/// The server-requested wait from `retry-after-ms` / `retry-after`, if any parses (any value;
/// [`delay`] applies the 0 < v <= 60 s window).
pub fn retry_after(
    retry_after_ms: Option<&str>,
    retry_after: Option<&str>,
    now: SystemTime,
) -> Option<f64> {
    if let Some(ms) = retry_after_ms.and_then(|v| v.trim().parse::<f64>().ok())
        && ms.is_finite()
    {
        return Some(ms / 1000.0);
    }
    let v = retry_after?.trim();
    if let Ok(s) = v.parse::<f64>() {
        return s.is_finite().then_some(s);
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(match when.duration_since(now) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    })
}

/// The wait before retry number `n + 1` (`n` = retries already made), given the server's
/// requested wait in seconds (see [`retry_after`]) and a random `r` in [0, 1).
pub fn delay(n: u32, server_secs: Option<f64>, r: f64) -> Duration {
    if let Some(s) = server_secs
        && s > 0.0
        && s <= MAX_RETRY_AFTER.as_secs_f64()
    {
        return Duration::from_secs_f64(s);
    }
    let base = INITIAL_DELAY.as_secs_f64() * 2f64.powi(n.min(1000) as i32);
    let capped = base.min(MAX_DELAY.as_secs_f64());
    let jitter = 1.0 - 0.25 * r.clamp(0.0, 1.0);
    Duration::from_secs_f64((capped * jitter).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_overrides_status() {
        assert!(should_retry(429, None));
        assert!(should_retry(529, None));
        assert!(should_retry(408, None));
        assert!(should_retry(409, None));
        assert!(!should_retry(400, None));
        assert!(!should_retry(429, Some("false")));
        assert!(should_retry(400, Some("true")));
        assert!(should_retry(503, Some("maybe")));
    }

    #[test]
    fn server_wait_parsing() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after(Some("10"), Some("5"), now), Some(0.01));
        assert_eq!(retry_after(Some("x"), Some("5"), now), Some(5.0));
        assert_eq!(retry_after(None, Some("1.5"), now), Some(1.5));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(retry_after(None, Some(&date), now), Some(30.0));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(retry_after(None, Some(&past), now), Some(-30.0));
        assert_eq!(retry_after(None, Some("soon"), now), None);
        assert_eq!(retry_after(None, None, now), None);
    }

    #[test]
    fn delays() {
        // server wait obeyed inside (0, 60]
        assert_eq!(delay(0, Some(0.01), 0.9), Duration::from_millis(10));
        assert_eq!(delay(3, Some(60.0), 0.0), Duration::from_secs(60));
        // outside: exponential backoff, no jitter at r = 0
        assert_eq!(delay(0, Some(61.0), 0.0), Duration::from_millis(500));
        assert_eq!(delay(0, Some(0.0), 0.0), Duration::from_millis(500));
        assert_eq!(delay(0, Some(-3.0), 0.0), Duration::from_millis(500));
        assert_eq!(delay(1, None, 0.0), Duration::from_secs(1));
        assert_eq!(delay(2, None, 0.0), Duration::from_secs(2));
        assert_eq!(delay(4, None, 0.0), Duration::from_secs(8));
        assert_eq!(delay(50, None, 0.0), Duration::from_secs(8));
        // jitter shrinks by at most 25 %
        assert_eq!(delay(4, None, 1.0), Duration::from_secs(6));
        assert_eq!(delay(1, None, 0.5), Duration::from_millis(875));
    }
}
