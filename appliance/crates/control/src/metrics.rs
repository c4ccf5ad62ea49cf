//! Prometheus metrics, hand-written: request counters and latency histogram (recorded by a
//! middleware), plus gauges read at scrape time from the store, events bus and /proc.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::state::AppState;

const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// Counters updated on the request path.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests by status class: 1xx..5xx at index 0..4.
    by_class: [AtomicU64; 5],
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
    pub login_failures: AtomicU64,
    pub login_rate_limited: AtomicU64,
    pub messages_appended: AtomicU64,
    pub internal_errors: AtomicU64,
}

impl Metrics {
    /// Records one finished request.
    pub fn observe(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Resident set size of this process in bytes (0 if unknown).
pub fn rss_bytes() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The Prometheus text exposition of every metric.
pub fn render(state: &AppState) -> String {
    let m = state.metrics();
    let mut o = String::with_capacity(4096);
    let g = |v: &AtomicU64| v.load(Ordering::Relaxed);
    let _ = writeln!(
        o,
        "# HELP zigral_http_requests_total HTTP requests by status class."
    );
    let _ = writeln!(o, "# TYPE zigral_http_requests_total counter");
    for (i, c) in m.by_class.iter().enumerate() {
        let _ = writeln!(
            o,
            "zigral_http_requests_total{{class=\"{}xx\"}} {}",
            i + 1,
            g(c)
        );
    }
    let _ = writeln!(
        o,
        "# HELP zigral_http_request_duration_seconds HTTP request latency."
    );
    let _ = writeln!(o, "# TYPE zigral_http_request_duration_seconds histogram");
    for (i, b) in BUCKETS.iter().enumerate() {
        let _ = writeln!(
            o,
            "zigral_http_request_duration_seconds_bucket{{le=\"{b}\"}} {}",
            g(&m.buckets[i])
        );
    }
    let _ = writeln!(
        o,
        "zigral_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {}",
        g(&m.count)
    );
    let _ = writeln!(
        o,
        "zigral_http_request_duration_seconds_sum {}",
        g(&m.sum_micros) as f64 / 1e6
    );
    let _ = writeln!(
        o,
        "zigral_http_request_duration_seconds_count {}",
        g(&m.count)
    );
    let counters: [(&str, &str, u64); 4] = [
        (
            "zigral_login_failures_total",
            "Failed logins.",
            g(&m.login_failures),
        ),
        (
            "zigral_login_rate_limited_total",
            "Logins refused by the rate limit.",
            g(&m.login_rate_limited),
        ),
        (
            "zigral_messages_appended_total",
            "Messages appended.",
            g(&m.messages_appended),
        ),
        (
            "zigral_internal_errors_total",
            "Requests that failed with an internal error.",
            g(&m.internal_errors),
        ),
    ];
    for (name, help, v) in counters {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
    }
    let st = state.store().stats();
    let ev = state.events();
    let more: [(&str, &str, &str, String); 8] = [
        (
            "zigral_store_commits_total",
            "counter",
            "Durable redb commits.",
            g(&st.commits).to_string(),
        ),
        (
            "zigral_store_commit_seconds_total",
            "counter",
            "Time spent in redb commits.",
            (g(&st.commit_micros_total) as f64 / 1e6).to_string(),
        ),
        (
            "zigral_store_write_requests_total",
            "counter",
            "Write requests (several may share a commit).",
            g(&st.batched_requests).to_string(),
        ),
        (
            "zigral_store_failed_writes_total",
            "counter",
            "Write requests that failed.",
            g(&st.failed_requests).to_string(),
        ),
        (
            "zigral_events_clients",
            "gauge",
            "Connected events websocket clients.",
            g(&ev.clients).to_string(),
        ),
        (
            "zigral_events_dropped_clients_total",
            "counter",
            "Events clients dropped for being too slow.",
            g(&ev.dropped_clients).to_string(),
        ),
        (
            "zigral_process_resident_memory_bytes",
            "gauge",
            "Resident memory of the control plane.",
            rss_bytes().to_string(),
        ),
        (
            "zigral_uptime_seconds",
            "gauge",
            "Seconds since the control plane started.",
            state.uptime().as_secs().to_string(),
        ),
    ];
    for (name, ty, help, v) in more {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {ty}\n{name} {v}");
    }
    o
}
