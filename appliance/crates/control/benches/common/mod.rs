//! Shared by the control-plane benches: the tests' kit (a port-0 server over a temp store, a
//! real desktop of Xvfb + Chromium + pages that it drives, logins and sessions), included by
//! path so benches and tests start the control plane the same way, and percentiles.

#![allow(dead_code)]

#[path = "../../tests/common/mod.rs"]
mod kit;

pub use kit::*;

/// The `p` quantile (0.0 to 1.0, nearest rank) of `v`, which it sorts; 0.0 when `v` is empty.
pub fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}
