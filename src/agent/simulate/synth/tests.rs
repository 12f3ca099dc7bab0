//! The synthesiser's values are valid against their schemas (checked with orch's own validator)
//! and recognisable; a proptest over generated schemas of the keywords it claims to honour.

use super::*;
use crate::agent::structured::validate;
use proptest::prelude::*;

fn valid(schema: &Value, items: usize) -> Value {
    let value = Synth::new(schema, items).value();
    if let Err(e) = validate(schema, &value) {
        panic!("{value} does not match {schema}: {e}");
    }
    value
}

fn tasks_of_strings() -> Value {
    json!({ "type": "object",
        "properties": { "tasks": { "type": "array", "items": { "type": "string" } } },
        "required": ["tasks"] })
}

#[test]
fn arrays_of_strings_are_named_after_their_property() {
    let v = valid(&tasks_of_strings(), 3);
    assert_eq!(v, json!({ "tasks": ["task 1", "task 2", "task 3"] }));
}

#[test]
fn the_item_count_is_the_knob_within_min_and_max_items() {
    for n in [0, 1, 200] {
        let v = valid(&tasks_of_strings(), n);
        assert_eq!(v["tasks"].as_array().map(Vec::len), Some(n), "{n}");
    }
    let bounded = json!({ "type": "object", "properties": {
        "few": { "type": "array", "items": { "type": "integer" }, "maxItems": 2 },
        "many": { "type": "array", "items": { "type": "integer" }, "minItems": 5 } } });
    let v = valid(&bounded, 3);
    assert_eq!(v["few"], json!([1, 2]));
    assert_eq!(v["many"], json!([1, 2, 3, 4, 5]));
    let v = valid(&bounded, 0);
    assert_eq!(v["few"], json!([]));
    assert_eq!(v["many"].as_array().map(Vec::len), Some(5));
}

#[test]
fn nested_arrays_stay_small_whatever_the_knob() {
    let schema = json!({ "type": "object", "properties": { "groups": { "type": "array",
        "items": { "type": "object", "properties": {
            "members": { "type": "array", "items": { "type": "string" } } } } } } });
    let v = valid(&schema, 200);
    assert_eq!(v["groups"].as_array().map(Vec::len), Some(200));
    assert_eq!(
        v["groups"][199]["members"],
        json!(["member 1", "member 2", "member 3"])
    );
}

