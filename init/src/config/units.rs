//! Small value parsers of the configuration: durations, byte sizes, octal modes, signals,
//! X displays and probe addresses.

use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Deserializer};

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
}
