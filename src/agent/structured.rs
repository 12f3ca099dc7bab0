//! Structured output: the JSON Schema a job sets as `output_schema`, checked when the manifest
//! loads, and the agent's answer (`structured_output` of the result line) validated against it.
//!
//! Claude Code 2.1.331 turns `--json-schema` into a `StructuredOutput` tool whose input schema is
//! the job's schema (see tests/claude_code/structured.rs for how it asks and answers), and the
//! API accepts only an object-rooted tool input schema, so [`check_schema`] asks for
//! `type = "object"` at the root as well as a schema the validator can compile.
//!
//! Owns the rules and their error texts. It must never fetch anything: the `jsonschema` crate is
//! built without its HTTP and file resolvers, so only local `#/...` references resolve and any
//! other `$ref` is a schema error, at load time.

use serde_json::Value;

/// How many failures [`validate`] lists before it says how many more there are.
pub const FAILURES_SHOWN: usize = 5;

/// Whether `schema` can be an `output_schema`: a JSON Schema the validator compiles (every
/// keyword well formed, every `$ref` local and resolvable) whose root is `type = "object"`.
///
/// The error is the reason alone, to follow a phrase such as `not a valid JSON Schema: `: where
/// the schema is wrong and what is wrong there, or what the root must be and how to get there.
pub fn check_schema(schema: &Value) -> Result<(), String> {
    let Some(root) = schema.as_object() else {
        return Err(format!(
            "it is {}, and a schema is an object (a TOML inline table or a JSON object)",
            kind(schema)
        ));
    };
    match root.get("type") {
        Some(Value::String(t)) if t == "object" => {}
        other => {
            let found = other.map_or_else(|| "no `type`".to_string(), |t| format!("type {t}"));
            return Err(format!(
                "its root must be `type = \"object\"` (it has {found}): Claude Code \
                 asks for structured output through a tool, and the API accepts only an object \
                 as a tool's input; wrap an array or a single value in an object property, such \
                 as `properties = {{ items = {{ type = \"array\" }} }}`"
            ));
        }
    }
    jsonschema::validator_for(schema)
        .map(|_| ())
        .map_err(|e| failure(&e))
}

/// Whether `value` matches `schema` (which [`check_schema`] accepted). The error lists the first
/// [`FAILURES_SHOWN`] failures, each with where it is, as in
/// `at /tasks/0/title: 5 is not of type "string"`, and how many more there are.
pub fn validate(schema: &Value, value: &Value) -> Result<(), String> {
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| format!("the schema is not a valid JSON Schema: {}", failure(&e)))?;
    let mut shown = Vec::new();
    let mut more = 0usize;
    for error in validator.iter_errors(value) {
        if shown.len() < FAILURES_SHOWN {
            shown.push(failure(&error));
        } else {
            more += 1;
        }
    }
    if shown.is_empty() {
        return Ok(());
    }
    let mut text = shown.join("; ");
    if more > 0 {
        text.push_str(&format!(" (and {more} more)"));
    }
    Err(text)
}

/// One failure as `at /path: what is wrong` (`/` for the value itself).
fn failure(error: &jsonschema::ValidationError<'_>) -> String {
    let path = error.instance_path.to_string();
    let path = if path.is_empty() { "/" } else { &path };
    format!("at {path}: {error}")
}

/// The JSON type of a value, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tasks() -> Value {
        json!({
            "type": "object",
            "properties": {
                "tasks": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": { "title": { "type": "string" } },
                        "required": ["title"]
                    }
                }
            },
            "required": ["tasks"]
        })
    }

    #[test]
    fn a_well_formed_object_schema_is_accepted() {
        assert_eq!(check_schema(&tasks()), Ok(()));
        let with_ref = json!({
            "type": "object",
            "$defs": { "task": { "type": "string" } },
            "properties": { "tasks": { "type": "array", "items": { "$ref": "#/$defs/task" } } }
        });
        assert_eq!(check_schema(&with_ref), Ok(()));
    }

    #[test]
    fn a_root_that_is_not_an_object_schema_is_refused_with_the_reason() {
        let e = check_schema(&json!({ "type": "array", "items": {} })).unwrap_err();
        assert!(e.contains("type = \"object\""), "{e}");
        assert!(e.contains("type \"array\""), "{e}");
        let e = check_schema(&json!({ "properties": {} })).unwrap_err();
        assert!(e.contains("no `type`"), "{e}");
        let e = check_schema(&json!("object")).unwrap_err();
        assert!(
            e.starts_with("it is a string, and a schema is an object"),
            "{e}"
        );
    }

    #[test]
    fn a_malformed_keyword_is_refused() {
        let bad = json!({ "type": "object", "properties": { "a": { "type": "strin" } } });
        let e = check_schema(&bad).unwrap_err();
        assert!(e.starts_with("at /properties/a/type: "), "{e}");
        let bad = json!({ "type": "object", "minProperties": -1 });
        assert!(check_schema(&bad).is_err());
    }

    #[test]
    fn a_ref_that_is_not_local_is_refused_and_never_fetched() {
        for r in [
            "https://example.com/task.json",
            "file:///etc/task.json",
            "#/$defs/missing",
        ] {
            let schema = json!({ "type": "object", "properties": { "a": { "$ref": r } } });
            let e = check_schema(&schema).unwrap_err();
            assert!(e.starts_with("at "), "{r}: {e}");
        }
    }

    #[test]
    fn a_matching_value_validates() {
        let v = json!({ "tasks": [{ "title": "one" }, { "title": "two", "extra": true }] });
        assert_eq!(validate(&tasks(), &v), Ok(()));
    }

    #[test]
    fn failures_name_where_they_are() {
        let v = json!({ "tasks": [{ "title": 5 }] });
        assert_eq!(
            validate(&tasks(), &v),
            Err("at /tasks/0/title: 5 is not of type \"string\"".into())
        );
        let e = validate(&tasks(), &json!({})).unwrap_err();
        assert_eq!(e, "at /: \"tasks\" is a required property");
    }

    #[test]
    fn many_failures_show_the_first_few_and_count_the_rest() {
        let items: Vec<Value> = (0..8).map(|i| json!({ "title": i })).collect();
        let e = validate(&tasks(), &json!({ "tasks": items })).unwrap_err();
        assert_eq!(e.matches("is not of type").count(), FAILURES_SHOWN, "{e}");
        assert!(e.starts_with("at /tasks/0/title: 0 is not"), "{e}");
        assert!(e.ends_with("(and 3 more)"), "{e}");
    }
}
