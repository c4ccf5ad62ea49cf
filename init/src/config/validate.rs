//! Validation and expansion: parses the TOML, applies variable overrides, checks names and
//! values (reporting every problem at once), expands services and template instances into
//! [`ServiceSpec`]s and rejects dependency cycles.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::Deserialize;

use super::schema::{DEFAULT_VARS, DirDef, PRIVATE_SPAN, ServiceDef, Settings, TemplateDef};
use super::spec::{
    Config, DirSpec, FileContent, FileSpec, GroupSpec, Limits, Overrides, Probe, ProbeKind,
    RestartSpec, ServiceSpec,
};
use super::template::{check_instance, instantiate};
use super::units::{check_addr, parse_http, parse_mode, parse_signal, parse_x11_display};
use crate::vars::{Vars, expand};

/// Every problem found in a configuration file (never empty).
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} problem(s) in the configuration:", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

const TOP_KEYS: &[&str] = &["settings", "vars", "service", "template"];
const RESERVED_VARS: &[&str] = &[
    "state_dir",
    "bin_dir",
    "N",
    "display",
    "vnc_port",
    "cdp_port",
];

/// How an array entry is named in messages: `service "web"`, or `service #3` without a name.
fn item_label(item: &toml::Value, kind: &str, index: usize) -> String {
    match item.get("name").and_then(|n| n.as_str()) {
        Some(n) => format!("{kind} {n:?}"),
        None => format!("{kind} #{}", index + 1),
    }
}

