//! Paths into JSON: walking one into a value (the runner, when rendering) and checking one
//! against a JSON Schema (the loader, before anything runs). Pure.

use serde_json::Value;

use super::reference::{PathSeg, path_text};
use crate::manifest::diagnostic::did_you_mean;

/// How many keys an error lists before "and N more".
const KEYS_SHOWN: usize = 20;

/// Walks a JSON path into a value. Errors name what is there: "`tasks` has 2 items, \[5\] is past
/// the end"; "`plan` has no key `titel`; its keys are: id, title". A location is written as the
/// path up to it (`tasks[0]`), or "the value" for the value itself.
pub fn walk<'v>(v: &'v Value, path: &[PathSeg]) -> Result<&'v Value, String> {
    let mut here = v;
    for (n, seg) in path.iter().enumerate() {
        let at = location(&path[..n]);
        here = match (here, seg) {
            (Value::Object(map), PathSeg::Key(k)) => map.get(k).ok_or_else(|| {
                let keys: Vec<&str> = map.keys().map(String::as_str).collect();
                let mut msg = format!("{at} has no key `{k}`; {}", list_keys(&keys));
                if let Some(near) = did_you_mean(k, keys.iter().copied()) {
                    msg.push_str(&format!(" (did you mean `{near}`?)"));
                }
                msg
            })?,
            (Value::Array(items), PathSeg::Index(i)) => items.get(*i).ok_or_else(|| {
                format!(
                    "{at} has {}, [{i}] is past the end",
                    items_text(items.len())
                )
            })?,
            (Value::Array(items), PathSeg::Key(k)) => {
                return Err(format!(
                    "{at} is an array of {}, not an object: it has no key `{k}`; \
                     index it like [0]",
                    items_text(items.len())
                ));
            }
            (Value::Object(map), PathSeg::Index(i)) => {
                let keys: Vec<&str> = map.keys().map(String::as_str).collect();
                return Err(format!(
                    "{at} is an object, not an array: it has no [{i}]; {}",
                    list_keys(&keys)
                ));
            }
            (scalar, seg) => {
                let step = match seg {
                    PathSeg::Key(k) => format!("key `{k}`"),
                    PathSeg::Index(i) => format!("[{i}]"),
                };
                return Err(format!("{at} is {}, it has no {step}", kind(scalar)));
            }
        };
    }
    Ok(here)
}

/// "`tasks[0]`" for a non-empty path prefix, "the value" for the empty one.
fn location(prefix: &[PathSeg]) -> String {
    if prefix.is_empty() {
        "the value".to_string()
    } else {
        format!("`{}`", path_text(prefix).trim_start_matches('.'))
    }
}

fn items_text(n: usize) -> String {
    if n == 1 {
        "1 item".to_string()
    } else {
        format!("{n} items")
    }
}

fn list_keys(keys: &[&str]) -> String {
    if keys.is_empty() {
        return "it has no keys".to_string();
    }
    let mut text = keys[..keys.len().min(KEYS_SHOWN)].join(", ");
    if keys.len() > KEYS_SHOWN {
        text.push_str(&format!(" and {} more", keys.len() - KEYS_SHOWN));
    }
    format!("its keys are: {text}")
}

/// "a string", "a number", … for a value.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// How many `$ref`s one step may follow before the check gives up and allows the path (a schema
/// may refer to itself).
const MAX_REFS: usize = 32;