#[test]
fn objects_get_every_property_with_item_numbers_in_strings() {
    let schema = json!({ "type": "object", "properties": { "tasks": { "type": "array",
        "items": { "type": "object", "required": ["title", "id"], "properties": {
            "title": { "type": "string", "minLength": 3 },
            "id": { "type": "string", "format": "uuid" },
            "due": { "type": "string", "format": "date" },
            "at": { "type": "string", "format": "date-time" },
            "owner": { "type": "string", "format": "email" },
            "link": { "type": "string", "format": "uri" },
            "kind": { "enum": ["bug", "feature"] },
            "version": { "const": 2 },
            "done": { "type": "boolean" },
            "note": { "type": ["null", "string"] },
            "effort": { "type": "number", "exclusiveMinimum": 0, "maximum": 1 } } } } } });
    let v = valid(&schema, 2);
    let [first, second] = [&v["tasks"][0], &v["tasks"][1]];
    assert_eq!(first["title"], "title 1");
    assert_eq!(second["title"], "title 2");
    assert_ne!(first["id"], second["id"]);
    let ids = json!({ "type": "object", "properties": { "tasks": { "type": "array", "items": {
        "type": "object", "properties": { "id": { "type": "string" } } } } } });
    assert_eq!(
        valid(&ids, 2)["tasks"],
        json!([{ "id": "task-1" }, { "id": "task-2" }])
    );
    assert_eq!(first["due"], "2026-01-01");
    assert_eq!(second["kind"], "feature");
    assert_eq!(first["version"], 2);
    assert_eq!(
        (first["done"].clone(), second["done"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(first["note"], "note 1");
    assert!(first["owner"].as_str().is_some_and(|s| s.contains('@')));
}

#[test]
fn numbers_respect_their_bounds_and_multiples() {
    let schema = json!({ "type": "object", "properties": {
        "low": { "type": "integer", "minimum": 10 },
        "high": { "type": "integer", "maximum": -3 },
        "between": { "type": "integer", "exclusiveMinimum": 4, "exclusiveMaximum": 6 },
        "even": { "type": "integer", "minimum": 3, "multipleOf": 2 },
        "ratio": { "type": "number", "minimum": 0.25, "maximum": 0.75 } } });
    let v = valid(&schema, 1);
    assert_eq!(v["low"], 10);
    assert_eq!(v["high"], -3);
    assert_eq!(v["between"], 5);
    assert_eq!(v["even"], 4);
    assert_eq!(v["ratio"], 0.75);
}

#[test]
fn strings_fit_their_length_bounds() {
    let schema = json!({ "type": "object", "properties": {
        "code": { "type": "string", "maxLength": 3 },
        "essay": { "type": "string", "minLength": 40 } } });
    let v = valid(&schema, 1);
    assert_eq!(v["code"], "e 1");
    assert!(
        v["essay"]
            .as_str()
            .is_some_and(|s| s.starts_with("essay 1"))
    );
}

#[test]
fn refs_alternatives_and_all_of_are_followed() {
    let schema = json!({ "type": "object",
        "$defs": { "task": { "type": "object", "properties": { "title": { "type": "string" } },
                             "required": ["title"], "additionalProperties": false } },
        "definitions": { "name": { "type": "string", "maxLength": 20 } },
        "properties": {
            "tasks": { "type": "array", "items": { "$ref": "#/$defs/task" } },
            "lead": { "$ref": "#/definitions/name" },
            "either": { "anyOf": [{ "type": "integer" }, { "type": "string" }] },
            "one": { "oneOf": [{ "type": "boolean" }, { "type": "string" }] },
            "both": { "allOf": [
                { "type": "object", "properties": { "a": { "type": "string" } }, "required": ["a"] },
                { "properties": { "b": { "type": "integer" } }, "required": ["b"] }] } },
        "required": ["tasks", "lead", "both"] });
    let v = valid(&schema, 2);
    assert_eq!(
        v["tasks"],
        json!([{ "title": "title 1" }, { "title": "title 2" }])
    );
    assert_eq!(v["lead"], "lead 1");
    assert_eq!(v["either"], 1);
    assert_eq!(v["one"], true);
    assert_eq!(v["both"], json!({ "a": "a 1", "b": 1 }));
}

#[test]
fn unique_items_of_few_values_are_cut_to_what_exists() {
    let schema = json!({ "type": "object", "properties": {
        "flags": { "type": "array", "uniqueItems": true, "items": { "type": "boolean" } },
        "picks": { "type": "array", "uniqueItems": true, "items": { "enum": ["a", "b"] } },
        "names": { "type": "array", "uniqueItems": true, "items": { "type": "string" } } } });
    let v = valid(&schema, 5);
    assert_eq!(v["flags"], json!([true, false]));
    assert_eq!(v["picks"], json!(["a", "b"]));
    assert_eq!(v["names"].as_array().map(Vec::len), Some(5));
}

#[test]
fn a_recursive_schema_ends() {
    let schema = json!({ "type": "object", "$defs": { "node": { "type": "object",
        "properties": { "name": { "type": "string" },
                        "children": { "type": "array", "items": { "$ref": "#/$defs/node" } } },
        "required": ["name"] } },
        "properties": { "root": { "$ref": "#/$defs/node" } }, "required": ["root"] });
    valid(&schema, 2);
    // A schema that requires itself forever cannot be satisfied; the synthesiser still stops.
    let endless = json!({ "type": "object", "$defs": { "loop": { "type": "object",
        "properties": { "next": { "$ref": "#/$defs/loop" } }, "required": ["next"] } },
        "properties": { "start": { "$ref": "#/$defs/loop" } }, "required": ["start"] });
    let v = Synth::new(&endless, 3).value();
    assert!(v.to_string().contains("null"), "{v}");
}

#[test]
fn the_same_schema_gives_the_same_value() {
    let a = Synth::new(&tasks_of_strings(), 7).value();
    let b = Synth::new(&tasks_of_strings(), 7).value();
    assert_eq!(a, b);
}

#[test]
fn unique_items_that_can_only_be_equal_are_not_repeated() {
    let root = json!({ "type": "object", "required": ["answer"], "properties": { "answer": {
        "type": "array", "items": { "type": "array", "uniqueItems": true,
            "items": { "type": "string", "maxLength": 0 } } } } });
    let value = Synth::new(&root, 3).value();
    assert!(validate(&root, &value).is_ok(), "{value}");
    assert_eq!(value["answer"][0], json!([""]));
}

#[test]
fn plural_names_become_singular_labels() {
    for (plural, one) in [
        ("tasks", "task"),
        ("entries", "entry"),
        ("status", "status"),
        ("class", "class"),
        ("data", "data"),
        ("s", "s"),
    ] {
        assert_eq!(singular(plural), one, "{plural}");
    }
}

/// Leaf schemas of the keywords the synthesiser honours, with bounds that can be satisfied.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u64..20, 0u64..20).prop_map(|(a, b)| {
            json!({ "type": "string", "minLength": a.min(b), "maxLength": a.max(b) })
        }),
        (-50i64..50, 0i64..30, 1i64..4).prop_map(|(lo, span, m)| json!({
            "type": "integer", "minimum": lo, "maximum": lo + span + m, "multipleOf": m })),
        (-5.0f64..5.0, 0.5f64..3.0).prop_map(|(lo, span)| json!({
            "type": "number", "minimum": lo, "maximum": lo + span })),
        Just(json!({ "type": "boolean" })),
        Just(json!({ "type": "null" })),
        prop::collection::vec("[a-z]{1,6}", 1..4).prop_map(|m| json!({ "enum": m })),
        any::<i32>().prop_map(|c| json!({ "const": c })),
        prop_oneof![Just("date"), Just("date-time"), Just("uuid"), Just("email")]
            .prop_map(|f| json!({ "type": "string", "format": f })),
    ]
}