/// A user name `useradd` accepts (and nothing that could look like an option).
pub fn valid_user_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// A variable name (`[vars]` keys and template `params`): letters, digits, `-` and `_`.
pub(super) fn valid_var_name(s: &str) -> bool {
    valid_name(s)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Expands and parses one service definition. `qualify` maps a name in `after` to the
/// concrete service name(s). Problems are pushed to `errs` prefixed with `ctx`.
pub(super) fn build_spec(
    def: &ServiceDef,
    name: String,
    group: Option<String>,
    vars: &Vars,
    state_dir: &Path,
    ctx: &str,
    errs: &mut Vec<String>,
) -> ServiceSpec {
    let mut x = |s: &str, what: &str| -> String {
        match expand(s, vars) {
            Ok(v) => v,
            Err(e) => {
                errs.push(format!("{ctx}: {what}: {e}"));
                s.to_string()
            }
        }
    };
    let command = x(&def.command, "command");
    let args: Vec<String> = def.args.iter().map(|a| x(a, "args")).collect();
    let env: Vec<(String, String)> = def
        .env
        .iter()
        .map(|(k, v)| (k.clone(), x(v, &format!("env.{k}"))))
        .collect();
    let cwd = def.cwd.as_ref().map(|c| PathBuf::from(x(c, "cwd")));
    let mut mode_errs: Vec<String> = Vec::new();
    fn mode_of(
        m: &Option<String>,
        what: &str,
        max: u32,
        default: u32,
        ctx: &str,
        errs: &mut Vec<String>,
    ) -> u32 {
        match m {
            None => default,
            Some(m) => parse_mode(m, max).unwrap_or_else(|e| {
                errs.push(format!("{ctx}: {what}: {e}"));
                default
            }),
        }
    }
    let mut mkdir: Vec<DirSpec> = Vec::new();
    for d in &def.mkdir {
        let spec = match d {
            DirDef::Path(p) => DirSpec {
                path: state_dir.join(x(p, "mkdir")),
                mode: None,
                owner: None,
                group: None,
                recursive: false,
            },
            DirDef::Full(f) => DirSpec {
                path: state_dir.join(x(&f.path, "mkdir.path")),
                mode: f.mode.as_ref().map(|m| {
                    mode_of(
                        &Some(m.clone()),
                        "mkdir.mode",
                        0o7777,
                        0o755,
                        ctx,
                        &mut mode_errs,
                    )
                }),
                owner: f.owner.as_ref().map(|o| x(o, "mkdir.owner")),
                group: f.group.as_ref().map(|g| x(g, "mkdir.group")),
                recursive: f.recursive,
            },
        };
        mkdir.push(spec);
    }
    let mut files: Vec<FileSpec> = Vec::new();
    for f in &def.files {
        let path = state_dir.join(x(&f.path, "files.path"));
        let content = match (&f.content, &f.xauthority) {
            (Some(c), None) => FileContent::Text(x(c, "files.content")),
            (None, Some(d)) => match parse_x11_display(&x(d, "files.xauthority")) {
                Ok(n) => FileContent::Xauthority(n),
                Err(e) => {
                    mode_errs.push(format!("{ctx}: files.xauthority: {e}"));
                    FileContent::Xauthority(0)
                }
            },
            _ => {
                mode_errs.push(format!(
                    "{ctx}: files {}: needs exactly one of content and xauthority",
                    f.path
                ));
                FileContent::Text(String::new())
            }
        };
        let xauth = matches!(content, FileContent::Xauthority(_));
        files.push(FileSpec {
            path,
            replace: f.replace || xauth,
            mode: mode_of(
                &f.mode,
                "files.mode",
                0o7777,
                if xauth { 0o640 } else { 0o644 },
                ctx,
                &mut mode_errs,
            ),
            owner: f.owner.as_ref().map(|o| x(o, "files.owner")),
            group: f.group.as_ref().map(|g| x(g, "files.group")),
            content,
        });
    }
    let umask = def
        .umask
        .as_ref()
        .map(|m| mode_of(&Some(m.clone()), "umask", 0o777, 0o022, ctx, &mut mode_errs));
    let user = def.user.as_ref().map(|u| x(u, "user"));
    let group_name = def.group.as_ref().map(|g| x(g, "group"));
    let ready_raw = def.ready.as_ref().map(|r| {
        (
            r.path.as_ref().map(|p| x(p, "ready.path")),
            r.tcp.as_ref().map(|p| x(p, "ready.tcp")),
            r.http.as_ref().map(|p| x(p, "ready.http")),
            r.x11.as_ref().map(|p| x(p, "ready.x11")),
        )
    });

    if command.trim().is_empty() {
        errs.push(format!("{ctx}: command is empty"));
    }
    for (k, _) in &env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            errs.push(format!("{ctx}: bad environment variable name {k:?}"));
        }
    }
    let stop_signal = parse_signal(&def.stop_signal).unwrap_or_else(|e| {
        errs.push(format!("{ctx}: stop_signal: {e}"));
        Signal::SIGTERM
    });
    let ready = match (&def.ready, ready_raw) {
        (Some(r), Some((path, tcp, http, x11))) => {
            let n = [path.is_some(), tcp.is_some(), http.is_some(), x11.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            let kind = if n != 1 {
                errs.push(format!(
                    "{ctx}: ready needs exactly one of path, tcp, http, x11 (found {n})"
                ));
                None
            } else if let Some(p) = path {
                Some(ProbeKind::Path(state_dir.join(p)))
            } else if let Some(a) = tcp {
                if let Err(e) = check_addr(&a) {
                    errs.push(format!("{ctx}: ready.tcp: {e}"));
                }
                Some(ProbeKind::Tcp {
                    addr: a,
                    expect: r.expect.as_ref().map(|e| e.as_bytes().to_vec()),
                })
            } else if let Some(u) = http {
                match parse_http(&u) {
                    Ok((addr, host, path)) => Some(ProbeKind::Http { addr, host, path }),
                    Err(e) => {
                        errs.push(format!("{ctx}: ready.http: {e}"));
                        None
                    }
                }
            } else if let Some(d) = x11 {
                match parse_x11_display(&d) {
                    Ok(n) => Some(ProbeKind::X11 {
                        display: n,
                        handshake: r.handshake.unwrap_or(true),
                    }),
                    Err(e) => {
                        errs.push(format!("{ctx}: ready.x11: {e}"));
                        None
                    }
                }
            } else {
                None
            };
            if r.handshake.is_some() && r.x11.is_none() {
                errs.push(format!(
                    "{ctx}: ready.handshake only applies to an x11 probe"
                ));
            }
            if r.expect.is_some() && r.tcp.is_none() {
                errs.push(format!("{ctx}: ready.expect only applies to a tcp probe"));
            }
            let interval = r.interval.map(|d| d.0).unwrap_or(Duration::from_millis(50));
            if interval.is_zero() {
                errs.push(format!("{ctx}: ready.interval must be above zero"));
            }
            kind.map(|kind| Probe {
                kind,
                timeout: r.timeout.map(|d| d.0).unwrap_or(Duration::from_secs(30)),
                interval,
            })
        }
        _ => None,
    };
    let rs = &def.restart;
    if rs.backoff_initial.0 > rs.backoff_max.0 {
        errs.push(format!(
            "{ctx}: restart.backoff_initial ({:?}) is above restart.backoff_max ({:?})",
            rs.backoff_initial.0, rs.backoff_max.0
        ));
    }
    let l = &def.limits;
    let mut rlimits = Vec::new();
    use nix::sys::resource::Resource;
    if let Some(n) = l.nofile {
        rlimits.push((Resource::RLIMIT_NOFILE, n));
    }
    if let Some(n) = l.nproc {
        rlimits.push((Resource::RLIMIT_NPROC, n));
    }
    if let Some(n) = l.core {
        rlimits.push((Resource::RLIMIT_CORE, n.0));
    }
    if let Some(n) = l.stack {
        rlimits.push((Resource::RLIMIT_STACK, n.0));
    }
    if let Some(n) = l.address_space {
        rlimits.push((Resource::RLIMIT_AS, n.0));
    }
    if let Some(c) = l.cpus
        && !(c > 0.0 && c <= 1024.0)
    {
        errs.push(format!("{ctx}: limits.cpus must be above 0 (got {c})"));
    }
    if let Some(m) = l.memory
        && m.0 < (1 << 20)
    {
        errs.push(format!("{ctx}: limits.memory must be at least 1M"));
    }
    if def.log.max_size.0 < 4096 {
        errs.push(format!("{ctx}: log.max_size must be at least 4K"));
    }
    errs.append(&mut mode_errs);
    if let Some(u) = &user
        && u.is_empty()
    {
        errs.push(format!("{ctx}: user is empty"));
    }
    if def.create_user {
        match &user {
            None => errs.push(format!("{ctx}: create_user needs a user")),
            Some(u) if !valid_user_name(u) => {
                errs.push(format!("{ctx}: user {u:?} is not a valid name to create"))
            }
            _ => {}
        }
    }
    ServiceSpec {
        name,
        group,
        command,
        args,
        env,
        cwd,
        user,
        group_name,
        create_user: def.create_user,
        umask,
        after: Vec::new(),
        ready,
        restart: RestartSpec {
            policy: rs.policy,
            backoff_initial: rs.backoff_initial.0,
            backoff_max: rs.backoff_max.0,
            stable: rs.stable.0,
            limit: rs.limit,
        },
        stop_signal,
        stop_timeout: def.stop_timeout.0,
        limits: Limits {
            rlimits,
            cpus: l.cpus,
            memory: l.memory.map(|m| m.0),
        },
        log: def.log.clone(),
        autostart: def.autostart,
        restart_with_deps: def.restart_with_deps,
        mkdir,
        files,
    }
}