/// Load-time check of a path against a JSON Schema: `Err` (saying why) when no value the schema
/// describes can have the path, `Ok` otherwise. The rules, one path step at a time:
/// - A key (`.title`) needs a schema that may be an object. When the schema lists `properties`,
///   a listed key goes on with its schema; an unlisted key goes on with `additionalProperties`
///   when that is a schema or `true`, and is refused when it is `false` **or absent** — so that a
///   typo in a reference is caught at load time. (This is stricter than JSON Schema itself, where
///   an absent `additionalProperties` allows any key; a schema that means to allow other keys says
///   `additionalProperties: true`.) With `patternProperties`, or no `properties`, any key goes on.
/// - An index (`[2]`) needs a schema that may be an array: it goes on with `prefixItems[2]` (or
///   draft 7's array form of `items`), else with `items` (or `additionalItems`); `false` there, or
///   a `maxItems` the index reaches, refuses it.
/// - `type` (a string or a list; `integer` counts as `number`) refuses a key unless it allows
///   `object` and an index unless it allows `array`, e.g. indexing a string.
/// - `anyOf`, `oneOf` and `allOf` (and the schema's own keywords beside them): the step is allowed
///   when any of them allows it. Local `$ref`s (`#/$defs/x`, `#/definitions/x`, any `#/…`
///   pointer) are followed; other `$ref`s allow anything.
/// - The schema `false` allows nothing; `true`, `{}` and keywords not named here mean
///   "anything", so the check never refuses what could exist (the `properties` rule above aside).
pub fn schema_allows(schema: &Value, path: &[PathSeg]) -> Result<(), String> {
    let mut here: Vec<&Value> = vec![schema];
    for (n, seg) in path.iter().enumerate() {
        let at = location(&path[..n]);
        let mut next: Vec<&Value> = Vec::new();
        let mut refusal = None;
        for s in &here {
            match step(schema, s, seg, 0) {
                Step::Anything => return Ok(()),
                Step::Into(schemas) => {
                    // The same subschema reached through several branches is checked once.
                    for s in schemas {
                        if !next.iter().any(|n| std::ptr::eq(*n, s)) {
                            next.push(s);
                        }
                    }
                }
                Step::Refused(why) => {
                    refusal.get_or_insert(why);
                }
            }
        }
        if next.is_empty() {
            let why = refusal.unwrap_or_else(|| "the schema allows nothing there".to_string());
            return Err(format!("{at}: {why}"));
        }
        here = next;
    }
    Ok(())
}

/// What a schema says about one path step.
enum Step<'s> {
    /// Nothing is known below: any value may be there.
    Anything,
    /// The step is allowed, and what is there is described by any of these schemas.
    Into(Vec<&'s Value>),
    /// No value the schema describes has this step, for this reason.
    Refused(String),
}

fn step<'s>(root: &'s Value, schema: &'s Value, seg: &PathSeg, refs: usize) -> Step<'s> {
    let obj = match schema {
        Value::Bool(false) => return Step::Refused("the schema allows nothing there".to_string()),
        Value::Object(obj) => obj,
        _ => return Step::Anything,
    };
    // Every source of constraints beside the schema's own keywords; the step is allowed when any
    // of them allows it.
    let mut outcomes = Vec::new();
    if let Some(own) = own_step(obj, seg) {
        outcomes.push(own);
    }
    if let Some(Value::String(r)) = obj.get("$ref") {
        let target = r.strip_prefix('#').and_then(|p| root.pointer(p));
        match target {
            Some(t) if refs < MAX_REFS => outcomes.push(step(root, t, seg, refs + 1)),
            _ => return Step::Anything,
        }
    }
    for combinator in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(branches)) = obj.get(combinator) {
            for b in branches {
                outcomes.push(step(root, b, seg, refs));
            }
        }
    }
    if outcomes.is_empty() {
        return Step::Anything;
    }
    let mut into = Vec::new();
    let mut refusal = None;
    for o in outcomes {
        match o {
            Step::Anything => return Step::Anything,
            Step::Into(mut s) => into.append(&mut s),
            Step::Refused(why) => {
                refusal.get_or_insert(why);
            }
        }
    }
    if into.is_empty() {
        Step::Refused(refusal.expect("a refusal when nothing allowed the step"))
    } else {
        Step::Into(into)
    }
}

