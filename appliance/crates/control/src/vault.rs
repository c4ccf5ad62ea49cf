//! The credential vault: site credentials a person enters for the agent to use without ever
//! seeing them, and one-off values (2FA codes) typed for a person.
//!
//! Everything lives in this process's memory only, per user, in zeroizing buffers, with a
//! time to live; nothing here is ever written to the store, a log, an event or a provider
//! request. The agent knows credentials by name; the control plane asks [`Vault::value`] for
//! the text to type, which is given only when the focused page's host is one of the
//! credential's domains (or a subdomain of one). [`Vault::redactor`] turns the live values
//! into a [`Redactor`] for the text that leaves the appliance.
//!
//! No public type here shows a value: [`CredentialInfo`] has none, and the `Debug` of
//! [`NewCredential`], [`Vault`] and [`VaultError`] leaves them out.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroize::{Zeroize, Zeroizing};
use zigral_agent::redact::Redactor;

/// Longest credential name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest username and password, in characters.
pub const MAX_VALUE_CHARS: usize = 1024;
/// Most domains per credential.
pub const MAX_DOMAINS: usize = 32;
/// Shortest time to live a person may ask for.
pub const MIN_TTL: Duration = Duration::from_secs(60);
/// Most one-off values held per user; adding one more drops the oldest.
pub const MAX_TRANSIENT: usize = 16;

/// Which part of a credential to type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Username,
    Password,
}

/// A credential a person enters. Its username and password are wiped from memory when it is
/// dropped, and its `Debug` leaves them out.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCredential {
    /// The name the agent uses: `^[a-z0-9][a-z0-9_.-]{0,63}$`.
    pub name: String,
    /// May be empty.
    #[serde(default)]
    pub username: String,
    pub password: String,
    /// Hosts the credential may be typed on, each also covering its subdomains
    /// (`example.com`), or only the subdomains (`*.example.com`). 1 to 32.
    pub domains: Vec<String>,
    /// Seconds to keep it (at least 60; default and maximum are the control plane's).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

impl fmt::Debug for NewCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewCredential")
            .field("name", &self.name)
            .field("has_username", &!self.username.is_empty())
            .field("domains", &self.domains)
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl Drop for NewCredential {
    fn drop(&mut self) {
        self.username.zeroize();
        self.password.zeroize();
    }
}

/// What may be shown about a held credential: never a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CredentialInfo {
    pub name: String,
    pub domains: Vec<String>,
    pub has_username: bool,
    /// When it is forgotten, unix milliseconds.
    pub expires_at: u64,
}

/// Why the vault refused.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("invalid credential: {0}")]
    Invalid(String),
    #[error("no credential named {0:?}: a person has to enter it first")]
    NotFound(String),
    #[error("the credential {0:?} has expired: a person has to enter it again")]
    Expired(String),
    #[error(
        "the credential {name:?} may not be typed on {host:?}: that site is not one of its domains"
    )]
    DomainRefused { name: String, host: String },
    #[error("too many credentials are held for this user: remove one first")]
    Full,
}

struct Entry {
    username: Zeroizing<String>,
    password: Zeroizing<String>,
    domains: Vec<String>,
    expires: Instant,
    expires_at: u64,
}

impl Entry {
    fn info(&self, name: &str) -> CredentialInfo {
        CredentialInfo {
            name: name.to_owned(),
            domains: self.domains.clone(),
            has_username: !self.username.is_empty(),
            expires_at: self.expires_at,
        }
    }
}

struct Transient {
    label: String,
    value: Zeroizing<String>,
    expires: Instant,
}

#[derive(Default)]
struct UserVault {
    creds: HashMap<String, Entry>,
    transient: Vec<Transient>,
}

impl UserVault {
    fn purge(&mut self, now: Instant) {
        self.creds.retain(|_, e| e.expires > now);
        self.transient.retain(|t| t.expires > now);
    }

    fn is_empty(&self) -> bool {
        self.creds.is_empty() && self.transient.is_empty()
    }

    fn add_to(&self, r: &mut Redactor) {
        // By name: equal values are always reported under the same name.
        let mut creds: Vec<_> = self.creds.iter().collect();
        creds.sort_by(|a, b| a.0.cmp(b.0));
        for (name, e) in creds {
            r.add(name, &e.password);
            r.add(&format!("{name}.username"), &e.username);
        }
        for t in &self.transient {
            r.add(&t.label, &t.value);
        }
    }
}

