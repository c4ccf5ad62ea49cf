//! Templates: the variables of instance N (`display`, `vnc_port`, `cdp_port`) and the
//! concrete services of one instance (`desktop@N`).

use std::collections::BTreeSet;
use std::path::Path;

use super::schema::TemplateDef;
use super::spec::ServiceSpec;
use super::validate::build_spec;
use crate::vars::Vars;

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

/// Concrete services of instance `n` of `tpl`. `globals_names` are the global service names
/// a template service may depend on.
pub fn instantiate(
    tpl: &TemplateDef,
    n: u32,
    globals: &Vars,
    state_dir: &Path,
    global_names: &BTreeSet<String>,
) -> Result<Vec<ServiceSpec>, Vec<String>> {
    let mut errs = Vec::new();
    let vars = match instance_vars(globals, n) {
        Ok(v) => v,
        Err(e) => return Err(vec![format!("template {:?}: {e}", tpl.name)]),
    };
    let group = format!("{}@{n}", tpl.name);
    let inner: BTreeSet<&str> = tpl.services.iter().map(|s| s.name.as_str()).collect();
    let mut out = Vec::new();
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
        out.push(spec);
    }
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}

#[cfg(test)]
mod tests {
    use crate::config::{Overrides, ProbeKind, parse};

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