/// What the schema's own keywords (not its combinators) say; `None` when they say nothing about
/// this kind of step.
fn own_step<'s>(obj: &'s serde_json::Map<String, Value>, seg: &PathSeg) -> Option<Step<'s>> {
    let types = types(obj.get("type"));
    match seg {
        PathSeg::Key(k) => {
            if let Some(t) = &types
                && !t.contains(&"object")
            {
                return Some(Step::Refused(format!(
                    "the schema says this is {}, which has no key `{k}`",
                    readable(t)
                )));
            }
            if obj.contains_key("patternProperties") {
                return Some(Step::Anything);
            }
            let Some(Value::Object(props)) = obj.get("properties") else {
                return match obj.get("additionalProperties") {
                    Some(Value::Bool(false)) => Some(Step::Refused(format!(
                        "the schema allows no keys here, so not `{k}`"
                    ))),
                    Some(s @ Value::Object(_)) => Some(Step::Into(vec![s])),
                    _ => types.map(|_| Step::Anything),
                };
            };
            if let Some(s) = props.get(k) {
                return Some(Step::Into(vec![s]));
            }
            match obj.get("additionalProperties") {
                Some(s @ Value::Object(_)) => Some(Step::Into(vec![s])),
                Some(Value::Bool(true)) => Some(Step::Anything),
                _ => {
                    let names: Vec<&str> = props.keys().map(String::as_str).collect();
                    let mut why = format!(
                        "the schema has no property `{k}`; its properties are: {}",
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    );
                    if let Some(near) = did_you_mean(k, names.iter().copied()) {
                        why.push_str(&format!(" (did you mean `{near}`?)"));
                    }
                    Some(Step::Refused(why))
                }
            }
        }
        PathSeg::Index(i) => {
            if let Some(t) = &types
                && !t.contains(&"array")
            {
                return Some(Step::Refused(format!(
                    "the schema says this is {}, which has no [{i}]",
                    readable(t)
                )));
            }
            if let Some(max) = obj.get("maxItems").and_then(Value::as_u64)
                && *i as u64 >= max
            {
                return Some(Step::Refused(format!(
                    "the schema allows at most {max} items, so [{i}] is never there"
                )));
            }
            // 2020-12: prefixItems then items; draft 7: items as a list then additionalItems.
            let (tuple, rest) = match (obj.get("prefixItems"), obj.get("items")) {
                (Some(Value::Array(t)), rest) => (Some(t), rest),
                (_, Some(Value::Array(t))) => (Some(t), obj.get("additionalItems")),
                (_, rest) => (None, rest),
            };
            if let Some(s) = tuple.and_then(|t| t.get(*i)) {
                return Some(Step::Into(vec![s]));
            }
            match rest {
                Some(Value::Bool(false)) => Some(Step::Refused(format!(
                    "the schema allows {} items, so [{i}] is never there",
                    tuple.map_or(0, Vec::len)
                ))),
                Some(s @ Value::Object(_)) => Some(Step::Into(vec![s])),
                Some(Value::Bool(true)) => Some(Step::Anything),
                _ => types.map(|_| Step::Anything),
            }
        }
    }
}

/// The JSON types `type` allows (`integer` as `number`), or `None` when it does not say.
fn types(t: Option<&Value>) -> Option<Vec<&'static str>> {
    let names: Vec<&str> = match t? {
        Value::String(s) => vec![s.as_str()],
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    let mut out: Vec<&'static str> = Vec::new();
    for n in names {
        let n = match n {
            "object" => "object",
            "array" => "array",
            "string" => "string",
            "number" | "integer" => "number",
            "boolean" => "boolean",
            "null" => "null",
            _ => return None,
        };
        if !out.contains(&n) {
            out.push(n);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// "a string or null" for the types a schema allows.
fn readable(types: &[&str]) -> String {
    let words: Vec<&str> = types
        .iter()
        .map(|t| match *t {
            "array" => "an array",
            "string" => "a string",
            "number" => "a number",
            "boolean" => "a boolean",
            "null" => "null",
            _ => "an object",
        })
        .collect();
    words.join(" or ")
}
