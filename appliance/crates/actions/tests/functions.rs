//! The Chat Completions function tools agree with the native parser: every tool's JSON Schema
//! accepts its example and `to_actions` turns that example into the same-named native action;
//! an unknown property is refused by both; an unknown function is `bad_request`.

use serde_json::{Value, json};
use zigral_actions::anthropic::Scaling;
use zigral_actions::functions;
use zigral_desktop::Size;

/// Validates `v` against the JSON Schema subset the function tools use (type, properties,
/// required, additionalProperties, items, minItems, maxItems, enum, minimum, maximum,
/// minLength). Returns the first violation.
fn validate(schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let fail = |m: String| Err(format!("{at}: {m}"));
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            other => return fail(format!("schema type {other} not handled")),
        };
        if !ok {
            return fail(format!("{v} is not {t}"));
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        return fail(format!("{v} not in {e:?}"));
    }
    if let Some(n) = v.as_f64() {
        if schema
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n < m)
        {
            return fail(format!("{n} below minimum"));
        }
        if schema
            .get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n > m)
        {
            return fail(format!("{n} above maximum"));
        }
    }
    if let Some(s) = v.as_str()
        && schema
            .get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| (s.chars().count() as u64) < m)
    {
        return fail("string too short".into());
    }
    if let Some(a) = v.as_array() {
        if schema
            .get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| (a.len() as u64) < m)
        {
            return fail("too few items".into());
        }
        if schema
            .get("maxItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| (a.len() as u64) > m)
        {
            return fail("too many items".into());
        }
        if let Some(items) = schema.get("items") {
            for (i, item) in a.iter().enumerate() {
                validate(items, item, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let Some(o) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let r = r.as_str().unwrap_or_default();
            if !o.contains_key(r) {
                return fail(format!("missing required {r}"));
            }
        }
        for (k, val) in o {
            match props.and_then(|p| p.get(k)) {
                Some(s) => validate(s, val, &format!("{at}.{k}"))?,
                None if schema.get("additionalProperties") == Some(&json!(false)) => {
                    return fail(format!("unknown property {k}"));
                }
                None => {}
            }
        }
    }
    Ok(())
}

/// A realistic call of each function (declared display 1024x640).
fn example(name: &str) -> Value {
    match name {
        "left_click" | "right_click" | "middle_click" | "double_click" | "triple_click" => {
            json!({"x": 100, "y": 200, "modifiers": "shift"})
        }
        "mouse_move" => json!({"x": 1023, "y": 639}),
        "drag" => json!({"path": [{"x": 1, "y": 2}, {"x": 50, "y": 60}, {"x": 99, "y": 98}]}),
        "scroll" => json!({"x": 500, "y": 300, "direction": "down", "amount": 5}),
        "type" => json!({"text": "héllo ✓"}),
        "key" => json!({"keys": "ctrl+a Delete"}),
        "hold_key" => json!({"keys": "shift", "duration_ms": 500}),
        "wait" => json!({"duration_ms": 250}),
        "zoom" => json!({"region": [0, 0, 512, 320]}),
        "navigate" => json!({"url": "https://example.com/"}),
        "page_text" => json!({"max_chars": 1000}),
        _ => json!({}),
    }
}

fn sc() -> Scaling {
    Scaling::new(
        Some(1024),
        Some(640),
        Size {
            width: 1280,
            height: 800,
        },
    )
    .expect("scaling")
}

#[test]
fn every_tool_schema_accepts_its_example_and_the_parser_agrees() {
    let tools = functions::tools();
    assert_eq!(tools.len(), functions::NAMES.len());
    for t in &tools {
        assert_eq!(t["type"], "function", "{t}");
        let f = &t["function"];
        let name = f["name"].as_str().expect("name");
        assert!(
            f["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{name} has no description"
        );
        let params = &f["parameters"];
        assert_eq!(params["type"], "object", "{name}");
        assert!(
            !params.to_string().contains("$ref"),
            "{name}: flat schemas only"
        );
        let ex = example(name);
        validate(params, &ex, name).unwrap_or_else(|e| panic!("{name} schema refuses {ex}: {e}"));
        let acts = functions::to_actions(name, &ex, &sc())
            .unwrap_or_else(|e| panic!("{name} parser refuses {ex}: {e}"));
        assert_eq!(acts.len(), 1, "{name}");
        assert_eq!(acts[0].name(), name, "{name} → {:?}", acts[0]);
        // The same arguments as Chat Completions sends them: a JSON string.
        let as_string = Value::String(ex.to_string());
        assert_eq!(
            functions::to_actions(name, &as_string, &sc()).expect("string arguments"),
            acts,
            "{name}"
        );
        // An unknown property: both refuse.
        let mut bad = ex.clone();
        bad["bogus"] = json!(1);
        assert!(
            validate(params, &bad, name).is_err(),
            "{name} schema takes bogus"
        );
        let err = functions::to_actions(name, &bad, &sc()).expect_err("parser takes bogus");
        assert_eq!(err.status(), 400, "{name}: {err}");
        // Every required property is required by the parser too, except x/y of pointer
        // actions (the native parser falls back to the pointer position).
        for r in params["required"].as_array().into_iter().flatten() {
            let r = r.as_str().expect("required name");
            let mut without = ex.clone();
            without.as_object_mut().expect("object").remove(r);
            assert!(validate(params, &without, name).is_err());
            let parsed = functions::to_actions(name, &without, &sc());
            if !(r == "x" || r == "y") {
                assert!(parsed.is_err(), "{name} parses without {r}");
            }
        }
    }
    let err = functions::to_actions("teleport", &json!({}), &sc()).expect_err("unknown");
    assert_eq!(err.code(), "bad_request");
    let err = functions::to_actions("left_click", &json!("[1, 2]"), &sc()).expect_err("array");
    assert_eq!(err.code(), "bad_request");
    let err = functions::to_actions("left_click", &json!("{nope"), &sc()).expect_err("not json");
    assert_eq!(err.code(), "bad_request");
}
