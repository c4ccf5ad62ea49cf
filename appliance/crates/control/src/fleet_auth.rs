//! Authentication every appliance of a fleet accepts without calling another (issue 17,
//! `deploy/README.md` "Keys"): the fleet's settings, its users, and the fleet login token.
//!
//! - **Settings** ([`FleetSettings`]): `fleet_keys` (HMAC keys `KID:SECRET`, the first signs,
//!   all verify: rotation), `fleet_users` (`NAME:ROLE:PHC`, the same list on every appliance)
//!   and `fleet_members` (the fleet's appliance names, for the web app's fleet-wide lists).
//!   Fleet mode is on when at least one key is set.
//! - **Users** ([`sync_users`]): at start every listed user is created or brought in line with
//!   the list (password hash, admin flag, disabled) in the local store, so a password login
//!   works on whichever appliance HAProxy picks. Users not on the list stay local to their
//!   appliance. A listed user cannot be changed through one appliance's API (409
//!   `fleet_managed`): the change would hold on that appliance only.
//! - **Token** ([`mint`], [`verify`]): a listed user's login returns
//!   `zgf_<kid>.<claims>.<mac>`: base64url JSON claims (user name, issued, expires, id) and an
//!   HMAC-SHA256 over `<kid>.<claims>` with that key. Every appliance with the key accepts it
//!   for the user of that name, if that user is listed there too and not disabled. Nothing is
//!   stored: logging out clears the cookie, and the token stays valid elsewhere until it
//!   expires (`login_ttl_secs`); cutting someone off fleet-wide is `disabled` in the list, or a
//!   key rotation.

use std::collections::HashSet;

use argon2::password_hash::phc::PasswordHash;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zigral_store::{Store, StoreError, UserRecord};

/// Prefix of a fleet login token.
pub const PREFIX: &str = "zgf_";

/// Shortest accepted key secret, bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// Most names `fleet_members` may hold (after `{a..b}` expansion).
pub const MAX_MEMBERS: usize = 1000;

/// Error code of a refused change to a fleet-managed user.
pub const MANAGED_ERROR: &str = "fleet_managed";

/// A fleet signing key. Its secret never leaves this struct (no `Debug` of it).
#[derive(Clone)]
pub struct FleetKey {
    pub id: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for FleetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FleetKey({}, <secret>)", self.id)
    }
}

/// What a listed user is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetRole {
    Admin,
    User,
    /// Listed so that every appliance refuses them.
    Disabled,
}

/// A user of the fleet: the same on every appliance.
#[derive(Clone)]
pub struct FleetUser {
    pub name: String,
    pub role: FleetRole,
    /// argon2id PHC string.
    hash: String,
}

impl std::fmt::Debug for FleetUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FleetUser({}, {:?})", self.name, self.role)
    }
}

/// The fleet settings of this appliance (all empty: not in a fleet).
#[derive(Debug, Clone, Default)]
pub struct FleetSettings {
    pub keys: Vec<FleetKey>,
    /// Sorted by name, as [`parse_users`] returns them (looked up on every request).
    pub users: Vec<FleetUser>,
    pub members: Vec<String>,
}

impl FleetSettings {
    /// Whether fleet tokens are minted and accepted (a key is set).
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The listed user of that name.
    pub fn user(&self, name: &str) -> Option<&FleetUser> {
        self.users
            .binary_search_by(|u| u.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.users[i])
    }
}

/// Why a fleet setting was refused. Messages never contain a secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FleetConfigError {
    #[error(
        "fleet_keys entry {0}: expected KID:SECRET (KID 1-32 of a-z, 0-9, '-'; SECRET base64url)"
    )]
    KeyFormat(usize),
    #[error("fleet_keys entry {index} ({id}): the secret is not base64url")]
    KeyEncoding { index: usize, id: String },
    #[error(
        "fleet_keys entry {index} ({id}): the secret has {len} bytes, at least {MIN_KEY_BYTES} are needed"
    )]
    KeyTooShort {
        index: usize,
        id: String,
        len: usize,
    },
    #[error("fleet_keys: key id '{0}' appears twice")]
    KeyDuplicate(String),
    #[error(
        "fleet_users entry {0}: expected NAME:ROLE:PHC (ROLE admin, user or disabled; PHC an argon2id hash)"
    )]
    UserFormat(usize),
    #[error("fleet_users entry {index}: role '{role}' is not admin, user or disabled")]
    UserRole { index: usize, role: String },
    #[error("fleet_users entry {index} ({name}): not an argon2id PHC string ($argon2id$v=19$...)")]
    UserHash { index: usize, name: String },
    #[error(
        "fleet_users entry {index}: user name '{name}' must have 1-64 characters without ':' or spaces"
    )]
    UserName { index: usize, name: String },
    #[error("fleet_users: user '{0}' appears twice")]
    UserDuplicate(String),
    #[error("fleet_users is set but fleet_keys is not: the users would have no fleet token")]
    UsersWithoutKeys,
    #[error("fleet_members: '{0}' is not a DNS label or NAME-{{A..B}} range")]
    Member(String),
    #[error("fleet_members: more than {MAX_MEMBERS} names")]
    TooManyMembers,
}

