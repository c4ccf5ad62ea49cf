//! The fake LLM provider (`zigral-fake-llm`, its own binary) as a test fixture: started once
//! on a port-0 listener, scripted with `POST /_script`, inspected with `GET /_requests` and
//! `GET /_violations`, killed on drop.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::Proc;
use crate::api::http;

/// A running fake provider.
pub struct FakeLlm {
    pub port: u16,
    /// The API key it accepts.
    pub key: String,
    _proc: Proc,
}

impl FakeLlm {
    /// Starts the fake provider accepting `key`.
    pub fn start(key: &str) -> FakeLlm {
        let mut cmd = Command::new(crate::bin("zigral-fake-llm"));
        cmd.args(["--listen", "127.0.0.1:0", "--api-key", key])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut p = Proc::spawn(cmd);
        let out = p.child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(out)
            .read_line(&mut line)
            .expect("read the fake provider's first line");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from zigral-fake-llm: {line:?}"));
        FakeLlm {
            port,
            key: key.to_owned(),
            _proc: p,
        }
    }

    /// `http://127.0.0.1:PORT` (the profile's `base_url`).
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, text) = http(self.port, method, path, None, body).expect("fake provider");
        assert!(
            (200..300).contains(&status),
            "{method} {path} -> {status} {text}"
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Replaces the script with `steps`.
    pub fn script(&self, steps: Value) {
        self.call("DELETE", "/_script", None);
        self.call("POST", "/_script", Some(&json!({ "steps": steps })));
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Value> {
        match self.call("GET", "/_requests", None) {
            Value::Array(a) => a,
            other => other
                .get("requests")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// Every validation failure so far.
    pub fn violations(&self) -> Vec<Value> {
        match self.call("GET", "/_violations", None) {
            Value::Array(a) => a,
            other => other
                .get("violations")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        }
    }
}
