//! Variable templating for service definitions: `${name}` substitution; `$${` yields a literal
//! `${` and any other `$` is kept as is (so shell snippets like `$$` or `$HOME` pass through).

use std::collections::BTreeMap;

/// The variables visible to one service: globals plus, for template instances, `N`,
/// `display`, `vnc_port` and `cdp_port`.
pub type Vars = BTreeMap<String, String>;

/// Expands `${name}` references in `s`. `$${` yields a literal `${`; any other `$` is kept
/// as is. Returns every unknown or malformed reference as an error message.
pub fn expand(s: &str, vars: &Vars) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut unknown: Vec<String> = Vec::new();
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            match tail.find('}') {
                Some(end) => {
                    let name = &tail[..end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => unknown.push(format!("${{{name}}}")),
                    }
                    rest = &tail[end + 1..];
                }
                None => {
                    return Err(format!("unterminated `${{` in {s:?}"));
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if unknown.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "unknown variable {} in {s:?} (known: {})",
            unknown.join(", "),
            vars.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        let mut v = Vars::new();
        v.insert("display".into(), "5".into());
        v.insert("state_dir".into(), "/s".into());
        v
    }

    #[test]
    fn expands_known_and_escapes() {
        assert_eq!(expand(":${display}", &vars()).unwrap(), ":5");
        assert_eq!(
            expand("${state_dir}/x/$HOME $$ $${display}", &vars()).unwrap(),
            "/s/x/$HOME $$ ${display}"
        );
    }

    #[test]
    fn reports_unknown_and_unterminated() {
        let e = expand("${nope} ${display}", &vars()).unwrap_err();
        assert!(e.contains("${nope}"), "{e}");
        assert!(expand("${display", &vars()).is_err());
    }
}