/// Objects and arrays of those, a few levels deep.
fn schema() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            (inner.clone(), 0usize..3, 0usize..4, any::<bool>()).prop_map(
                |(items, min, extra, unique)| {
                    let mut s = json!({ "type": "array", "items": items,
                        "minItems": min, "maxItems": min + extra });
                    // Unique items need values that differ: only where the item can (an empty
                    // string is the only one of length 0).
                    let distinct = s["items"]["maxLength"] != 0 || min <= 1;
                    if unique && s["items"]["type"] == "string" && distinct {
                        s["uniqueItems"] = json!(true);
                    }
                    s
                }
            ),
            (
                prop::collection::btree_map("[a-z]{1,8}", inner, 0..4),
                any::<bool>()
            )
                .prop_map(|(props, require)| {
                    let names: Vec<&String> = props.keys().collect();
                    let required = if require { json!(names) } else { json!([]) };
                    json!({ "type": "object", "properties": props, "required": required })
                }),
        ]
    })
}

proptest! {
    #[test]
    fn synthesised_values_match_generated_schemas(body in schema(), items in 0usize..6) {
        let root = json!({ "type": "object", "properties": { "answer": body },
                           "required": ["answer"] });
        let value = Synth::new(&root, items).value();
        prop_assert!(validate(&root, &value).is_ok(), "{} vs {}: {:?}", value, root,
                     validate(&root, &value));
    }
}
