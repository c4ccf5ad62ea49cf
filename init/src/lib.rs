//! zigral-init: the appliance's PID 1 and host-mode service supervisor (services as TOML
//! data, templates such as `desktop@N`, readiness probes, restarts with backoff, ordered
//! shutdown, a JSON-lines control socket). std + nix, no async runtime.
//!
//! The control-socket protocol is documented in `init/PROTOCOL.md`.

pub mod cgroup;
pub mod cli;
pub mod config;
pub mod control;
pub mod guard;
pub mod logs;
pub mod pid1;
pub mod privilege;
pub mod probe;
pub mod spawn;
pub mod supervisor;
pub mod update;
pub mod vars;