/// Finds a dependency cycle among `services` and returns it as `a -> b -> a`.
fn find_cycles(services: &[(String, Vec<String>)]) -> Vec<String> {
    let idx: BTreeMap<&str, usize> = services
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.as_str(), i))
        .collect();
    // 0 = unvisited, 1 = on stack, 2 = done
    let mut color = vec![0u8; services.len()];
    let mut found: Vec<String> = Vec::new();
    let mut seen_cycles: BTreeSet<BTreeSet<String>> = BTreeSet::new();
    fn dfs(
        i: usize,
        services: &[(String, Vec<String>)],
        idx: &BTreeMap<&str, usize>,
        color: &mut [u8],
        stack: &mut Vec<usize>,
        found: &mut Vec<String>,
        seen: &mut BTreeSet<BTreeSet<String>>,
    ) {
        color[i] = 1;
        stack.push(i);
        for d in &services[i].1 {
            let Some(&j) = idx.get(d.as_str()) else {
                continue;
            };
            if color[j] == 1 {
                let pos = stack.iter().position(|&k| k == j).unwrap_or(0);
                let names: Vec<String> = stack[pos..]
                    .iter()
                    .map(|&k| services[k].0.clone())
                    .collect();
                let key: BTreeSet<String> = names.iter().cloned().collect();
                if seen.insert(key) {
                    let mut path = names.join(" -> ");
                    path.push_str(" -> ");
                    path.push_str(&services[j].0);
                    found.push(path);
                }
            } else if color[j] == 0 {
                dfs(j, services, idx, color, stack, found, seen);
            }
        }
        stack.pop();
        color[i] = 2;
    }
    for i in 0..services.len() {
        if color[i] == 0 {
            let mut stack = Vec::new();
            dfs(
                i,
                services,
                &idx,
                &mut color,
                &mut stack,
                &mut found,
                &mut seen_cycles,
            );
        }
    }
    found
}

