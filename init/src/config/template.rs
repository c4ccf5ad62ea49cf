//! Templates: the variables of instance N (`display`, `vnc_port`, `cdp_port` and the
//! template's `params`), and one instance (`desktop@N`) built from them: its concrete
//! services, limits and purge paths.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use zigral_init_protocol::{GroupLimits, check_param_value};

use super::schema::{PRIVATE_SPAN, Scalar, TemplateDef};
use super::spec::{GroupSpec, Instance};
use super::units::{parse_cpus, parse_group_memory, parse_pids};
use super::validate::{build_spec, valid_var_name};
use crate::vars::{Vars, expand};

/// Builds the variables for instance `n` of a template from the globals.
pub fn instance_vars(globals: &Vars, n: u32) -> Result<Vars, String> {
    let mut v = globals.clone();
    v.insert("N".into(), n.to_string());
    for (base, var) in [
        ("display_base", "display"),
        ("vnc_base", "vnc_port"),
        ("cdp_base", "cdp_port"),
    ] {
        let b: u64 = globals
            .get(base)
            .map(String::as_str)
            .unwrap_or("0")
            .parse()
            .map_err(|_| format!("variable {base} must be a number"))?;
        let val = b + u64::from(n);
        if var != "display" && val > 65535 {
            return Err(format!("{var} for instance {n} is {val}, above 65535"));
        }
        v.insert(var.into(), val.to_string());
    }
    Ok(v)
}

/// Refuses instance numbers whose ports would leave the private port ranges.
pub fn check_instance(n: u32, private_ports: bool) -> Result<(), String> {
    if private_ports && n >= u32::from(PRIVATE_SPAN) {
        return Err(format!(
            "instance {n} is out of range: with private_ports, instances are 0-{}",
            PRIVATE_SPAN - 1
        ));
    }
    Ok(())
}

/// A relative path without `..`, `.` or root components (a `purge` entry).
fn check_relative(p: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(p);
    if p.is_empty()
        || path
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(format!(
            "{p:?} must be a relative path inside the state dir (no leading /, no . or ..)"
        ));
    }
    Ok(path)
}

fn parse_limit<T>(
    v: &Option<Scalar>,
    what: &str,
    vars: &Vars,
    parse: fn(&str) -> Result<Option<T>, String>,
    ctx: &str,
    errs: &mut Vec<String>,
) -> Option<T> {
    let raw = v.as_ref()?;
    match expand(&raw.0, vars).and_then(|s| parse(&s)) {
        Ok(x) => x,
        Err(e) => {
            errs.push(format!("{ctx}: limits.{what}: {e}"));
            None
        }
    }
}