/// Credentials and one-off values held in memory, per user (see the module doc).
pub struct Vault {
    users: Mutex<HashMap<String, UserVault>>,
    max_per_user: usize,
    default_ttl: Duration,
    max_ttl: Duration,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("users", &self.lock().len())
            .field("max_per_user", &self.max_per_user)
            .field("default_ttl", &self.default_ttl)
            .field("max_ttl", &self.max_ttl)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// An empty vault holding at most `max_per_user` credentials per user, for `default_ttl`
    /// unless the person asks for another time to live (up to `max_ttl`).
    pub fn new(max_per_user: usize, default_ttl: Duration, max_ttl: Duration) -> Vault {
        Vault {
            users: Mutex::new(HashMap::new()),
            max_per_user,
            default_ttl,
            max_ttl,
        }
    }

    /// Holds `c` for `user`, replacing a credential of the same name; `c`'s username and
    /// password move into the vault without a copy and `c` is wiped either way.
    pub fn put(&self, user: &str, c: NewCredential) -> Result<CredentialInfo, VaultError> {
        self.put_at(user, c, Instant::now())
    }

    /// The user's live credentials, sorted by name.
    pub fn list(&self, user: &str) -> Vec<CredentialInfo> {
        self.list_at(user, Instant::now())
    }

    /// Forgets one credential; whether it was held.
    pub fn remove(&self, user: &str, name: &str) -> bool {
        let mut users = self.lock();
        let Some(u) = users.get_mut(user) else {
            return false;
        };
        let removed = u.creds.remove(name).is_some();
        if u.is_empty() {
            users.remove(user);
        }
        removed
    }

    /// Forgets everything held for `user`.
    pub fn remove_user(&self, user: &str) {
        self.lock().remove(user);
    }

    /// The value to type for `field`, only if `host` (the focused page's host) is one of the
    /// credential's domains or a subdomain of one.
    pub fn value(
        &self,
        user: &str,
        name: &str,
        field: Field,
        host: &str,
    ) -> Result<Zeroizing<String>, VaultError> {
        self.value_at(user, name, field, host, Instant::now())
    }

    /// A one-off value (a 2FA code typed for the person): never typed again, only redacted
    /// until it expires. At most [`MAX_TRANSIENT`] are kept per user (the oldest goes first).
    pub fn add_transient(&self, user: &str, label: &str, value: Zeroizing<String>, ttl: Duration) {
        self.add_transient_at(user, label, value, ttl, Instant::now());
    }

    /// Every live value of `user` (usernames of 4+ chars too, passwords, transient values) as
    /// a Redactor naming them `<name>` / `<name>.username` / the transient label.
    pub fn redactor(&self, user: &str) -> Redactor {
        self.redactor_at(user, Instant::now())
    }