/// Entries separated by commas or white space.
fn entries(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|e| !e.is_empty())
}

fn is_key_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Parses `fleet_keys`.
pub fn parse_keys(s: &str) -> Result<Vec<FleetKey>, FleetConfigError> {
    let mut keys: Vec<FleetKey> = Vec::new();
    for (i, e) in entries(s).enumerate() {
        let index = i + 1;
        let (id, secret) = e
            .split_once(':')
            .filter(|(id, s)| is_key_id(id) && !s.is_empty())
            .ok_or(FleetConfigError::KeyFormat(index))?;
        let secret = URL_SAFE_NO_PAD
            .decode(secret.trim_end_matches('='))
            .map_err(|_| FleetConfigError::KeyEncoding {
                index,
                id: id.to_owned(),
            })?;
        if secret.len() < MIN_KEY_BYTES {
            return Err(FleetConfigError::KeyTooShort {
                index,
                id: id.to_owned(),
                len: secret.len(),
            });
        }
        if keys.iter().any(|k| k.id == id) {
            return Err(FleetConfigError::KeyDuplicate(id.to_owned()));
        }
        keys.push(FleetKey {
            id: id.to_owned(),
            secret,
        });
    }
    Ok(keys)
}

/// Parses `fleet_users` (white-space separated: PHC strings contain commas); sorted by name.
pub fn parse_users(s: &str) -> Result<Vec<FleetUser>, FleetConfigError> {
    let mut users: Vec<FleetUser> = Vec::new();
    let mut seen = HashSet::new();
    for (i, e) in s.split_whitespace().enumerate() {
        let index = i + 1;
        let mut parts = e.splitn(3, ':');
        let (Some(name), Some(role), Some(hash)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(FleetConfigError::UserFormat(index));
        };
        if name.is_empty() || name.len() > 64 {
            return Err(FleetConfigError::UserName {
                index,
                name: name.to_owned(),
            });
        }
        let role = match role {
            "admin" => FleetRole::Admin,
            "user" => FleetRole::User,
            "disabled" => FleetRole::Disabled,
            r => {
                return Err(FleetConfigError::UserRole {
                    index,
                    role: r.to_owned(),
                });
            }
        };
        let argon2id = PasswordHash::new(hash)
            .ok()
            .is_some_and(|h| h.algorithm.as_str() == "argon2id" && h.hash.is_some());
        if !argon2id {
            return Err(FleetConfigError::UserHash {
                index,
                name: name.to_owned(),
            });
        }
        if !seen.insert(name) {
            return Err(FleetConfigError::UserDuplicate(name.to_owned()));
        }
        users.push(FleetUser {
            name: name.to_owned(),
            role,
            hash: hash.to_owned(),
        });
    }
    users.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(users)
}

/// Parses `fleet_members`: DNS labels, and `NAME-{A..B}` for NAME-A .. NAME-B.
pub fn parse_members(s: &str) -> Result<Vec<String>, FleetConfigError> {
    let mut out: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    let bad = |e: &str| FleetConfigError::Member(e.to_owned());
    for e in entries(s) {
        let names: Vec<String> = match e.strip_suffix('}').and_then(|x| x.split_once('{')) {
            Some((stem, range)) => {
                let (a, b) = range.split_once("..").ok_or_else(|| bad(e))?;
                let (a, b): (usize, usize) = (
                    a.parse().map_err(|_| bad(e))?,
                    b.parse().map_err(|_| bad(e))?,
                );
                if a > b || b - a >= MAX_MEMBERS {
                    return Err(bad(e));
                }
                (a..=b).map(|i| format!("{stem}{i}")).collect()
            }
            None => vec![e.to_owned()],
        };
        for n in names {
            if !crate::fleet::is_dns_label(&n) {
                return Err(bad(e));
            }
            if seen.insert(n.clone()) {
                out.push(n);
            }
            if out.len() > MAX_MEMBERS {
                return Err(FleetConfigError::TooManyMembers);
            }
        }
    }
    Ok(out)
}