/// Parses, overrides, validates and expands `text`. Every problem is reported.
pub fn parse(text: &str, ov: &Overrides) -> Result<Config, ConfigErrors> {
    let mut errs: Vec<String> = Vec::new();
    let root: toml::Table = match text.parse::<toml::Table>() {
        Ok(t) => t,
        Err(e) => return Err(ConfigErrors(vec![format!("TOML syntax: {e}")])),
    };
    for k in root.keys() {
        if !TOP_KEYS.contains(&k.as_str()) {
            errs.push(format!(
                "unknown top-level key `{k}` (expected one of: {})",
                TOP_KEYS.join(", ")
            ));
        }
    }
    let settings: Settings = match root.get("settings") {
        None => Settings::default(),
        Some(v) => Settings::deserialize(v.clone()).unwrap_or_else(|e| {
            errs.push(format!("[settings]: {}", e.message()));
            Settings::default()
        }),
    };

    // Variables: built-in defaults < [vars] < ZIGRAL_* env < --set.
    let mut vars = Vars::new();
    for (k, v) in DEFAULT_VARS {
        vars.insert((*k).into(), (*v).into());
    }
    if let Some(v) = root.get("vars") {
        match v.as_table() {
            Some(t) => {
                for (k, v) in t {
                    if RESERVED_VARS.contains(&k.as_str()) {
                        errs.push(format!("[vars]: `{k}` is a built-in variable"));
                        continue;
                    }
                    if !valid_name(k) {
                        errs.push(format!("[vars]: bad variable name {k:?}"));
                        continue;
                    }
                    let s = match v {
                        toml::Value::String(s) => s.clone(),
                        toml::Value::Integer(i) => i.to_string(),
                        toml::Value::Float(f) => f.to_string(),
                        toml::Value::Boolean(b) => b.to_string(),
                        _ => {
                            errs.push(format!("[vars]: `{k}` must be a string, number or boolean"));
                            continue;
                        }
                    };
                    vars.insert(k.clone(), s);
                }
            }
            None => errs.push("[vars] must be a table".into()),
        }
    }
    let declared: BTreeSet<String> = vars.keys().cloned().collect();
    if let Some(path) = &settings.local_vars {
        local_vars(Path::new(path), &declared, &mut vars, &mut errs);
    }
    for (k, v) in &ov.env {
        let Some(rest) = k.strip_prefix("ZIGRAL_") else {
            continue;
        };
        let key = rest.to_ascii_lowercase();
        if declared.contains(&key) {
            vars.insert(key, v.clone());
        }
    }
    for (k, v) in &ov.set {
        if declared.contains(k) {
            vars.insert(k.clone(), v.clone());
        } else {
            errs.push(format!(
                "--set {k}: unknown variable (declared: {})",
                declared.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    for base in ["display_base", "vnc_base", "cdp_base"] {
        if let Some(v) = vars.get(base)
            && v.parse::<u16>().is_err()
        {
            errs.push(format!("variable {base} = {v:?} must be a number 0-65535"));
        }
    }
    let state_dir: PathBuf = if let Some(p) = &ov.state_dir {
        p.clone()
    } else if let Some(p) = &settings.state_dir {
        PathBuf::from(p)
    } else if let Some((_, p)) = ov.env.iter().find(|(k, _)| k == "ZIGRAL_STATE_DIR") {
        PathBuf::from(p)
    } else {
        ov.default_state_dir.clone()
    };
    vars.insert("state_dir".into(), state_dir.display().to_string());
    vars.insert("bin_dir".into(), ov.bin_dir.display().to_string());

    let socket = match &settings.socket {
        Some(s) => match expand(s, &vars) {
            Ok(s) => PathBuf::from(s),
            Err(e) => {
                errs.push(format!("[settings] socket: {e}"));
                state_dir.join("init.sock")
            }
        },
        None => state_dir.join("init.sock"),
    };
    if let Some(m) = &settings.ready_message
        && let Err(e) = expand(m, &vars)
    {
        errs.push(format!("[settings] ready_message: {e}"));
    }
    let mut private_ports = Vec::new();
    for p in &settings.private_ports {
        match expand(p, &vars).map(|v| v.trim().parse::<u16>()) {
            Ok(Ok(first)) if first > 0 && first <= u16::MAX - PRIVATE_SPAN => {
                private_ports.push((first, first + (PRIVATE_SPAN - 1)));
            }
            Ok(_) => errs.push(format!(
                "[settings] private_ports: {p:?} must be a port number 1-{}",
                u16::MAX - PRIVATE_SPAN
            )),
            Err(e) => errs.push(format!("[settings] private_ports: {e}")),
        }
    }
    if let Some(u) = &settings.state_user
        && !valid_user_name(u)
    {
        errs.push(format!("[settings] state_user: bad user name {u:?}"));
    }

    // Services.
    let mut defs: Vec<ServiceDef> = Vec::new();
    match root.get("service") {
        None => {}
        Some(toml::Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let label = item_label(item, "service", i);
                match ServiceDef::deserialize(item.clone()) {
                    Ok(d) => defs.push(d),
                    Err(e) => errs.push(format!("{label}: {}", e.message())),
                }
            }
        }
        Some(_) => errs.push("`service` must be an array of tables ([[service]])".into()),
    }
    let mut templates: Vec<TemplateDef> = Vec::new();
    match root.get("template") {
        None => {}
        Some(toml::Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let label = item_label(item, "template", i);
                // Deserialize services one by one so each bad one is reported.
                let mut item = item.clone();
                let svcs = item
                    .as_table_mut()
                    .and_then(|t| t.remove("service"))
                    .unwrap_or(toml::Value::Array(vec![]));
                let mut tpl = match TemplateDef::deserialize(item) {
                    Ok(t) => t,
                    Err(e) => {
                        errs.push(format!("{label}: {}", e.message()));
                        continue;
                    }
                };
                match svcs {
                    toml::Value::Array(list) => {
                        for (j, s) in list.iter().enumerate() {
                            let sl = item_label(s, "service", j);
                            match ServiceDef::deserialize(s.clone()) {
                                Ok(d) => tpl.services.push(d),
                                Err(e) => errs.push(format!("{label} {sl}: {}", e.message())),
                            }
                        }
                    }
                    _ => errs.push(format!(
                        "{label}: `service` must be an array of tables ([[template.service]])"
                    )),
                }
                templates.push(tpl);
            }
        }
        Some(_) => errs.push("`template` must be an array of tables ([[template]])".into()),
    }

    // Names.
    let mut global_names: BTreeSet<String> = BTreeSet::new();
    for d in &defs {
        if !valid_name(&d.name) {
            errs.push(format!(
                "service {:?}: bad name (letters, digits, - and _ only)",
                d.name
            ));
        }
        if !global_names.insert(d.name.clone()) {
            errs.push(format!("duplicate service name {:?}", d.name));
        }
    }
    let mut tnames = BTreeSet::new();
    for t in &templates {
        if !valid_name(&t.name) {
            errs.push(format!("template {:?}: bad name", t.name));
        }
        if !tnames.insert(t.name.clone()) {
            errs.push(format!("duplicate template name {:?}", t.name));
        }
        let mut inner = BTreeSet::new();
        for s in &t.services {
            if !valid_name(&s.name) {
                errs.push(format!(
                    "template {:?} service {:?}: bad name (letters, digits, - and _ only)",
                    t.name, s.name
                ));
            }
            if !inner.insert(s.name.clone()) {
                errs.push(format!(
                    "template {:?}: duplicate service name {:?}",
                    t.name, s.name
                ));
            }
            if global_names.contains(&s.name) {
                errs.push(format!(
                    "template {:?} service {:?} has the same name as a global service",
                    t.name, s.name
                ));
            }
        }
        if t.services.is_empty() {
            errs.push(format!("template {:?} has no services", t.name));
        }
        let mut seen = BTreeSet::new();
        for n in &t.instances {
            if !seen.insert(n) {
                errs.push(format!("template {:?}: instance {n} listed twice", t.name));
            }
        }
    }

    // Expand template instances listed in the file (with the params' defaults).
    let mut services: Vec<ServiceSpec> = Vec::new();
    let mut inst_services: Vec<ServiceSpec> = Vec::new();
    let mut group_specs: Vec<GroupSpec> = Vec::new();
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let no_params = BTreeMap::new();
    for t in &templates {
        for n in &t.instances {
            if let Err(e) = check_instance(*n, !private_ports.is_empty()) {
                errs.push(format!("template {:?}: instances: {e}", t.name));
            }
        }
        // Validate with instance 0 even when none is listed.
        if t.instances.is_empty()
            && let Err(e) = instantiate(t, 0, &no_params, &vars, &state_dir, &global_names)
        {
            errs.extend(e);
        }
        for (k, n) in t.instances.iter().enumerate() {
            match instantiate(t, *n, &no_params, &vars, &state_dir, &global_names) {
                Ok(inst) => {
                    groups.insert(
                        inst.group.name.clone(),
                        inst.services.iter().map(|s| s.name.clone()).collect(),
                    );
                    inst_services.extend(inst.services);
                    group_specs.push(inst.group);
                }
                Err(e) => {
                    // Report template problems once, not per instance.
                    if k == 0 {
                        errs.extend(e);
                    }
                }
            }
        }
    }
    let inst_names: BTreeSet<String> = inst_services.iter().map(|s| s.name.clone()).collect();
    for d in &defs {
        let ctx = format!("service {:?}", d.name);
        let mut spec = build_spec(d, d.name.clone(), None, &vars, &state_dir, &ctx, &mut errs);
        for a in &d.after {
            if global_names.contains(a) || inst_names.contains(a) {
                spec.after.push(a.clone());
            } else if let Some(members) = groups.get(a) {
                spec.after.extend(members.iter().cloned());
            } else {
                errs.push(format!("{ctx}: after: unknown service {a:?}"));
            }
        }
        services.push(spec);
    }
    services.extend(inst_services);

    let graph: Vec<(String, Vec<String>)> = services
        .iter()
        .map(|s| (s.name.clone(), s.after.clone()))
        .collect();
    for c in find_cycles(&graph) {
        errs.push(format!("dependency cycle: {c}"));
    }

    if errs.is_empty() {
        Ok(Config {
            settings,
            vars,
            state_dir,
            socket,
            services,
            groups: group_specs,
            templates,
            private_ports,
        })
    } else {
        Err(ConfigErrors(errs))
    }
}

/// Applies `[settings] local_vars`: the `[vars]` of a machine-local file (if it exists) over
/// the config's, for declared variables only.
fn local_vars(path: &Path, declared: &BTreeSet<String>, vars: &mut Vars, errs: &mut Vec<String>) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            errs.push(format!("local_vars {}: {e}", path.display()));
            return;
        }
    };
    let root: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            errs.push(format!("local_vars {}: {}", path.display(), e.message()));
            return;
        }
    };
    for k in root.keys().filter(|k| k.as_str() != "vars") {
        errs.push(format!(
            "local_vars {}: only a [vars] table belongs here, not `{k}`",
            path.display()
        ));
    }
    let Some(t) = root.get("vars").and_then(|v| v.as_table()) else {
        return;
    };
    for (k, v) in t {
        if !declared.contains(k) {
            errs.push(format!(
                "local_vars {}: unknown variable `{k}` (declared: {})",
                path.display(),
                declared.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
            continue;
        }
        match v {
            toml::Value::String(s) => vars.insert(k.clone(), s.clone()),
            toml::Value::Integer(i) => vars.insert(k.clone(), i.to_string()),
            toml::Value::Boolean(b) => vars.insert(k.clone(), b.to_string()),
            _ => {
                errs.push(format!(
                    "local_vars {}: `{k}` must be a string, integer or boolean",
                    path.display()
                ));
                continue;
            }
        };
    }
}

/// Reads and parses the file at `path`.
pub fn load(path: &Path, ov: &Overrides) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors(vec![format!("cannot read {}: {e}", path.display())]))?;
    parse(&text, ov)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_vars_override_the_file_and_are_checked() {
        let dir = std::env::temp_dir().join(format!("zigral-local-vars-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let local = dir.join("local.toml");
        let text = |p: &Path| {
            format!(
                "[settings]\nlocal_vars = \"{}\"\n[vars]\nbind = \"0.0.0.0\"\n[[service]]\nname = \"a\"\ncommand = \"/bin/echo\"\nargs = [\"${{bind}}\"]\n",
                p.display()
            )
        };
        let ov = Overrides::for_tests();
        // No file: the config's value.
        let c = parse(&text(&local), &ov).unwrap();
        assert_eq!(c.services[0].args, ["0.0.0.0"]);
        std::fs::write(&local, "[vars]\nbind = \"127.0.0.1\"\n").unwrap();
        let c = parse(&text(&local), &ov).unwrap();
        assert_eq!(c.services[0].args, ["127.0.0.1"]);
        // The environment still wins over the local file.
        let mut env_ov = Overrides::for_tests();
        env_ov.env = vec![("ZIGRAL_BIND".into(), "10.0.0.1".into())];
        assert_eq!(
            parse(&text(&local), &env_ov).unwrap().services[0].args,
            ["10.0.0.1"]
        );
        std::fs::write(&local, "[vars]\nbnid = \"x\"\n[settings]\n").unwrap();
        let e = parse(&text(&local), &ov).unwrap_err().to_string();
        assert!(e.contains("unknown variable `bnid`"), "{e}");
        assert!(e.contains("only a [vars] table"), "{e}");
        std::fs::write(&local, "[vars\n").unwrap();
        assert!(parse(&text(&local), &ov).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reports_every_problem() {
        let text = r#"
bogus = 1
[[service]]
name = "a"
command = "true"
restrat = { policy = "always" }
[[service]]
name = "b"
command = "true"
stop_timeout = "ten seconds"
[[service]]
name = "c"
command = "true"
after = ["d", "ghost"]
[[service]]
name = "d"
command = "${nope}"
after = ["c"]
[[service]]
name = "d"
command = "true"
stop_signal = "SIGWHAT"
[[service]]
name = "e"
command = "true"
after = ["f"]
[[service]]
name = "f"
command = "true"
after = ["e"]
"#;
        let e = parse(text, &Overrides::for_tests()).unwrap_err().0;
        let all = e.join("\n");
        for needle in [
            "bogus",
            "restrat",
            "ten seconds",
            "ghost",
            "${nope}",
            "duplicate service name \"d\"",
            "SIGWHAT",
            "dependency cycle: e -> f -> e",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
    }
}
