//! [`LlmError`]: what can go wrong talking to a provider, whether it is worth retrying, and a
//! plain-words sentence for the chat. No variant ever holds the API key (the client redacts
//! it from provider messages before building one).

/// An error of the LLM client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// The provider answered with an error status.
    #[error("provider error {status} {kind}: {message}")]
    Api {
        status: u16,
        /// The body's `error.type` (or `error.code`), else the documented type for the status.
        kind: String,
        message: String,
        request_id: Option<String>,
    },
    /// No complete answer within the spec's timeout.
    #[error("the provider did not answer in time")]
    Timeout,
    /// The connection could not be made (DNS, refused, TLS).
    #[error("could not connect: {0}")]
    Connect(String),
    /// The reply stream broke off or its SSE framing is broken.
    #[error("reply stream broken: {0}")]
    Stream(String),
    /// The provider reported an error in the middle of a streamed reply (`event: error`,
    /// `response.failed`, an `error` chunk).
    #[error("provider error mid-stream {kind}: {message}")]
    StreamError { kind: String, message: String },
    /// A body that does not parse as the family's wire format.
    #[error("undecodable reply: {0}")]
    Decode(String),
    /// The transcript cannot take this operation (a result for an unknown call, a missing one).
    #[error("transcript: {0}")]
    Transcript(String),
    /// The client could not be built (bad base URL, TLS setup).
    #[error("client setup: {0}")]
    Build(String),
    /// A retryable error persisted through every attempt.
    #[error("{last} (gave up after {attempts} attempts)")]
    GaveUp { attempts: u32, last: Box<LlmError> },
}

impl LlmError {
    /// Whether the SDK policy retries this error (without an `x-should-retry` header, which the
    /// client applies before building the error): 408, 409, 429, >= 500, timeouts, connection
    /// and stream breaks, and mid-stream `overloaded_error`/`api_error` (`server_error`,
    /// `rate_limit_exceeded` for OpenAI).
    pub fn retryable(&self) -> bool {
        match self {
            LlmError::Api { status, .. } => crate::retry::status_retryable(*status),
            LlmError::Timeout | LlmError::Connect(_) | LlmError::Stream(_) => true,
            LlmError::StreamError { kind, .. } => crate::retry::stream_error_retryable(kind),
            LlmError::Decode(_)
            | LlmError::Transcript(_)
            | LlmError::Build(_)
            | LlmError::GaveUp { .. } => false,
        }
    }

    /// The error itself, under any [`LlmError::GaveUp`].
    pub fn root(&self) -> &LlmError {
        match self {
            LlmError::GaveUp { last, .. } => last.root(),
            e => e,
        }
    }

    /// Whether the request was too long for the model's context window (a 400 saying so).
    pub fn is_context_exceeded(&self) -> bool {
        match self.root() {
            LlmError::Api {
                status: 400 | 413,
                kind,
                message,
                ..
            } => {
                let m = message.to_ascii_lowercase();
                kind == "context_length_exceeded"
                    || m.contains("prompt is too long")
                    || m.contains("context length")
                    || m.contains("context window")
                    || m.contains("too many tokens")
            }
            _ => false,
        }
    }

    /// One plain sentence for the chat, e.g. "The provider is overloaded (529); gave up after
    /// 3 attempts." Never includes the API key (nor, for 401/403, the provider's message).
    pub fn plain(&self) -> String {
        format!("{}.", self.plain_clause())
    }

    fn plain_clause(&self) -> String {
        match self {
            LlmError::Api {
                status,
                kind,
                message,
                ..
            } => {
                let msg = short(message);
                match (*status, kind.as_str()) {
                    (401, _) => "The API key was refused (401)".into(),
                    (403, _) => "The API key may not use this model or feature (403)".into(),
                    (402, _) => "The provider account has a billing problem (402)".into(),
                    (_, "overloaded_error") => format!("The provider is overloaded ({status})"),
                    (429, _) => "The provider's rate limit was reached (429)".into(),
                    (404, _) => format!("The model or endpoint was not found (404): {msg}"),
                    (408 | 504, _) => format!("The provider timed out ({status})"),
                    (413, _) => "The request was too large for the provider (413)".into(),
                    (s, _) if s >= 500 => format!("The provider had an internal error ({s})"),
                    (s, _) => format!("The provider rejected the request ({s}): {msg}"),
                }
            }
            LlmError::Timeout => "The provider did not answer in time".into(),
            LlmError::Connect(m) => format!("Could not reach the provider: {}", short(m)),
            LlmError::Stream(m) => format!("The reply stream broke off: {}", short(m)),
            LlmError::StreamError { kind, message } => match kind.as_str() {
                "overloaded_error" => "The provider is overloaded (mid-reply)".into(),
                _ => format!("The provider failed mid-reply ({kind}): {}", short(message)),
            },
            LlmError::Decode(m) => format!("The provider's reply could not be read: {}", short(m)),
            LlmError::Transcript(m) => format!("The conversation state is invalid: {}", short(m)),
            LlmError::Build(m) => format!("The LLM client could not be set up: {}", short(m)),
            LlmError::GaveUp { attempts, last } => {
                format!("{}; gave up after {attempts} attempts", last.plain_clause())
            }
        }
    }
}

/// At most 300 chars, without a trailing period (the sentence adds one).
fn short(s: &str) -> String {
    let s = s.trim().trim_end_matches('.');
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, kind: &str, message: &str) -> LlmError {
        LlmError::Api {
            status,
            kind: kind.into(),
            message: message.into(),
            request_id: None,
        }
    }

    #[test]
    fn plain_sentences() {
        let e = LlmError::GaveUp {
            attempts: 3,
            last: Box::new(api(529, "overloaded_error", "Overloaded")),
        };
        assert_eq!(
            e.plain(),
            "The provider is overloaded (529); gave up after 3 attempts."
        );
        assert!(!e.retryable());
        assert!(e.root().retryable());
        assert_eq!(
            api(401, "authentication_error", "invalid x-api-key sk-abc").plain(),
            "The API key was refused (401)."
        );
        assert_eq!(
            api(400, "invalid_request_error", "messages: bad.").plain(),
            "The provider rejected the request (400): messages: bad."
        );
        assert!(
            api(
                400,
                "invalid_request_error",
                "prompt is too long: 210000 tokens > 200000"
            )
            .is_context_exceeded()
        );
        assert!(!api(400, "invalid_request_error", "bad").is_context_exceeded());
    }

    #[test]
    fn retryable_kinds() {
        for s in [408, 409, 429, 500, 502, 529] {
            assert!(api(s, "x", "m").retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 413, 422] {
            assert!(!api(s, "x", "m").retryable(), "{s}");
        }
        let se = |k: &str| LlmError::StreamError {
            kind: k.into(),
            message: String::new(),
        };
        assert!(se("overloaded_error").retryable());
        assert!(se("api_error").retryable());
        assert!(!se("invalid_request_error").retryable());
        assert!(LlmError::Timeout.retryable());
        assert!(!LlmError::Decode("x".into()).retryable());
    }
}
