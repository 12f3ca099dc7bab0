//! `orch schema`: the JSON Schema of manifests, generated from the raw manifest types.

use schemars::Schema;
use serde_json::Value;

use crate::manifest::raw::RawManifest;

/// The schema as pretty JSON, exactly as committed in `schemas/orch-manifest.schema.json`.
pub fn manifest_schema() -> String {
    let mut schema = schemars::generate::SchemaSettings::draft07()
        .with_transform(drop_null)
        .into_generator()
        .into_root_schema_for::<RawManifest>();
    schema.insert("title".into(), "orch manifest".into());
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema is plain JSON");
    text.push('\n');
    text
}

/// TOML has no null: an absent key is how a manifest leaves a value unset, so the `null` that
/// schemars adds for `Option` is removed.
fn drop_null(schema: &mut Schema) {
    if let Some(obj) = schema.as_object_mut() {
        if let Some(Value::Array(types)) = obj.get_mut("type") {
            types.retain(|t| t != "null");
            if types.len() == 1 {
                let only = types[0].clone();
                obj.insert("type".into(), only);
            }
        }
        let is_null = |v: &Value| v.get("type").is_some_and(|t| t == "null");
        if let Some(Value::Array(any)) = obj.get("anyOf") {
            if any.len() == 2 && any.iter().any(is_null) {
                let other = any.iter().find(|v| !is_null(v)).cloned();
                obj.remove("anyOf");
                if let Some(Value::Object(other)) = other {
                    obj.extend(other);
                }
            }
        }
    }
    schemars::transform::transform_subschemas(&mut drop_null, schema);
}

/// The schema of one line of `orch run --events` as pretty JSON, exactly as committed in
/// `schemas/orch-events.schema.json`: one variant per event kind, each with the stream's `v`.
pub fn events_schema() -> String {
    let mut schema = schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<crate::events::Event>();
    schema.insert("title".into(), "orch event stream line".into());
    schema.insert(
        "description".into(),
        format!(
            "One line of `orch run --events FILE`: a JSON object with the format version `v` \
             ({}) and the event kind `event`. Fields may be added within a version.",
            crate::report::ndjson::VERSION
        )
        .into(),
    );
    if let Some(Value::Array(variants)) = schema.as_object_mut().and_then(|o| o.get_mut("oneOf")) {
        for variant in variants.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(Value::Object(props)) = variant.get_mut("properties") {
                props.insert(
                    "v".into(),
                    serde_json::json!({ "const": crate::report::ndjson::VERSION }),
                );
            }
            if let Some(Value::Array(required)) = variant.get_mut("required") {
                required.insert(0, "v".into());
            }
            // Within a version every field of an event kind is known.
            variant.insert("additionalProperties".into(), false.into());
        }
    }
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema is plain JSON");
    text.push('\n');
    text
}
