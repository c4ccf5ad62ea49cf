//! Services as data: the TOML schema, variable overrides (config < `ZIGRAL_*` env < `--set`),
//! validation that reports every problem at once, and expansion of services and template
//! instances into concrete [`ServiceSpec`]s.
//!
//! - `units`: durations, sizes, modes, signals and the other small value parsers;
//! - `schema`: the serde definitions of the file and their defaults;
//! - `spec`: the parsed, expanded types ([`Config`], [`ServiceSpec`], ...);
//! - `validate`: [`parse`] and [`load`], building specs and rejecting cycles;
//! - `template`: instance variables and template instantiation.

mod schema;
mod spec;
mod template;
pub mod units;
mod validate;

pub use schema::{
    DEFAULT_VARS, DirDef, DirFull, FileDef, GroupLimitsDef, LimitsDef, LogDef, PRIVATE_SPAN,
    Policy, ReadyDef, RestartDef, Scalar, ServiceDef, Settings, TemplateDef,
};
pub use spec::{
    Config, DirSpec, FileContent, FileSpec, GroupSpec, Instance, Limits, Overrides, Probe,
    ProbeKind, RestartSpec, ServiceSpec,
};
pub use template::{check_instance, instance_vars, instantiate};
pub use units::{
    Dur, MIN_GROUP_MEMORY, MIN_MILLICPUS, Size, check_group_limits, parse_cpus, parse_group_memory,
    parse_mode, parse_pids, parse_signal,
};
pub use validate::{ConfigErrors, load, parse, valid_user_name};
