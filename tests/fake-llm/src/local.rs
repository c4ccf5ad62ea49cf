//! The fake in-process, for tests in Rust: served on a free loopback port by a tokio task that
//! stops when the handle drops, scripted and read over real HTTP like any other client.

use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::Config;

/// Why starting, scripting or reading the local fake failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot listen on a loopback port: {0}")]
    Listen(#[from] std::io::Error),
    #[error("request to the fake failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{what} answered {status}: {body}")]
    Status {
        what: String,
        status: u16,
        body: String,
    },
}

/// A fake serving in this process (aborted on drop).
pub struct LocalFake {
    base: String,
    http: reqwest::Client,
    task: JoinHandle<std::io::Result<()>>,
}

impl Drop for LocalFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LocalFake {
    /// Serves a fake with `config` on `127.0.0.1:0`. Installs ring as the process's rustls
    /// provider first (see [`zigral_llm::tls`]), so reqwest clients of the test work too.
    pub async fn start(config: Config) -> Result<LocalFake, LocalError> {
        zigral_llm::tls::install_default_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(crate::serve(listener, config));
        Ok(LocalFake {
            base,
            http: reqwest::Client::new(),
            task,
        })
    }

    /// `http://127.0.0.1:PORT` (a provider base URL, without `/v1`).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The HTTP client the handle uses, for the test's own requests.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Appends `steps` to the script (`POST /_script`); returns its answer.
    pub async fn script(&self, steps: Value) -> Result<Value, LocalError> {
        let r = self
            .http
            .post(format!("{}/_script", self.base))
            .json(&json!({ "steps": steps }))
            .send()
            .await?;
        Self::json("POST /_script", r).await
    }

    /// `GET path` of a control endpoint (`/_requests`, `/_violations`, `/_stats`).
    pub async fn get(&self, path: &str) -> Result<Value, LocalError> {
        let r = self.http.get(format!("{}{path}", self.base)).send().await?;
        Self::json(&format!("GET {path}"), r).await
    }

    async fn json(what: &str, r: reqwest::Response) -> Result<Value, LocalError> {
        let status = r.status();
        if !status.is_success() {
            return Err(LocalError::Status {
                what: what.to_string(),
                status: status.as_u16(),
                body: r.text().await.unwrap_or_default(),
            });
        }
        Ok(r.json().await?)
    }
}