    /// Every live value of every user (for redacting logs/events not tied to one user).
    pub fn redactor_all(&self) -> Redactor {
        self.redactor_all_at(Instant::now())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, UserVault>> {
        // The map stays consistent even if a holder panicked: every change is one insert/remove.
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn put_at(
        &self,
        user: &str,
        mut c: NewCredential,
        now: Instant,
    ) -> Result<CredentialInfo, VaultError> {
        validate_name(&c.name)?;
        let password_chars = c.password.chars().count();
        if !(1..=MAX_VALUE_CHARS).contains(&password_chars) {
            return Err(VaultError::Invalid(format!(
                "the password must have 1 to {MAX_VALUE_CHARS} characters"
            )));
        }
        if c.username.chars().count() > MAX_VALUE_CHARS {
            return Err(VaultError::Invalid(format!(
                "the username must have at most {MAX_VALUE_CHARS} characters"
            )));
        }
        if !(1..=MAX_DOMAINS).contains(&c.domains.len()) {
            return Err(VaultError::Invalid(format!(
                "give 1 to {MAX_DOMAINS} domains the credential may be typed on"
            )));
        }
        let domains = c
            .domains
            .iter()
            .map(|d| normalize_domain(d))
            .collect::<Result<Vec<_>, _>>()?;
        let ttl = match c.ttl_secs {
            None => self.default_ttl,
            Some(s) if (MIN_TTL.as_secs()..=self.max_ttl.as_secs()).contains(&s) => {
                Duration::from_secs(s)
            }
            Some(_) => {
                return Err(VaultError::Invalid(format!(
                    "ttl_secs must be between {} and {}",
                    MIN_TTL.as_secs(),
                    self.max_ttl.as_secs()
                )));
            }
        };
        let expires = now
            .checked_add(ttl)
            .ok_or_else(|| VaultError::Invalid("ttl_secs is too large".into()))?;
        let entry = Entry {
            username: Zeroizing::new(std::mem::take(&mut c.username)),
            password: Zeroizing::new(std::mem::take(&mut c.password)),
            domains,
            expires,
            expires_at: unix_ms()
                .saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
        };
        let info = entry.info(&c.name);
        let mut users = self.lock();
        let u = users.entry(user.to_owned()).or_default();
        u.purge(now);
        if !u.creds.contains_key(&c.name) && u.creds.len() >= self.max_per_user {
            return Err(VaultError::Full);
        }
        u.creds.insert(std::mem::take(&mut c.name), entry);
        Ok(info)
    }

    fn list_at(&self, user: &str, now: Instant) -> Vec<CredentialInfo> {
        let mut users = self.lock();
        let Some(u) = users.get_mut(user) else {
            return Vec::new();
        };
        u.purge(now);
        let mut list: Vec<_> = u.creds.iter().map(|(n, e)| e.info(n)).collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    fn value_at(
        &self,
        user: &str,
        name: &str,
        field: Field,
        host: &str,
        now: Instant,
    ) -> Result<Zeroizing<String>, VaultError> {
        let mut users = self.lock();
        let not_found = || VaultError::NotFound(name.to_owned());
        let u = users.get_mut(user).ok_or_else(not_found)?;
        let e = u.creds.get(name).ok_or_else(not_found)?;
        if e.expires <= now {
            u.creds.remove(name);
            return Err(VaultError::Expired(name.to_owned()));
        }
        if !e.domains.iter().any(|d| host_allowed(d, host)) {
            return Err(VaultError::DomainRefused {
                name: name.to_owned(),
                host: host.to_owned(),
            });
        }
        let v = match field {
            Field::Username => &e.username,
            Field::Password => &e.password,
        };
        Ok(Zeroizing::new(v.as_str().to_owned()))
    }

    fn add_transient_at(
        &self,
        user: &str,
        label: &str,
        value: Zeroizing<String>,
        ttl: Duration,
        now: Instant,
    ) {
        let Some(expires) = now.checked_add(ttl) else {
            return;
        };
        let mut users = self.lock();
        let u = users.entry(user.to_owned()).or_default();
        u.purge(now);
        if u.transient.len() >= MAX_TRANSIENT {
            u.transient.remove(0);
        }
        u.transient.push(Transient {
            label: label.to_owned(),
            value,
            expires,
        });
    }

    fn redactor_at(&self, user: &str, now: Instant) -> Redactor {
        let mut r = Redactor::new();
        let mut users = self.lock();
        if let Some(u) = users.get_mut(user) {
            u.purge(now);
            u.add_to(&mut r);
        }
        r
    }

    fn redactor_all_at(&self, now: Instant) -> Redactor {
        let mut r = Redactor::new();
        let mut users = self.lock();
        for u in users.values_mut() {
            u.purge(now);
            u.add_to(&mut r);
        }
        users.retain(|_, u| !u.is_empty());
        r
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn validate_name(name: &str) -> Result<(), VaultError> {
    let b = name.as_bytes();
    let ok = (1..=MAX_NAME_LEN).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_.-".contains(&c));
    if ok {
        Ok(())
    } else {
        Err(VaultError::Invalid(format!(
            "name {name:?}: use 1 to {MAX_NAME_LEN} of a-z 0-9 _ . - starting with a letter or digit"
        )))
    }
}

/// A domain as given by a person, lower-cased and without a trailing dot: a host name
/// (`example.com`, `localhost`, `127.0.0.1`) or `*.` and a host name.
fn normalize_domain(domain: &str) -> Result<String, VaultError> {
    let d = domain.trim().to_ascii_lowercase();
    let d = d.strip_suffix('.').unwrap_or(&d);
    let host = d.strip_prefix("*.").unwrap_or(d);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
    };
    if host.len() <= 253 && host.split('.').all(label_ok) {
        Ok(d.to_owned())
    } else {
        Err(VaultError::Invalid(format!(
            "domain {domain:?}: give a host name such as example.com or *.example.com"
        )))
    }
}

/// Whether `host` is `domain` or a subdomain of it (`*.domain`: a subdomain only).
fn host_allowed(domain: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host);
    if host.is_empty() {
        return false;
    }
    let (base, apex_ok) = match domain.strip_prefix("*.") {
        Some(base) => (base, false),
        None => (domain, true),
    };
    (apex_ok && host == base)
        || host
            .strip_suffix(base)
            .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "Pa55w0rd\"/x";
    const USER: &str = "alice.smith";
    const HOUR: Duration = Duration::from_secs(3600);

    fn vault() -> Vault {
        Vault::new(3, HOUR, 24 * HOUR)
    }

    fn cred(name: &str, domains: &[&str]) -> NewCredential {
        NewCredential {
            name: name.into(),
            username: USER.into(),
            password: PW.into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            ttl_secs: None,
        }
    }

    fn invalid(v: &Vault, c: NewCredential) -> String {
        match v.put("u1", c) {
            Err(VaultError::Invalid(m)) => m,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn assert_no_value(text: &str) {
        for secret in [PW, USER, "Pa55w0rd", "alice"] {
            assert!(!text.contains(secret), "{secret:?} in {text}");
        }
    }

    #[test]
    fn put_then_value_for_each_field() {
        let v = vault();
        let info = v.put("u1", cred("bank", &["bank.example"])).expect("put");
        assert_eq!(info.name, "bank");
        assert_eq!(info.domains, ["bank.example"]);
        assert!(info.has_username);
        let pw = v
            .value("u1", "bank", Field::Password, "bank.example")
            .expect("password");
        assert_eq!(pw.as_str(), PW);
        let user = v
            .value("u1", "bank", Field::Username, "bank.example")
            .expect("username");
        assert_eq!(user.as_str(), USER);
    }

    #[test]
    fn invalid_names() {
        let v = vault();
        for name in [
            "",
            "Bank",
            "-bank",
            ".bank",
            "_bank",
            "ba nk",
            "bänk",
            "bank/x",
            &"a".repeat(65),
        ] {
            let m = invalid(&v, cred(name, &["a.com"]));
            assert!(m.contains("name"), "{name:?}: {m}");
        }
        for name in ["a", "0", "bank.login_2-x", &"a".repeat(64)] {
            v.put("u2", cred(name, &["a.com"]))
                .unwrap_or_else(|e| panic!("{name:?}: {e}"));
            v.remove("u2", name);
        }
    }

    #[test]
    fn invalid_values_and_messages_never_hold_them() {
        let v = vault();
        let mut c = cred("a", &["a.com"]);
        c.password = String::new();
        assert!(invalid(&v, c).contains("password"));
        let mut c = cred("a", &["a.com"]);
        c.password = "p".repeat(1025);
        let m = invalid(&v, c);
        assert!(m.contains("password") && !m.contains("ppp"), "{m}");
        let mut c = cred("a", &["a.com"]);
        c.password = "€".repeat(1024); // characters, not bytes
        v.put("u1", c).expect("1024 characters");
        let mut c = cred("a", &["a.com"]);
        c.username = "u".repeat(1025);
        let m = invalid(&v, c);
        assert!(m.contains("username") && !m.contains("uuu"), "{m}");
        let mut c = cred("a", &["a.com"]);
        c.username = String::new();
        let info = v.put("u1", c).expect("no username");
        assert!(!info.has_username);
        // Every message of a failing put, for a credential with real-looking values.
        let mut c = cred("Bad Name", &["a.com"]);
        c.ttl_secs = Some(1);
        assert_no_value(&v.put("u1", c).expect_err("bad").to_string());
    }

    #[test]
    fn invalid_domains() {
        let v = vault();
        assert!(invalid(&v, cred("a", &[])).contains("domains"));
        let many: Vec<String> = (0..33).map(|i| format!("d{i}.com")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(invalid(&v, cred("a", &many)).contains("domains"));
        v.put("u1", cred("a", &many[..32])).expect("32 domains");
        for d in [
            "",
            "exa mple.com",
            "https://example.com",
            "example.com/login",
            "example.com:443",
            "*.",
            "*",
            "a..b",
            "-a.com",
            "a-.com",
            "*.*.com",
            "*example.com",
            "user@example.com",
            "exämple.com",
            "[::1]",
            &format!("{}.com", "a".repeat(64)),
        ] {
            let m = invalid(&v, cred("a", &[d]));
            assert!(m.contains("domain"), "{d:?}: {m}");
        }
        let info = v
            .put(
                "u1",
                cred(
                    "a",
                    &[
                        "Example.COM.",
                        "*.example.org",
                        "localhost",
                        "127.0.0.1",
                        "xn--bcher-kva.example",
                    ],
                ),
            )
            .expect("valid domains");
        assert_eq!(
            info.domains,
            [
                "example.com",
                "*.example.org",
                "localhost",
                "127.0.0.1",
                "xn--bcher-kva.example"
            ]
        );
    }

    #[test]
    fn ttl_bounds_and_default() {
        let v = vault();
        for ttl in [0, 59, 24 * 3600 + 1, u64::MAX] {
            let mut c = cred("a", &["a.com"]);
            c.ttl_secs = Some(ttl);
            assert!(invalid(&v, c).contains("ttl_secs"), "{ttl}");
        }
        for ttl in [60, 24 * 3600] {
            let mut c = cred("a", &["a.com"]);
            c.ttl_secs = Some(ttl);
            let before = unix_ms();
            let info = v.put("u1", c).expect("valid ttl");
            assert!(info.expires_at >= before + ttl * 1000);
            assert!(info.expires_at <= unix_ms() + ttl * 1000);
        }
        let before = unix_ms();
        let info = v.put("u1", cred("a", &["a.com"])).expect("default ttl");
        assert!(
            info.expires_at >= before + 3600 * 1000 && info.expires_at <= unix_ms() + 3600 * 1000
        );
    }

    #[test]
    fn expiry() {
        let v = vault();
        let t0 = Instant::now();
        let mut c = cred("short", &["a.com"]);
        c.ttl_secs = Some(60);
        v.put_at("u1", c, t0).expect("put");
        v.put_at("u1", cred("long", &["a.com"]), t0).expect("put");
        let at = |s| t0 + Duration::from_secs(s);
        v.value_at("u1", "short", Field::Password, "a.com", at(59))
            .expect("live at 59 s");
        assert_eq!(v.redactor_at("u1", at(59)).redact(PW), "<secret:long>");
        assert!(v.redactor_at("u1", at(59)).names().any(|n| n == "short"));
        assert!(matches!(
            v.value_at("u1", "short", Field::Password, "a.com", at(60)),
            Err(VaultError::Expired(n)) if n == "short"
        ));
        assert!(matches!(
            v.value_at("u1", "short", Field::Password, "a.com", at(61)),
            Err(VaultError::NotFound(_))
        ));
        let names: Vec<_> = v
            .list_at("u1", at(61))
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(names, ["long"]);
        assert!(!v.redactor_at("u1", at(61)).names().any(|n| n == "short"));
        // The default ttl (an hour) ends too; list purges it.
        assert!(v.list_at("u1", at(3600)).is_empty());
        assert!(v.redactor_at("u1", at(3600)).is_empty());
        assert!(matches!(
            v.value_at("u1", "long", Field::Username, "a.com", at(3600)),
            Err(VaultError::NotFound(_))
        ));
    }

    #[test]
    fn domain_check() {
        let v = vault();
        v.put("u1", cred("site", &["example.com", "*.example.org"]))
            .expect("put");
        let ok = |host: &str| v.value("u1", "site", Field::Password, host).is_ok();
        for host in [
            "example.com",
            "login.example.com",
            "a.b.example.com",
            "EXAMPLE.com",
            "example.com.",
            "www.example.org",
        ] {
            assert!(ok(host), "{host} should be allowed");
        }
        for host in [
            "example.com.evil.net",
            "evilexample.com",
            "example.co",
            "xample.com",
            "com",
            ".example.com",
            "",
            "example.org",
            "evilexample.org",
            "example.org.evil.net",
            "example.com:8080",
        ] {
            match v.value("u1", "site", Field::Password, host) {
                Err(VaultError::DomainRefused { name, host: h }) => {
                    assert_eq!((name.as_str(), h.as_str()), ("site", host));
                }
                other => panic!("{host}: expected DomainRefused, got {other:?}"),
            }
        }
        v.put("u1", cred("local", &["localhost", "127.0.0.1"]))
            .expect("put");
        for host in ["localhost", "127.0.0.1"] {
            assert!(v.value("u1", "local", Field::Username, host).is_ok());
        }
        assert!(
            v.value("u1", "local", Field::Username, "127.0.0.2")
                .is_err()
        );
    }

    #[test]
    fn users_are_isolated() {
        let v = vault();
        v.put("alice", cred("bank", &["bank.example"]))
            .expect("put");
        let mut bobs = cred("bank", &["bank.example"]);
        bobs.password = "bobs-password".into();
        v.put("bob", bobs).expect("put");
        let mut bobs_mail = cred("mail", &["mail.example"]);
        bobs_mail.password = "bobs-mail-pw".into();
        v.put("bob", bobs_mail).expect("put");
        assert!(matches!(
            v.value("alice", "mail", Field::Password, "mail.example"),
            Err(VaultError::NotFound(_))
        ));
        assert!(matches!(
            v.value("carol", "bank", Field::Password, "bank.example"),
            Err(VaultError::NotFound(_))
        ));
        assert_eq!(
            v.value("bob", "bank", Field::Password, "bank.example")
                .expect("bob's")
                .as_str(),
            "bobs-password"
        );
        assert_eq!(v.list("alice").len(), 1);
        assert_eq!(v.list("bob").len(), 2);
        assert!(v.list("carol").is_empty());
        assert_eq!(v.redactor("alice").redact("bobs-password"), "bobs-password");
        assert_eq!(v.redactor("bob").redact("bobs-password"), "<secret:bank>");
        let all = v.redactor_all();
        assert_eq!(
            all.redact(&format!("{PW} bobs-password")),
            "<secret:bank> <secret:bank>"
        );
        assert!(!v.remove("alice", "mail"));
        assert!(v.remove("alice", "bank"));
        assert!(!v.remove("alice", "bank"));
        assert_eq!(v.list("bob").len(), 2);
        v.remove_user("bob");
        assert!(v.list("bob").is_empty());
        assert!(v.redactor_all().is_empty());
    }

    #[test]
    fn full_and_replace() {
        let v = vault(); // 3 per user
        for n in ["a", "b", "c"] {
            v.put("u1", cred(n, &["a.com"])).expect("put");
        }
        assert!(matches!(
            v.put("u1", cred("d", &["a.com"])),
            Err(VaultError::Full)
        ));
        v.put("u2", cred("d", &["a.com"]))
            .expect("another user has room");
        // Replacing a held name is not a new entry.
        let mut c = cred("a", &["b.com"]);
        c.password = "replaced-pw".into();
        let info = v.put("u1", c).expect("replace");
        assert_eq!(info.domains, ["b.com"]);
        assert_eq!(
            v.value("u1", "a", Field::Password, "b.com")
                .expect("new")
                .as_str(),
            "replaced-pw"
        );
        assert!(matches!(
            v.value("u1", "a", Field::Password, "a.com"),
            Err(VaultError::DomainRefused { .. })
        ));
        assert!(v.remove("u1", "b"));
        v.put("u1", cred("d", &["a.com"])).expect("room again");
        // Expired entries do not count.
        let t0 = Instant::now();
        let v = vault();
        for n in ["a", "b", "c"] {
            let mut c = cred(n, &["a.com"]);
            c.ttl_secs = Some(60);
            v.put_at("u1", c, t0).expect("put");
        }
        v.put_at("u1", cred("d", &["a.com"]), t0 + Duration::from_secs(61))
            .expect("expired ones purged");
    }

    #[test]
    fn list_is_sorted_and_never_holds_a_value() {
        let v = vault();
        for n in ["zeta", "alpha", "mid"] {
            v.put("u1", cred(n, &["a.com"])).expect("put");
        }
        let list = v.list("u1");
        let names: Vec<_> = list.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["alpha", "mid", "zeta"]);
        let json = serde_json::to_string(&list).expect("json");
        assert_no_value(&json);
        assert_no_value(&format!("{list:?} {list:#?}"));
        let v: serde_json::Value = serde_json::from_str(&json).expect("parse");
        let keys: Vec<_> = v[0].as_object().expect("object").keys().cloned().collect();
        assert_eq!(keys, ["domains", "expires_at", "has_username", "name"]);
    }

    #[test]
    fn transient_values_are_redacted_never_typed_and_expire() {
        let v = vault();
        let t0 = Instant::now();
        v.add_transient_at(
            "u1",
            "2fa",
            Zeroizing::new("492817".into()),
            Duration::from_secs(300),
            t0,
        );
        v.add_transient_at(
            "u2",
            "2fa",
            Zeroizing::new("111222".into()),
            Duration::from_secs(300),
            t0,
        );
        assert_eq!(
            v.redactor_at("u1", t0).redact("code 492817 and 111222"),
            "code <secret:2fa> and 111222"
        );
        assert!(matches!(
            v.value_at("u1", "2fa", Field::Password, "a.com", t0),
            Err(VaultError::NotFound(_))
        ));
        assert!(v.list_at("u1", t0).is_empty());
        assert_eq!(
            v.redactor_all_at(t0).redact("492817 111222"),
            "<secret:2fa> <secret:2fa>"
        );
        assert!(
            v.redactor_at("u1", t0 + Duration::from_secs(300))
                .is_empty()
        );
        // Bounded: the oldest go first.
        for i in 0..MAX_TRANSIENT + 2 {
            v.add_transient_at(
                "u3",
                &format!("code{i}"),
                Zeroizing::new(format!("{i:06}")),
                HOUR,
                t0,
            );
        }
        let r = v.redactor_at("u3", t0);
        assert_eq!(r.len(), MAX_TRANSIENT);
        assert_eq!(r.redact("000000 000002"), "000000 <secret:code2>");
    }

    #[test]
    fn redactor_names_passwords_usernames_and_skips_short_usernames() {
        let v = vault();
        v.put("u1", cred("bank", &["a.com"])).expect("put");
        let mut c = cred("mail", &["a.com"]);
        c.username = "bob".into();
        c.password = "mail-password".into();
        v.put("u1", c).expect("put");
        let r = v.redactor("u1");
        assert_eq!(
            r.redact(&format!("{USER}:{PW} bob:mail-password")),
            "<secret:bank.username>:<secret:bank> bob:<secret:mail>"
        );
        let mut names: Vec<_> = r.names().collect();
        names.sort();
        assert_eq!(names, ["bank", "bank.username", "mail"]);
        assert_no_value(&format!("{r:?}"));
    }

    #[test]
    fn debug_of_every_public_type_has_no_value() {
        let v = vault();
        let c = cred("bank", &["bank.example"]);
        let dbg = format!("{c:?} {c:#?}");
        assert!(
            dbg.contains("bank.example") && dbg.contains("has_username"),
            "{dbg}"
        );
        assert_no_value(&dbg);
        let info = v.put("u1", c).expect("put");
        v.add_transient("u1", "2fa", Zeroizing::new("Pa55w0rd-2fa".into()), HOUR);
        assert_no_value(&format!("{info:?} {v:?} {v:#?} {:?}", Field::Password));
        assert_no_value(&serde_json::to_string(&info).expect("json"));
        let errors = [
            VaultError::Invalid("x".into()),
            VaultError::NotFound("bank".into()),
            VaultError::Expired("bank".into()),
            VaultError::DomainRefused {
                name: "bank".into(),
                host: "evil.example".into(),
            },
            VaultError::Full,
        ];
        for e in &errors {
            assert_no_value(&format!("{e} {e:?}"));
        }
        let refused = v
            .value("u1", "bank", Field::Password, "evil.example")
            .expect_err("refused");
        let msg = refused.to_string();
        assert!(
            msg.contains("bank") && msg.contains("evil.example"),
            "{msg}"
        );
        assert_no_value(&format!("{msg} {refused:?}"));
    }

    #[test]
    fn new_credential_from_json() {
        let c: NewCredential = serde_json::from_str(
            r#"{"name":"bank","password":"Pa55w0rd\"/x","domains":["bank.example"],"ttl_secs":120}"#,
        )
        .expect("json");
        assert_eq!((c.username.as_str(), c.password.as_str()), ("", PW));
        assert_eq!(c.ttl_secs, Some(120));
        let err = serde_json::from_str::<NewCredential>(
            r#"{"name":"bank","password":"Pa55w0rd","domains":["a.com"],"note":"x"}"#,
        )
        .expect_err("unknown field refused");
        assert!(err.to_string().contains("note"), "{err}");
        assert_no_value(&err.to_string());
        assert_eq!(
            serde_json::to_string(&[Field::Username, Field::Password]).expect("json"),
            r#"["username","password"]"#
        );
        let f: Field = serde_json::from_str(r#""password""#).expect("field");
        assert_eq!(f, Field::Password);
    }
}
