//! Small value parsers of the configuration: durations, byte sizes, octal modes, signals,
//! X displays, probe addresses and the cgroup limits of a template instance.

use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Deserializer};
use zigral_init_protocol::GroupLimits;

/// A duration written as `"250ms"`, `"5s"`, `"2m"` or `"1h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("bad duration {s:?} (use e.g. \"500ms\", \"5s\", \"2m\")"))?;
        let secs = match unit.trim() {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => {
                return Err(format!(
                    "bad duration {s:?}: unit must be ms, s, m or h (e.g. \"5s\")"
                ));
            }
        };
        if !secs.is_finite() || secs < 0.0 {
            return Err(format!("bad duration {s:?}"));
        }
        Ok(Dur(Duration::from_secs_f64(secs)))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A byte size written as an integer or a string like `"10M"`, `"4G"`, `"512K"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("bad size {s:?} (use e.g. \"10M\", \"4G\")"))?;
        let mul: u64 = match unit.trim().trim_end_matches(['i', 'B']) {
            "" => 1,
            "K" | "k" => 1 << 10,
            "M" => 1 << 20,
            "G" => 1 << 30,
            "T" => 1 << 40,
            _ => return Err(format!("bad size {s:?}: unit must be K, M, G or T")),
        };
        n.checked_mul(mul)
            .map(Size)
            .ok_or_else(|| format!("size {s:?} too large"))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Size(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Parses octal permission bits (`"0750"`, `"2750"`, `"027"`).
pub fn parse_mode(s: &str, max: u32) -> Result<u32, String> {
    let t = s.trim();
    let v = u32::from_str_radix(t, 8)
        .map_err(|_| format!("bad mode {s:?}: octal digits like \"0750\""))?;
    if v > max {
        return Err(format!("bad mode {s:?}: above {max:o}"));
    }
    Ok(v)
}

/// Parses a signal name: `TERM`, `SIGTERM`, `term` or a number.
pub fn parse_signal(s: &str) -> Result<Signal, String> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("unknown signal {s:?}"));
    }
    let up = s.to_ascii_uppercase();
    let full = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    Signal::from_str(&full).map_err(|_| format!("unknown signal {s:?}"))
}

pub(super) fn parse_x11_display(s: &str) -> Result<u32, String> {
    s.trim()
        .trim_start_matches(':')
        .split('.')
        .next()
        .unwrap_or("")
        .parse()
        .map_err(|_| format!("bad X display {s:?} (use e.g. \":5\" or \"5\")"))
}

pub(super) fn parse_http(url: &str) -> Result<(String, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("bad http probe {url:?}: must start with http://"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if hostport.is_empty() {
        return Err(format!("bad http probe {url:?}: no host"));
    }
    let addr = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    check_addr(&addr).map_err(|e| format!("bad http probe {url:?}: {e}"))?;
    Ok((addr, hostport.to_string(), path.to_string()))
}

pub(super) fn check_addr(addr: &str) -> Result<(), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("bad address {addr:?}: expected host:port"))?;
    if host.is_empty() {
        return Err(format!("bad address {addr:?}: no host"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("bad address {addr:?}: port must be 1-65535"))?;
    Ok(())
}

/// Smallest CPU share of a group, in thousandths of a CPU (`cpu.max` 1000/100000).
pub const MIN_MILLICPUS: u64 = 10;
/// Largest CPU share of a group, in thousandths of a CPU.
const MAX_MILLICPUS: u64 = 1024 * 1000;
/// Smallest `memory.max` of a group: less cannot even start an X server.
pub const MIN_GROUP_MEMORY: u64 = 16 << 20;

/// A group's `cpus`: a decimal number of CPUs (`"2"`, `"0.5"`) as thousandths of a CPU, or
/// `"max"` (no limit: `None`).
pub fn parse_cpus(s: &str) -> Result<Option<u64>, String> {
    let t = s.trim();
    if t == "max" {
        return Ok(None);
    }
    let c: f64 = t.parse().map_err(|_| {
        format!("bad cpus {s:?} (a number of CPUs like \"2\" or \"0.5\", or \"max\")")
    })?;
    if !c.is_finite() || c <= 0.0 {
        return Err(format!("cpus {s:?} must be above 0"));
    }
    let m = (c * 1000.0).round() as u64;
    check_millicpus(m).map_err(|e| format!("cpus {s:?}: {e}"))?;
    Ok(Some(m))
}

fn check_millicpus(m: u64) -> Result<(), String> {
    if m < MIN_MILLICPUS {
        return Err(format!(
            "below the smallest share, {MIN_MILLICPUS}/1000 CPU"
        ));
    }
    if m > MAX_MILLICPUS {
        return Err(format!("above {} CPUs", MAX_MILLICPUS / 1000));
    }
    Ok(())
}

/// A group's `memory`: a size (`"4G"`, `"512M"`, bytes) of at least 16M, or `"max"`.
pub fn parse_group_memory(s: &str) -> Result<Option<u64>, String> {
    if s.trim() == "max" {
        return Ok(None);
    }
    let Size(b) = s.parse()?;
    if b < MIN_GROUP_MEMORY {
        return Err(format!("memory {s:?} is below the minimum of 16M"));
    }
    Ok(Some(b))
}

/// A group's `pids`: a number of tasks (at least 1) or `"max"`.
pub fn parse_pids(s: &str) -> Result<Option<u64>, String> {
    let t = s.trim();
    if t == "max" {
        return Ok(None);
    }
    match t.parse::<u64>() {
        Ok(0) => Err(format!("pids {s:?} must be at least 1")),
        Ok(n) => Ok(Some(n)),
        Err(_) => Err(format!("bad pids {s:?} (a number of tasks, or \"max\")")),
    }
}

/// Checks the values a `limits` request sets (absent fields are not checked): at least
/// 10/1000 CPU, 16M of memory and 1 task.
pub fn check_group_limits(l: &GroupLimits) -> Result<(), String> {
    let mut errs = Vec::new();
    if let Some(m) = l.millicpus
        && let Err(e) = check_millicpus(m)
    {
        errs.push(format!("millicpus {m}: {e}"));
    }
    if let Some(b) = l.memory
        && b < MIN_GROUP_MEMORY
    {
        errs.push(format!(
            "memory {b}: below the minimum of 16M ({MIN_GROUP_MEMORY} bytes)"
        ));
    }
    if l.pids == Some(0) {
        errs.push("pids 0: must be at least 1".into());
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(
            "250ms".parse::<Dur>().unwrap().0,
            Duration::from_millis(250)
        );
        assert_eq!(
            "1.5s".parse::<Dur>().unwrap().0,
            Duration::from_millis(1500)
        );
        assert!("5".parse::<Dur>().is_err());
        assert!("5 parsecs".parse::<Dur>().is_err());
        assert_eq!("4G".parse::<Size>().unwrap().0, 4 << 30);
        assert_eq!("10MiB".parse::<Size>().unwrap().0, 10 << 20);
        assert!("ten".parse::<Size>().is_err());
    }

    #[test]
    fn group_limits() {
        assert_eq!(parse_cpus("2"), Ok(Some(2000)));
        assert_eq!(parse_cpus("0.5"), Ok(Some(500)));
        assert_eq!(parse_cpus("max"), Ok(None));
        for bad in ["0", "-1", "0.001", "two", "NaN", "2000"] {
            assert!(parse_cpus(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_group_memory("4G"), Ok(Some(4 << 30)));
        assert_eq!(parse_group_memory("16M"), Ok(Some(16 << 20)));
        assert_eq!(parse_group_memory("max"), Ok(None));
        assert!(parse_group_memory("15M").is_err());
        assert!(parse_group_memory("lots").is_err());
        assert_eq!(parse_pids("4096"), Ok(Some(4096)));
        assert_eq!(parse_pids("max"), Ok(None));
        assert!(parse_pids("0").is_err());
        assert!(parse_pids("-3").is_err());
        let ok = GroupLimits {
            millicpus: Some(1000),
            memory: Some(1 << 30),
            pids: Some(512),
        };
        assert_eq!(check_group_limits(&ok), Ok(()));
        assert_eq!(check_group_limits(&GroupLimits::default()), Ok(()));
        for bad in [
            GroupLimits {
                millicpus: Some(0),
                ..ok
            },
            GroupLimits {
                memory: Some((16 << 20) - 1),
                ..ok
            },
            GroupLimits {
                pids: Some(0),
                ..ok
            },
        ] {
            assert!(check_group_limits(&bad).is_err(), "{bad:?}");
        }
    }
}