/// What a fleet token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User name.
    pub u: String,
    /// Issued, ms since the epoch.
    pub iat: u64,
    /// Expires, ms since the epoch.
    pub exp: u64,
    /// Token id (audit: who logged in where).
    pub jti: String,
}

/// Why a fleet token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a fleet token")]
    Malformed,
    #[error("signed with key '{0}', which this appliance does not have")]
    UnknownKey(String),
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
}

fn mac(key: &FleetKey, signed: &str) -> Hmac<Sha256> {
    let mut m =
        <Hmac<Sha256> as Mac>::new_from_slice(&key.secret).expect("HMAC takes any key length");
    m.update(signed.as_bytes());
    m
}

/// A token for `claims`, signed with the first key. `None` when there is no key.
pub fn mint(keys: &[FleetKey], claims: &Claims) -> Option<String> {
    let key = keys.first()?;
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).ok()?);
    let signed = format!("{}.{body}", key.id);
    let tag = URL_SAFE_NO_PAD.encode(mac(key, &signed).finalize().into_bytes());
    Some(format!("{PREFIX}{signed}.{tag}"))
}

/// The claims of a valid, unexpired token signed with one of `keys`.
pub fn verify(keys: &[FleetKey], token: &str, now_ms: u64) -> Result<Claims, TokenError> {
    let rest = token.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
    let (signed, tag) = rest.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let (kid, body) = signed.split_once('.').ok_or(TokenError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| TokenError::Malformed)?;
    let key = keys
        .iter()
        .find(|k| k.id == kid)
        .ok_or_else(|| TokenError::UnknownKey(kid.chars().take(32).collect()))?;
    // Constant-time comparison (hmac's verify_slice).
    mac(key, signed)
        .verify_slice(&tag)
        .map_err(|_| TokenError::BadSignature)?;
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(body)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(TokenError::Malformed)?;
    if claims.exp <= now_ms {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// What [`sync_users`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// What [`sync_one`] did to one user.
enum Synced {
    Created,
    Updated,
    Unchanged,
}

/// Brings the local store in line with the fleet's user list. Up to 64 users at a time: the
/// store's writer commits concurrent writes together, so a first boot with thousands of users
/// takes a few commits' worth of fsyncs per batch, not one per user.
pub async fn sync_users(
    store: &Store,
    users: &[FleetUser],
    now_ms: u64,
) -> Result<SyncReport, StoreError> {
    use futures_util::{StreamExt, TryStreamExt};
    futures_util::stream::iter(users)
        .map(|u| sync_one(store, u, now_ms))
        .buffer_unordered(64)
        .try_fold(SyncReport::default(), |mut r, done| async move {
            match done {
                Synced::Created => r.created += 1,
                Synced::Updated => r.updated += 1,
                Synced::Unchanged => r.unchanged += 1,
            }
            Ok(r)
        })
        .await
}

async fn sync_one(store: &Store, u: &FleetUser, now_ms: u64) -> Result<Synced, StoreError> {
    let is_admin = u.role == FleetRole::Admin;
    let disabled = u.role == FleetRole::Disabled;
    match store.get_user_by_name(&u.name)? {
        Some(rec)
            if rec.password_hash == u.hash
                && rec.is_admin == is_admin
                && rec.disabled == disabled =>
        {
            Ok(Synced::Unchanged)
        }
        Some(rec) => {
            let hash = u.hash.clone();
            store
                .update_user(&rec.id, move |x| {
                    x.password_hash = hash.clone();
                    x.is_admin = is_admin;
                    x.disabled = disabled;
                })
                .await?;
            if disabled || rec.password_hash != u.hash {
                // Logins made with the old password (or before the user was disabled) end
                // here, as a password reset ends them.
                store.revoke_logins(&rec.id).await?;
            }
            Ok(Synced::Updated)
        }
        None => {
            store
                .create_user(UserRecord {
                    id: crate::auth::new_id(),
                    username: u.name.clone(),
                    password_hash: u.hash.clone(),
                    is_admin,
                    created_at: now_ms,
                    disabled,
                    persistent_profile: false,
                    limits: Default::default(),
                })
                .await?;
            Ok(Synced::Created)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, byte: u8) -> String {
        format!("{id}:{}", URL_SAFE_NO_PAD.encode([byte; 32]))
    }

    #[test]
    fn keys_parse_and_refuse_without_echoing_secrets() {
        let k = parse_keys(&format!("{}, {}", key("new", 1), key("old", 2))).unwrap();
        assert_eq!(
            k.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            ["new", "old"]
        );
        assert!(!format!("{k:?}").contains(&URL_SAFE_NO_PAD.encode([1u8; 32])));
        assert_eq!(
            parse_keys("k1:c2hvcnQ").unwrap_err(),
            FleetConfigError::KeyTooShort {
                index: 1,
                id: "k1".into(),
                len: 5
            }
        );
        assert_eq!(
            parse_keys("K1:abc").unwrap_err(),
            FleetConfigError::KeyFormat(1)
        );
        assert!(matches!(
            parse_keys(&format!("{} {}", key("a", 1), key("a", 2))),
            Err(FleetConfigError::KeyDuplicate(_))
        ));
        let e = parse_keys("k1:not*base64*not*base64*not*base64*not*base64").unwrap_err();
        assert!(!e.to_string().contains("not*base64"), "{e}");
    }

    #[test]
    fn users_need_a_role_and_an_argon2id_hash() {
        let h = crate::auth::hash_password("alice-password").unwrap();
        let u = parse_users(&format!("alice:admin:{h}\n bob:disabled:{h}")).unwrap();
        assert_eq!(u[0].role, FleetRole::Admin);
        assert_eq!(u[1].role, FleetRole::Disabled);
        assert!(!format!("{u:?}").contains("argon2id"));
        // Looked up by name (sorted, whatever the order given).
        let fleet = FleetSettings {
            users: parse_users(&format!("zed:user:{h} alice:user:{h} mia:admin:{h}")).unwrap(),
            ..Default::default()
        };
        assert_eq!(fleet.user("mia").map(|u| u.role), Some(FleetRole::Admin));
        assert!(fleet.user("zed").is_some() && fleet.user("alice").is_some());
        assert!(fleet.user("bob").is_none());
        assert!(matches!(
            parse_users(&format!("alice:root:{h}")),
            Err(FleetConfigError::UserRole { .. })
        ));
        assert!(matches!(
            parse_users("alice:user:plaintext"),
            Err(FleetConfigError::UserHash { .. })
        ));
        assert!(matches!(
            parse_users("alice"),
            Err(FleetConfigError::UserFormat(1))
        ));
        assert!(matches!(
            parse_users(&format!("a:user:{h} a:admin:{h}")),
            Err(FleetConfigError::UserDuplicate(_))
        ));
    }

    #[test]
    fn members_expand_ranges_and_refuse_non_labels() {
        assert_eq!(
            parse_members("zigral-{0..2}, edge-a zigral-1").unwrap(),
            ["zigral-0", "zigral-1", "zigral-2", "edge-a"]
        );
        assert!(parse_members("Zigral-0").is_err());
        assert!(parse_members("z-{3..1}").is_err());
        assert!(parse_members("z-{0..5000}").is_err());
        assert_eq!(parse_members("").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn tokens_verify_under_any_listed_key_and_nothing_else() {
        let old = parse_keys(&key("old", 2)).unwrap();
        let rotated = parse_keys(&format!("{} {}", key("new", 1), key("old", 2))).unwrap();
        let claims = Claims {
            u: "alice".into(),
            iat: 1,
            exp: 1000,
            jti: "j".into(),
        };
        let t_old = mint(&old, &claims).unwrap();
        // Rotation step 1: a fleet that has both keys accepts tokens of the old one...
        assert_eq!(verify(&rotated, &t_old, 10).unwrap(), claims);
        // ...and signs with the new one, which a not-yet-rotated appliance refuses by name.
        let t_new = mint(&rotated, &claims).unwrap();
        assert!(t_new.starts_with("zgf_new."));
        assert_eq!(
            verify(&old, &t_new, 10),
            Err(TokenError::UnknownKey("new".into()))
        );
        assert_eq!(verify(&rotated, &t_old, 1000), Err(TokenError::Expired));
        // A changed claim (another user) breaks the signature.
        let (head, tag) = t_old.rsplit_once('.').unwrap();
        let forged_claims = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Claims {
                u: "admin".into(),
                ..claims.clone()
            })
            .unwrap(),
        );
        let kid = head.split('.').next().unwrap();
        let forged = format!("{kid}.{forged_claims}.{tag}");
        assert_eq!(verify(&old, &forged, 10), Err(TokenError::BadSignature));
        assert_eq!(verify(&old, "zgl_abc", 10), Err(TokenError::Malformed));
        assert_eq!(verify(&old, "zgf_old.x", 10), Err(TokenError::Malformed));
        assert!(mint(&[], &claims).is_none());
    }
}
