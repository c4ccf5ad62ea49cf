//! Browser-state checkpoints: capture cookies (all, httpOnly included), the localStorage of
//! every origin open in a tab, each tab's sessionStorage, and the open tabs with their URLs;
//! restore them (clear and set cookies, reopen the tabs with their storage in place before the
//! page's own scripts run, close the tabs that were open before the restore).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::conn::Session;
use crate::page::wait_loaded;
use crate::{Browser, BrowserError, NavGuard, Result, UrlPolicy};

/// A tab as it was at checkpoint time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TabState {
    pub url: String,
    pub title: String,
    pub active: bool,
    /// The tab's sessionStorage (sessionStorage belongs to a tab and its origin).
    #[serde(default)]
    pub session_storage: Vec<(String, String)>,
}

/// An origin's localStorage at checkpoint time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginStorage {
    pub origin: String,
    pub local_storage: Vec<(String, String)>,
}

/// The captured browser state. Serialisable (the control plane stores it as JSON). It holds
/// cookie values, i.e. live sessions: store it like a secret-bearing record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version (1).
    pub version: u32,
    /// Cookies exactly as CDP `Storage.getCookies` returned them.
    pub cookies: Vec<Value>,
    pub tabs: Vec<TabState>,
    pub origins: Vec<OriginStorage>,
}

const STORAGE_JS: &str = r#"(() => {
  try {
    const o = location.origin;
    if (!o || o === 'null') return null;
    return JSON.stringify({ origin: o,
      local: Object.entries(localStorage), session: Object.entries(sessionStorage) });
  } catch (e) { return null; }
})()"#;

/// The `Network.CookieParam` fields `Storage.setCookies` accepts.
const COOKIE_PARAM_KEYS: &[&str] = &[
    "name",
    "value",
    "domain",
    "path",
    "secure",
    "httpOnly",
    "sameSite",
    "expires",
    "priority",
    "sourceScheme",
    "sourcePort",
    "partitionKey",
];

impl Browser {
    /// Captures cookies, storage and tabs.
    pub async fn checkpoint(&self) -> Result<Checkpoint> {
        let mut s = self.session().await?;
        let active = s.active_id().await?;
        let cookies = s.browser_cmd("Storage.getCookies", json!({})).await?;
        let cookies = cookies["cookies"].as_array().cloned().unwrap_or_default();
        let mut tabs = Vec::new();
        let mut origins: Vec<OriginStorage> = Vec::new();
        for t in s.targets().await? {
            let mut tab = TabState {
                active: t.id == active,
                url: t.url.clone(),
                title: t.title.clone(),
                session_storage: Vec::new(),
            };
            if t.url.starts_with("http://") || t.url.starts_with("https://") {
                let page = s.page(&t.id).await?;
                if let Ok(Value::String(j)) = s.eval(&page, STORAGE_JS).await {
                    #[derive(Deserialize)]
                    struct St {
                        origin: String,
                        local: Vec<(String, String)>,
                        session: Vec<(String, String)>,
                    }
                    if let Ok(st) = serde_json::from_str::<St>(&j) {
                        tab.session_storage = st.session;
                        origins.retain(|o| o.origin != st.origin);
                        origins.push(OriginStorage {
                            origin: st.origin,
                            local_storage: st.local,
                        });
                    }
                }
            }
            tabs.push(tab);
        }
        Ok(Checkpoint {
            version: 1,
            cookies,
            tabs,
            origins,
        })
    }

    /// Restores `cp`: cookies are cleared and set to the checkpoint's, its tabs are reopened
    /// (URLs that `policy` or the live guard's policy refuses open as `about:blank`) with
    /// their local/session storage in
    /// place before the pages load, and the tabs open before the restore are closed.
    pub async fn restore(&self, cp: &Checkpoint, policy: &UrlPolicy) -> Result<()> {
        if cp.version != 1 {
            return Err(BrowserError::Invalid(format!(
                "unsupported checkpoint version {}",
                cp.version
            )));
        }
        let guard = self.navigation_guard().await;
        let mut s = self.session().await?;
        let old: Vec<String> = s.targets().await?.into_iter().map(|t| t.id).collect();

        s.browser_cmd("Storage.clearCookies", json!({})).await?;
        let params: Vec<Value> = cp.cookies.iter().filter_map(cookie_param).collect();
        if !params.is_empty() {
            s.browser_cmd("Storage.setCookies", json!({"cookies": params}))
                .await?;
        }

        let mut new_active = None;
        let mut opened = Vec::new();
        for tab in &cp.tabs {
            let id = open_tab(&s, tab, cp, policy, guard.as_ref()).await?;
            if tab.active {
                new_active = Some(id.clone());
            }
            opened.push(id);
        }
        if opened.is_empty() {
            opened.push(s.create_target("about:blank").await?);
        }
        for id in &old {
            // A tab may already be gone; that is fine.
            let _ = s
                .browser_cmd("Target.closeTarget", json!({"targetId": id}))
                .await;
        }
        // Callers list the tabs next: only the restored ones.
        s.wait_gone(&old).await?;
        let active = new_active.unwrap_or_else(|| opened[0].clone());
        s.browser_cmd("Target.activateTarget", json!({"targetId": active}))
            .await?;
        s.st.active = Some(active);
        Ok(())
    }
}

