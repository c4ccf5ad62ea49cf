//! The navigation URL policy: which schemes and (optionally) which domains an agent may open.
//!
//! Schemes: `http` and `https` always; `about:blank` only (other `about:` pages and
//! `chrome:`, `file:`, `data:`, `javascript:`, `view-source:`... are refused: they would let an
//! agent read the appliance's own files or run script outside any origin). `file:` can be
//! enabled per policy for local test setups; it is off by default.
//!
//! Domains: when a policy has a domain allowlist, `http(s)` hosts must equal an entry or be a
//! subdomain of it (`example.com` allows `www.example.com`); IP literals must match exactly.
//! A policy passed to an API call is checked for the URL that call opens (navigate, new tab,
//! checkpoint restore). To hold EVERY top-level navigation to a policy — URLs typed into the
//! omnibox, links and forms the page follows, script and server redirects, tabs the page opens
//! — start a navigation guard with it ([`crate::Browser::guard_navigation`], see
//! [`crate::NavGuard`]); while one is alive, the API calls check its policy too.

use serde::{Deserialize, Serialize};
use url::Url;

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRejection {
    /// Not a URL at all.
    #[error("{url:?} is not a valid absolute URL ({reason})")]
    Malformed { url: String, reason: String },
    /// The scheme is not in the allowlist.
    #[error("scheme {scheme:?} is not allowed (allowed: http, https, about:blank{file})", file = if *.file_allowed { ", file" } else { "" })]
    Scheme { scheme: String, file_allowed: bool },
    /// The host is not in the session's domain allowlist.
    #[error("host {host:?} is not in this session's domain allowlist")]
    Domain { host: String },
}

/// A navigation policy (cheap to clone; one per session).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlPolicy {
    /// When set, only these domains (and their subdomains) may be opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_domains: Option<Vec<String>>,
    /// Allow `file:` URLs (off by default).
    #[serde(default)]
    pub allow_file: bool,
}

impl UrlPolicy {
    /// Parses `raw` and checks it against the policy, returning the parsed URL.
    pub fn check(&self, raw: &str) -> Result<Url, UrlRejection> {
        let url = Url::parse(raw.trim()).map_err(|e| UrlRejection::Malformed {
            url: truncate(raw),
            reason: e.to_string(),
        })?;
        match url.scheme() {
            "http" | "https" => {}
            "about" if url.path() == "blank" => return Ok(url),
            "file" if self.allow_file => return Ok(url),
            other => {
                return Err(UrlRejection::Scheme {
                    scheme: other.to_owned(),
                    file_allowed: self.allow_file,
                });
            }
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        if host.is_empty() {
            return Err(UrlRejection::Malformed {
                url: truncate(raw),
                reason: "no host".into(),
            });
        }
        if let Some(domains) = &self.allowed_domains {
            let ok = domains.iter().any(|d| domain_matches(&host, d));
            if !ok {
                return Err(UrlRejection::Domain { host });
            }
        }
        Ok(url)
    }
}

fn domain_matches(host: &str, entry: &str) -> bool {
    let entry = entry
        .trim()
        .trim_start_matches("*.")
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    if entry.is_empty() {
        return false;
    }
    host == entry
        || (host.len() > entry.len()
            && host.ends_with(&entry)
            && host.as_bytes()[host.len() - entry.len() - 1] == b'.'
            && !is_ip(host))
}

fn is_ip(host: &str) -> bool {
    host.parse::<std::net::Ipv4Addr>().is_ok() || host.starts_with('[')
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        let p = UrlPolicy::default();
        assert!(p.check("https://example.com/a?b").is_ok());
        assert!(p.check("http://127.0.0.1:8080/").is_ok());
        assert!(p.check("about:blank").is_ok());
        for bad in [
            "file:///etc/passwd",
            "javascript:alert(1)",
            "data:text/html,hi",
            "chrome://settings",
            "about:config",
            "view-source:http://x.com",
            "ftp://x.com",
        ] {
            assert!(
                matches!(p.check(bad), Err(UrlRejection::Scheme { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            p.check("not a url"),
            Err(UrlRejection::Malformed { .. })
        ));
        let f = UrlPolicy {
            allow_file: true,
            ..Default::default()
        };
        assert!(f.check("file:///tmp/x.html").is_ok());
    }

    #[test]
    fn domains() {
        let p = UrlPolicy {
            allowed_domains: Some(vec!["example.com".into(), "127.0.0.1".into()]),
            ..Default::default()
        };
        assert!(p.check("https://example.com/").is_ok());
        assert!(p.check("https://www.Example.com/").is_ok());
        assert!(p.check("http://127.0.0.1:9/").is_ok());
        assert!(matches!(
            p.check("https://badexample.com/"),
            Err(UrlRejection::Domain { .. })
        ));
        assert!(matches!(
            p.check("https://example.com.evil.org/"),
            Err(UrlRejection::Domain { .. })
        ));
        assert!(matches!(
            p.check("http://10.0.0.1/"),
            Err(UrlRejection::Domain { .. })
        ));
        // about:blank is always fine
        assert!(p.check("about:blank").is_ok());
    }
}
