//! Agent profiles: checking a profile before it is stored ([`Settings::check`]) and turning it
//! into the provider client's [`ProviderSpec`] and the loop's limits.

use std::time::Duration;

use regex::Regex;
use zigral_llm::{ApiKey, Generation, ProviderSpec, Thinking};
use zigral_store::AgentProfileRecord;

/// Most characters of a system prompt.
pub const MAX_SYSTEM_PROMPT: usize = 100_000;
/// Largest `max_steps` of one turn.
pub const MAX_STEPS: u32 = 1000;
/// Most risky patterns / allowed domains.
pub const MAX_PATTERNS: usize = 64;

/// Why a profile is refused (the API answers 422 with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

fn bad(field: &'static str, message: impl Into<String>) -> ProfileError {
    ProfileError::Invalid {
        field,
        message: message.into(),
    }
}

/// A checked profile.
#[derive(Debug, Clone)]
pub struct Settings {
    pub profile: AgentProfileRecord,
    pub generation: Generation,
    pub risky: Vec<Regex>,
}

impl Settings {
    /// Checks every field of `p`.
    pub fn check(p: &AgentProfileRecord) -> Result<Settings, ProfileError> {
        let name = p.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(bad("name", "must be 1–100 characters"));
        }
        if p.system_prompt.chars().count() > MAX_SYSTEM_PROMPT {
            return Err(bad(
                "system_prompt",
                format!("longer than {MAX_SYSTEM_PROMPT} characters"),
            ));
        }
        let generation: Generation =
            serde_json::from_value(serde_json::Value::String(p.provider.generation.clone()))
                .map_err(|_| {
                    bad(
                        "provider.generation",
                        format!(
                            "unknown tool generation {:?} (expected one of: {})",
                            p.provider.generation,
                            Generation::all()
                                .iter()
                                .map(|g| g.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
        let model = p.provider.model.trim();
        if model.is_empty() || model.len() > 200 {
            return Err(bad("provider.model", "must be 1–200 characters"));
        }
        if !(1..=128_000).contains(&p.provider.max_tokens) {
            return Err(bad("provider.max_tokens", "must be 1–128000"));
        }
        if p.provider.max_retries > 10 {
            return Err(bad("provider.max_retries", "must be 0–10"));
        }
        if !(1..=3600).contains(&p.provider.timeout_secs) {
            return Err(bad("provider.timeout_secs", "must be 1–3600"));
        }
        if let Some(b) = &p.provider.base_url {
            let u = url::Url::parse(b)
                .map_err(|e| bad("provider.base_url", format!("not a URL: {e}")))?;
            if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                return Err(bad("provider.base_url", "must be an http(s) URL"));
            }
        }
        if let Some(t) = &p.provider.thinking {
            thinking(t, generation)?;
        }
        if let Some(env) = &p.provider.api_key_env
            && (env.is_empty() || !env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(bad(
                "provider.api_key_env",
                "must be an environment variable name (letters, digits, _)",
            ));
        }
        if !(1..=MAX_STEPS).contains(&p.max_steps) {
            return Err(bad("max_steps", format!("must be 1–{MAX_STEPS}")));
        }
        if !(2_000..=2_000_000).contains(&p.context_budget_tokens) {
            return Err(bad("context_budget_tokens", "must be 2000–2000000"));
        }
        if p.keep_images > 100 {
            return Err(bad("keep_images", "must be 0–100"));
        }
        if p.allowed_domains.len() > MAX_PATTERNS {
            return Err(bad("allowed_domains", format!("at most {MAX_PATTERNS}")));
        }
        for d in &p.allowed_domains {
            check_domain(d)?;
        }
        if let Some(u) = &p.start_url {
            let url = url::Url::parse(u).map_err(|e| bad("start_url", format!("{e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(bad("start_url", "must be an http(s) URL"));
            }
            let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
            if !p.allowed_domains.is_empty() && !domain_allowed(&p.allowed_domains, &host) {
                return Err(bad(
                    "start_url",
                    format!("host {host:?} is not in allowed_domains"),
                ));
            }
        }
        let h = &p.hitl;
        if !(10..=86_400).contains(&h.approval_timeout_secs) {
            return Err(bad("hitl.approval_timeout_secs", "must be 10–86400"));
        }
        if !(10..=86_400).contains(&h.input_timeout_secs) {
            return Err(bad("hitl.input_timeout_secs", "must be 10–86400"));
        }
        if !(1..=1000).contains(&h.checkpoint_every) {
            return Err(bad("hitl.checkpoint_every", "must be 1–1000"));
        }
        if !(1..=200).contains(&h.max_checkpoints) {
            return Err(bad("hitl.max_checkpoints", "must be 1–200"));
        }
        if h.corrections_in_context > 50 {
            return Err(bad("hitl.corrections_in_context", "must be 0–50"));
        }
        if p.risky_patterns.len() > MAX_PATTERNS {
            return Err(bad("risky_patterns", format!("at most {MAX_PATTERNS}")));
        }
        let risky = p
            .risky_patterns
            .iter()
            .map(|r| {
                regex::RegexBuilder::new(r)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| bad("risky_patterns", format!("{r:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Settings {
            profile: p.clone(),
            generation,
            risky,
        })
    }

    /// The provider client's spec for this profile, declaring a `display` of that size.
    pub fn provider_spec(&self, api_key: Option<ApiKey>, display: (u32, u32)) -> ProviderSpec {
        let p = &self.profile.provider;
        ProviderSpec {
            generation: self.generation,
            base_url: p
                .base_url
                .clone()
                .unwrap_or_else(|| self.generation.family().default_base_url().to_owned()),
            model: p.model.clone(),
            api_key,
            max_tokens: p.max_tokens,
            thinking: p
                .thinking
                .as_deref()
                .and_then(|t| thinking(t, self.generation).ok()),
            timeout: Duration::from_secs(u64::from(p.timeout_secs)),
            max_retries: p.max_retries,
            display,
            stream: true,
        }
    }

    /// The first risky pattern matching `description`, if any.
    pub fn risky_match(&self, description: &str) -> Option<&str> {
        self.risky
            .iter()
            .find(|r| r.is_match(description))
            .map(|r| r.as_str())
    }
}

fn thinking(t: &str, g: Generation) -> Result<Thinking, ProfileError> {
    if g.family() != zigral_llm::Family::Anthropic {
        return Err(bad(
            "provider.thinking",
            "only Anthropic generations take a thinking setting",
        ));
    }
    if t == "adaptive" {
        return Ok(Thinking::Adaptive { effort: None });
    }
    match t.parse::<u32>() {
        Ok(n) if n >= 1024 => Ok(Thinking::Budget(n)),
        _ => Err(bad(
            "provider.thinking",
            "must be \"adaptive\" or a token budget of at least 1024",
        )),
    }
}

fn check_domain(d: &str) -> Result<(), ProfileError> {
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if ok {
        Ok(())
    } else {
        Err(bad(
            "allowed_domains",
            format!("{d:?} is not a host name such as example.com"),
        ))
    }
}

/// Whether `host` equals an allowed domain or is a subdomain of one.
pub fn domain_allowed(allowed: &[String], host: &str) -> bool {
    allowed.iter().any(|d| {
        let d = d.to_ascii_lowercase();
        host == d || host.ends_with(&format!(".{d}"))
    })
}