/// Opens one checkpointed tab and returns its target id.
async fn open_tab(
    s: &Session<'_>,
    tab: &TabState,
    cp: &Checkpoint,
    policy: &UrlPolicy,
    guard: Option<&NavGuard>,
) -> Result<String> {
    let id = s.create_target("about:blank").await?;
    let Ok(url) = policy.check(&tab.url) else {
        return Ok(id);
    };
    if guard.is_some_and(|g| g.check(url.as_str()).is_err()) {
        return Ok(id);
    }
    if url.scheme() == "about" {
        return Ok(id);
    }
    let page = s.page(&id).await?;
    let origin = url.origin().ascii_serialization();
    let local = cp
        .origins
        .iter()
        .find(|o| o.origin == origin)
        .map(|o| o.local_storage.clone());
    // Install the storage before the page's scripts run, in the top frame of that origin only.
    let data = json!({"origin": origin, "local": local, "session": tab.session_storage});
    let script = format!(
        r#"(() => {{ const d = {data};
  if (window.top !== window || location.origin !== d.origin) return;
  try {{
    if (d.local) {{ localStorage.clear(); for (const [k, v] of d.local) localStorage.setItem(k, v); }}
    sessionStorage.clear(); for (const [k, v] of d.session) sessionStorage.setItem(k, v);
  }} catch (e) {{}}
}})()"#
    );
    let added = s
        .page_cmd(
            &page,
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": script}),
        )
        .await?;
    let nav = s
        .page_cmd(&page, "Page.navigate", json!({"url": url.as_str()}))
        .await;
    let waited = match &nav {
        Ok(_) => wait_loaded(s, &page, None, s.opts.op_timeout).await,
        Err(_) => Ok(()),
    };
    if let Some(ident) = added["identifier"].as_str() {
        let _ = s
            .page_cmd(
                &page,
                "Page.removeScriptToEvaluateOnNewDocument",
                json!({"identifier": ident}),
            )
            .await;
    }
    nav?;
    waited?;
    Ok(id)
}

/// A `Storage.setCookies` parameter from a captured cookie (session cookies lose `expires`).
fn cookie_param(c: &Value) -> Option<Value> {
    let obj = c.as_object()?;
    let session = obj.get("session").and_then(Value::as_bool).unwrap_or(false);
    let mut out = serde_json::Map::new();
    for k in COOKIE_PARAM_KEYS {
        if *k == "expires" && session {
            continue;
        }
        if let Some(v) = obj.get(*k) {
            out.insert((*k).to_owned(), v.clone());
        }
    }
    out.contains_key("name").then_some(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_param_drops_session_expiry_and_unknown_keys() {
        let c = json!({"name": "a", "value": "1", "domain": "x.com", "path": "/", "expires": -1,
                       "size": 2, "httpOnly": true, "secure": false, "session": true,
                       "priority": "Medium", "sameParty": false, "sourceScheme": "NonSecure",
                       "sourcePort": 80});
        let p = cookie_param(&c).expect("param");
        assert_eq!(p["name"], "a");
        assert_eq!(p["httpOnly"], true);
        assert!(p.get("expires").is_none());
        assert!(p.get("size").is_none());
        assert!(p.get("sameParty").is_none());
        let c2 = json!({"name": "b", "value": "2", "domain": "x.com", "path": "/",
                        "expires": 2_000_000_000.0, "session": false});
        assert_eq!(
            cookie_param(&c2).expect("param")["expires"],
            2_000_000_000.0
        );
    }
}