/// Instance `n` of `tpl` with the spawn's `params` (names must be declared, values must pass
/// [`check_param_value`]): its services, limits and purge paths. `global_names` are the global
/// service names a template service may depend on.
pub fn instantiate(
    tpl: &TemplateDef,
    n: u32,
    params: &BTreeMap<String, String>,
    globals: &Vars,
    state_dir: &Path,
    global_names: &BTreeSet<String>,
) -> Result<Instance, Vec<String>> {
    let mut errs = Vec::new();
    let tctx = format!("template {:?}", tpl.name);
    let mut vars = match instance_vars(globals, n) {
        Ok(v) => v,
        Err(e) => return Err(vec![format!("{tctx}: {e}")]),
    };
    // Declared params with their defaults, expanded with the instance's variables.
    let mut values = BTreeMap::new();
    for (k, default) in &tpl.params {
        if !valid_var_name(k) {
            errs.push(format!("{tctx}: params: bad name {k:?}"));
        } else if vars.contains_key(k) {
            errs.push(format!(
                "{tctx}: params: {k:?} has the name of a variable (params may not shadow one)"
            ));
        }
        match expand(&default.0, &vars) {
            Ok(v) => {
                values.insert(k.clone(), v);
            }
            Err(e) => errs.push(format!("{tctx}: params.{k}: {e}")),
        }
    }
    for (k, v) in params {
        if !tpl.params.contains_key(k) {
            errs.push(format!(
                "{tctx}: unknown param {k:?} (declared: {})",
                tpl.params.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        } else if let Err(e) = check_param_value(v) {
            errs.push(format!("param {k} = {v:?}: {e}"));
        } else {
            values.insert(k.clone(), v.clone());
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    vars.extend(values.iter().map(|(k, v)| (k.clone(), v.clone())));

    let l = &tpl.limits;
    let limits = GroupLimits {
        millicpus: parse_limit(&l.cpus, "cpus", &vars, parse_cpus, &tctx, &mut errs),
        memory: parse_limit(
            &l.memory,
            "memory",
            &vars,
            parse_group_memory,
            &tctx,
            &mut errs,
        ),
        pids: parse_limit(&l.pids, "pids", &vars, parse_pids, &tctx, &mut errs),
    };
    let mut purge = Vec::new();
    for p in &tpl.purge {
        match expand(p, &vars).and_then(|p| check_relative(&p)) {
            Ok(p) => purge.push(p),
            Err(e) => errs.push(format!("{tctx}: purge: {e}")),
        }
    }

    let group = format!("{}@{n}", tpl.name);
    let inner: BTreeSet<&str> = tpl.services.iter().map(|s| s.name.as_str()).collect();
    let mut services = Vec::new();
    for def in &tpl.services {
        let name = format!("{}@{n}", def.name);
        let ctx = format!("template {:?} service {:?}", tpl.name, def.name);
        let mut spec = build_spec(
            def,
            name,
            Some(group.clone()),
            &vars,
            state_dir,
            &ctx,
            &mut errs,
        );
        for a in &def.after {
            if inner.contains(a.as_str()) {
                spec.after.push(format!("{a}@{n}"));
            } else if global_names.contains(a) {
                spec.after.push(a.clone());
            } else {
                errs.push(format!(
                    "{ctx}: after: unknown service {a:?} (siblings: {}; globals: {})",
                    inner.iter().copied().collect::<Vec<_>>().join(", "),
                    global_names.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        services.push(spec);
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Instance {
        group: GroupSpec {
            name: group,
            template: tpl.name.clone(),
            instance: n,
            params: values,
            limits,
            purge,
        },
        services,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    use zigral_init_protocol::GroupLimits;

    use super::{check_instance, instantiate};
    use crate::config::{Overrides, ProbeKind, parse};

    const DESKTOP: &str = r#"
[settings]
private_ports = ["5900"]
[vars]
chromium = "chromium"
[[template]]
name = "desktop"
instances = [0]
params = { profile_dir = "desktops/${N}/chrome", cpus = "2", memory = "4G", pids = 4096 }
limits = { cpus = "${cpus}", memory = "${memory}", pids = "${pids}" }
purge = ["desktops/${N}"]
[[template.service]]
name = "chromium"
command = "${chromium}"
args = ["--user-data-dir=${state_dir}/${profile_dir}"]
mkdir = [{ path = "profiles", mode = "0711", owner = "root" },
         { path = "${profile_dir}", mode = "0700", recursive = true }]
[[template.service.files]]
path = "${profile_dir}/Default/Preferences"
content = "{}"
replace = false
"#;

    fn params(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn params_limits_and_purge() {
        let c = parse(DESKTOP, &Overrides::for_tests()).unwrap();
        let g = &c.groups[0];
        assert_eq!(g.name, "desktop@0");
        assert_eq!(
            g.params,
            params(&[
                ("cpus", "2"),
                ("memory", "4G"),
                ("pids", "4096"),
                ("profile_dir", "desktops/0/chrome")
            ])
        );
        assert_eq!(
            g.limits,
            GroupLimits {
                millicpus: Some(2000),
                memory: Some(4 << 30),
                pids: Some(4096),
            }
        );
        assert_eq!(g.purge, vec![PathBuf::from("desktops/0")]);
        let ch = c.services.iter().find(|s| s.name == "chromium@0").unwrap();
        assert_eq!(ch.args, vec!["--user-data-dir=/st/desktops/0/chrome"]);
        assert!(ch.mkdir[1].recursive && !ch.mkdir[0].recursive);
        assert!(!ch.files[0].replace);

        // A spawn's params override the defaults, in the services and in the limits.
        let tpl = &c.templates[0];
        let none = BTreeSet::new();
        let st = Path::new("/st");
        let i = instantiate(
            tpl,
            5,
            &params(&[("profile_dir", "profiles/u-7/chrome"), ("cpus", "0.5")]),
            &c.vars,
            st,
            &none,
        )
        .unwrap();
        assert_eq!(i.group.params["profile_dir"], "profiles/u-7/chrome");
        assert_eq!(i.group.limits.millicpus, Some(500));
        assert_eq!(i.group.purge, vec![PathBuf::from("desktops/5")]);
        let ch = &i.services[0];
        assert_eq!(ch.args, vec!["--user-data-dir=/st/profiles/u-7/chrome"]);
        assert_eq!(ch.mkdir[1].path, PathBuf::from("/st/profiles/u-7/chrome"));
        assert_eq!(
            ch.files[0].path,
            PathBuf::from("/st/profiles/u-7/chrome/Default/Preferences")
        );

        // Refused: an undeclared name, a value leaving the state dir, a limit out of range.
        for (kv, needle) in [
            (("home", "x"), "unknown param \"home\""),
            (("profile_dir", "../etc"), "profile_dir"),
            (("profile_dir", "/etc"), "profile_dir"),
            (("cpus", "0"), "limits.cpus"),
            (("memory", "1M"), "limits.memory"),
            (("pids", "0"), "limits.pids"),
        ] {
            let e = instantiate(tpl, 5, &params(&[kv]), &c.vars, st, &none)
                .unwrap_err()
                .join("; ");
            assert!(e.contains(needle), "{kv:?}: {e}");
        }
        assert!(check_instance(99, true).is_ok());
        assert!(check_instance(100, true).unwrap_err().contains("0-99"));
        assert!(check_instance(100, false).is_ok());
    }

    #[test]
    fn template_problems_are_reported_at_check_time() {
        let text = r#"
[vars]
color = "x"
[[template]]
name = "desktop"
instances = [0, 100]
params = { N = "1", color = "y", dir = "${nope}/x" }
limits = { cpus = "zero", memory = "1M", pids = "many", swap = "1G" }
purge = ["../up", "/abs", ""]
[[template.service]]
name = "a"
command = "${missing}"
"#;
        let o = Overrides::for_tests();
        let text = format!("[settings]\nprivate_ports = [\"5900\"]\n{text}");
        let all = parse(&text, &o).unwrap_err().0.join("\n");
        assert!(all.contains("swap"), "{all}");
        let text = text.replace(", swap = \"1G\"", "");
        let all = parse(&text, &o).unwrap_err().0.join("\n");
        for needle in [
            "instance 100 is out of range",
            "params: \"N\" has the name of a variable",
            "params: \"color\" has the name of a variable",
            "${nope}",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        // With the params fixed, the limits, purge paths and services are checked.
        let text = text.replace(
            "params = { N = \"1\", color = \"y\", dir = \"${nope}/x\" }",
            "params = { dir = \"d/${N}\" }",
        );
        let all = parse(&text, &o).unwrap_err().0.join("\n");
        for needle in [
            "limits.cpus",
            "limits.memory",
            "limits.pids",
            "purge: \"../up\"",
            "purge: \"/abs\"",
            "purge: \"\"",
            "${missing}",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
    }

    #[test]
    fn template_expands_with_overrides() {
        let text = r#"
[vars]
res = "1280x800x24"
[[template]]
name = "desktop"
instances = [0, 2]
[[template.service]]
name = "xvfb"
command = "Xvfb"
args = [":${display}", "-screen", "0", "${res}"]
ready = { x11 = ":${display}" }
[[template.service]]
name = "vnc"
command = "x11vnc"
args = ["-rfbport", "${vnc_port}"]
after = ["xvfb"]
[[service]]
name = "proxy"
command = "${bin_dir}/zigral"
after = ["desktop@0"]
"#;
        let mut o = Overrides::for_tests();
        o.set.push(("display_base".into(), "40".into()));
        o.env.push(("ZIGRAL_VNC_BASE".into(), "7000".into()));
        let c = parse(text, &o).unwrap();
        let x2 = c.services.iter().find(|s| s.name == "xvfb@2").unwrap();
        assert_eq!(x2.args, vec![":42", "-screen", "0", "1280x800x24"]);
        assert_eq!(
            x2.ready.as_ref().unwrap().kind,
            ProbeKind::X11 {
                display: 42,
                handshake: true
            }
        );
        let v2 = c.services.iter().find(|s| s.name == "vnc@2").unwrap();
        assert_eq!(v2.args, vec!["-rfbport", "7002"]);
        assert_eq!(v2.after, vec!["xvfb@2"]);
        let p = c.services.iter().find(|s| s.name == "proxy").unwrap();
        assert_eq!(p.command, "/bin/zigral");
        assert_eq!(p.after, vec!["xvfb@0", "vnc@0"]);
    }
}
