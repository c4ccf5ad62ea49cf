//! The process's rustls crypto provider. zigral-llm builds reqwest with rustls but without
//! aws-lc (`rustls-no-provider`: ring only, no C toolchain dependency), and cargo unifies that
//! feature for every crate in a build: any `reqwest::Client` built in such a process —
//! including the tests' own HTTP clients — needs a process default provider first, or
//! reqwest panics ("No rustls crypto provider is configured"). Call
//! [`install_default_provider`] once at start-up (the appliance's `main` does; tests and
//! benches that build reqwest clients do too).

/// Installs ring as the process-wide rustls provider; a no-op when one is installed already.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
