//! Current CPU and memory of each desktop for the listing: zigral-init reports the CPU time a
//! desktop has used so far (cgroup `usage_usec`, else its processes' utime + stime); the
//! percentage is the difference between two such readings over the time between them. The
//! previous reading is kept per desktop, so a dashboard that polls gets the average since its
//! last poll; a listing with no recent reading takes a second one a moment later.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use utoipa::ToSchema;

/// Current usage of a desktop.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Usage {
    /// CPU in use, percent of one CPU (200 = two CPUs busy), averaged over the last 0.2-60 s;
    /// absent when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    /// Memory in use, bytes (cgroup `memory.current`, else the processes' RSS); absent when
    /// unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
}

/// Readings closer together than this are too coarse (CPU time of processes counts in 10 ms
/// ticks): the previous percentage is kept.
pub(super) const MIN_INTERVAL: Duration = Duration::from_millis(200);

/// A reading older than this says nothing about now: a new baseline is taken.
const MAX_INTERVAL: Duration = Duration::from_secs(60);

/// How long a listing waits between a fresh baseline and the reading it compares with.
pub(super) const BASELINE_WAIT: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy)]
struct Sample {
    usec: u64,
    at: Instant,
    percent: Option<f64>,
}

/// The last CPU reading of each desktop.
#[derive(Debug, Default)]
pub(super) struct CpuSamples {
    last: Mutex<HashMap<u32, Sample>>,
}

impl CpuSamples {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Sample>> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether any of `readings` (desktop, CPU µs) has no reading to compare with at `now`.
    pub(super) fn stale(&self, readings: &[(u32, u64)], now: Instant) -> bool {
        let m = self.map();
        readings.iter().any(|(n, usec)| match m.get(n) {
            Some(s) => *usec < s.usec || now.duration_since(s.at) > MAX_INTERVAL,
            None => true,
        })
    }

    /// Records `readings` taken at `now` and returns each desktop's percentage (absent for a
    /// desktop seen for the first time, or again after a long gap or a restart). Desktops not
    /// in `readings` are forgotten.
    pub(super) fn record(&self, readings: &[(u32, u64)], now: Instant) -> HashMap<u32, f64> {
        let mut m = self.map();
        m.retain(|n, _| readings.iter().any(|(r, _)| r == n));
        let mut out = HashMap::new();
        for &(n, usec) in readings {
            let fresh = Sample {
                usec,
                at: now,
                percent: None,
            };
            let s = m.entry(n).or_insert(fresh);
            let dt = now.saturating_duration_since(s.at);
            if usec < s.usec || dt > MAX_INTERVAL {
                *s = fresh;
            } else if dt >= MIN_INTERVAL {
                let pct = (usec - s.usec) as f64 * 100.0 / dt.as_micros() as f64;
                *s = Sample {
                    percent: Some((pct * 10.0).round() / 10.0),
                    ..fresh
                };
            }
            if let Some(p) = s.percent {
                out.insert(n, p);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_is_cpu_time_over_wall_time_between_readings() {
        let c = CpuSamples::default();
        let t0 = Instant::now();
        assert!(c.stale(&[(1, 1_000)], t0));
        assert!(c.record(&[(1, 1_000)], t0).is_empty(), "first reading");
        assert!(!c.stale(&[(1, 1_000)], t0));
        // 0.5 s of CPU in 1 s: 50 %.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(c.record(&[(1, 501_000)], t1).get(&1), Some(&50.0));
        // Too soon after: the last figure stands, the baseline stays.
        let t2 = t1 + Duration::from_millis(50);
        assert_eq!(c.record(&[(1, 900_000)], t2).get(&1), Some(&50.0));
        // Two CPUs busy for 0.5 s (counted from t1): 200 %.
        let t3 = t1 + Duration::from_millis(500);
        assert_eq!(c.record(&[(1, 1_501_000)], t3).get(&1), Some(&200.0));
        // The counter went back (a new desktop under the same number): no figure, new base.
        assert!(c.stale(&[(1, 10)], t3));
        assert!(c.record(&[(1, 10)], t3).is_empty());
        // A long gap: no figure.
        let late = t3 + MAX_INTERVAL + Duration::from_secs(1);
        assert!(c.stale(&[(1, 20)], late));
        assert!(c.record(&[(1, 20)], late).is_empty());
        // A desktop that is gone is forgotten.
        c.record(&[(2, 0)], late);
        assert!(c.stale(&[(1, 20)], late));
    }
}
