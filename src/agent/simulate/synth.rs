//! The simulated agent's structured output: a value synthesised from a `--json-schema`, valid
//! against it for the keywords orch's pipelines use, and recognisable in a later job's prompt.
//!
//! Objects get every property (required or not, in key order) and a string for a required name
//! that has no schema; arrays get [`Synth::items`] items (the `ORCH_SIM_ITEMS` knob; arrays
//! inside array items at most [`NESTED_ITEMS`]), bounded by `minItems`/`maxItems` and by what
//! `uniqueItems` allows; strings are `"<name> <n>"` after the property they fill (`tasks` →
//! `"task 1"`, `"task 2"`; `title` → `"title 1"`; an `id`, `key` or `slug` after the item it is
//! in, `"task-1"`), within `minLength`/`maxLength`, or a date,
//! date-time, time, uuid, email or URI for those formats; integers and numbers count from 1 within
//! `minimum`/`maximum` (exclusive too) and `multipleOf`; booleans alternate from `true`;
//! `enum` cycles through its members; `const` is itself; `anyOf`/`oneOf` take the first branch;
//! `allOf` merges its branches; `$ref` follows local `#/...` pointers. Not honoured: `pattern`,
//! `not`, `if`/`then`, `dependentSchemas`.
//!
//! Pure: the same schema and knob give the same value. It must never fail or recurse without
//! bound: an unresolvable `$ref` gives `null`, and past [`MAX_DEPTH`] levels an object gets only
//! its required properties and an array only its `minItems`, and past twice that, `null`.

use serde_json::{Map, Value, json};

/// Items in arrays nested inside another array's items (with the knob's count at most).
pub const NESTED_ITEMS: usize = 3;

/// Levels of nesting after which only what the schema requires is produced.
pub const MAX_DEPTH: usize = 12;

/// A synthesiser for one schema.
#[derive(Debug, Clone, Copy)]
pub struct Synth<'a> {
    /// The whole schema, for `$ref`s.
    root: &'a Value,
    /// Items per array (`ORCH_SIM_ITEMS`, default 3).
    items: usize,
}

/// Where a value is: the name it will be known by, its index in the nearest array, and depths.
#[derive(Debug, Clone)]
struct Place {
    /// Singular name for strings: the property, or the array's property minus a plural `s`.
    label: String,
    /// 0-based index of the nearest enclosing array item (0 outside arrays).
    index: usize,
    /// The label of the nearest enclosing array item (`task` inside `tasks`), for ids.
    owner: String,
    /// Arrays this value is inside.
    arrays: usize,
    /// Schema levels walked so far.
    depth: usize,
}

impl<'a> Synth<'a> {
    /// A synthesiser for `root` that puts `items` items in each array.
    pub fn new(root: &'a Value, items: usize) -> Synth<'a> {
        Synth { root, items }
    }

    /// The value for the whole schema.
    pub fn value(&self) -> Value {
        let place = Place {
            label: "value".into(),
            index: 0,
            owner: "value".into(),
            arrays: 0,
            depth: 0,
        };
        self.of(self.root, &place)
    }

    fn of(&self, schema: &Value, at: &Place) -> Value {
        // A schema that requires itself without end has no finite value; stop somewhere.
        if at.depth > 2 * MAX_DEPTH {
            return Value::Null;
        }
        let schema = match self.resolve(schema) {
            Some(s) => s,
            None => return Value::Null,
        };
        let Some(obj) = schema.as_object() else {
            // `true` (anything) or `false` (nothing fits; a string is as good as anything).
            return text(at, &Map::new());
        };
        if let Some(c) = obj.get("const") {
            return c.clone();
        }
        if let Some(members) = obj.get("enum").and_then(Value::as_array)
            && !members.is_empty()
        {
            return members[at.index % members.len()].clone();
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(first) = obj
                .get(key)
                .and_then(Value::as_array)
                .and_then(|b| b.first())
                && kind_of(obj).is_none()
            {
                return self.of(first, &at.deeper());
            }
        }
        if let Some(all) = obj.get("allOf").and_then(Value::as_array) {
            let merged = self.merge(obj, all);
            return self.shaped(&merged, at);
        }
        self.shaped(obj, at)
    }

    /// A value for a schema object without `const`, `enum` or alternatives to pick from.
    fn shaped(&self, obj: &Map<String, Value>, at: &Place) -> Value {
        match kind_of(obj).as_deref() {
            Some("object") => self.object(obj, at),
            Some("array") => self.array(obj, at),
            Some("integer") => number(obj, at, true),
            Some("number") => number(obj, at, false),
            Some("boolean") => Value::Bool(at.index % 2 == 0),
            Some("null") => Value::Null,
            _ => text(at, obj),
        }
    }

    fn object(&self, obj: &Map<String, Value>, at: &Place) -> Value {
        let required: Vec<&str> = obj
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut out = Map::new();
        let none = Map::new();
        let properties = obj
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&none);
        for (name, schema) in properties {
            if at.depth >= MAX_DEPTH && !required.contains(&name.as_str()) {
                continue;
            }
            out.insert(name.clone(), self.of(schema, &at.property(name)));
        }
        for name in required {
            if !out.contains_key(name) {
                let fallback = obj
                    .get("additionalProperties")
                    .unwrap_or(&Value::Bool(true));
                out.insert(name.to_string(), self.of(fallback, &at.property(name)));
            }
        }
        let min = count(obj, "minProperties").unwrap_or(0);
        let extra = match obj.get("additionalProperties") {
            Some(Value::Bool(false)) => None,
            Some(schema) => Some(schema.clone()),
            None => Some(Value::Bool(true)),
        };
        if let Some(schema) = extra {
            let mut n = 1;
            while out.len() < min {
                let name = format!("extra_{n}");
                if !out.contains_key(&name) {
                    out.insert(name.clone(), self.of(&schema, &at.property(&name)));
                }
                n += 1;
            }
        }
        Value::Object(out)
    }

    fn array(&self, obj: &Map<String, Value>, at: &Place) -> Value {
        let wanted = if at.arrays == 0 {
            self.items
        } else {
            self.items.min(NESTED_ITEMS)
        };
        let min = count(obj, "minItems").unwrap_or(0);
        let mut n = wanted.max(min);
        if let Some(max) = count(obj, "maxItems") {
            n = n.min(max);
        }
        if at.depth >= MAX_DEPTH {
            n = min;
        }
        // Draft 2020-12 tuples (`prefixItems`, then `items`) and draft 7 ones (`items` as a list,
        // then `additionalItems`).
        let (prefix, rest): (&[Value], Option<&Value>) =
            match (obj.get("prefixItems"), obj.get("items")) {
                (Some(Value::Array(p)), items) => (p, items),
                (None, Some(Value::Array(p))) => (p, obj.get("additionalItems")),
                (_, items) => (&[], items),
            };
        let unique = obj.get("uniqueItems") == Some(&Value::Bool(true));
        if unique && let Some(distinct) = rest.and_then(|s| self.distinct_values(s)) {
            n = n.min(prefix.len() + distinct);
        }
        if matches!(rest, Some(Value::Bool(false))) {
            n = n.min(prefix.len());
        }
        let anything = Value::Bool(true);
        let mut values: Vec<Value> = Vec::with_capacity(n);
        for i in 0..n {
            let schema = prefix.get(i).or(rest).unwrap_or(&anything);
            let value = self.of(schema, &at.item(i));
            // Items that come out equal (a string cut to a short `maxLength`, say) are dropped
            // where they must be unique: fewer items, never a value the schema refuses.
            if unique && values.contains(&value) {
                continue;
            }
            values.push(value);
        }
        Value::Array(values)
    }

    /// How many distinct values a schema has when that is small and known (`const`, `enum`,
    /// `boolean`, `null`).
    fn distinct_values(&self, schema: &Value) -> Option<usize> {
        let obj = self.resolve(schema)?.as_object()?;
        if obj.contains_key("const") {
            return Some(1);
        }
        if let Some(members) = obj.get("enum").and_then(Value::as_array) {
            return Some(members.len());
        }
        match kind_of(obj).as_deref() {
            Some("boolean") => Some(2),
            Some("null") => Some(1),
            Some("string") if count(obj, "maxLength") == Some(0) => Some(1),
            _ => None,
        }
    }

    /// Follows `$ref`s to a schema that has none (local pointers only); `None` when one does
    /// not resolve or the chain is too long.
    fn resolve<'s>(&'s self, mut schema: &'s Value) -> Option<&'s Value> {
        for _ in 0..=MAX_DEPTH {
            match schema.get("$ref").and_then(Value::as_str) {
                Some(r) => schema = self.root.pointer(r.strip_prefix('#')?)?,
                None => return Some(schema),
            }
        }
        None
    }

    /// `allOf` branches folded into the parent: properties and required names united, the
    /// first `type` and bounds kept.
    fn merge(&self, parent: &Map<String, Value>, all: &[Value]) -> Map<String, Value> {
        let mut merged = parent.clone();
        merged.remove("allOf");
        for branch in all {
            let Some(branch) = self.resolve(branch).and_then(Value::as_object) else {
                continue;
            };
            for (key, value) in branch {
                match (key.as_str(), merged.get_mut(key)) {
                    ("properties", Some(Value::Object(mine))) => {
                        if let Value::Object(theirs) = value {
                            for (k, v) in theirs {
                                mine.entry(k.clone()).or_insert_with(|| v.clone());
                            }
                        }
                    }
                    ("required", Some(Value::Array(mine))) => {
                        for name in value.as_array().into_iter().flatten() {
                            if !mine.contains(name) {
                                mine.push(name.clone());
                            }
                        }
                    }
                    (_, None) => {
                        merged.insert(key.clone(), value.clone());
                    }
                    _ => {}
                }
            }
        }
        merged
    }
}

impl Place {
    fn deeper(&self) -> Place {
        Place {
            depth: self.depth + 1,
            ..self.clone()
        }
    }

    fn property(&self, name: &str) -> Place {
        Place {
            label: name.replace('_', " "),
            depth: self.depth + 1,
            ..self.clone()
        }
    }

    fn item(&self, index: usize) -> Place {
        Place {
            label: singular(&self.label),
            owner: singular(&self.label),
            index,
            arrays: self.arrays + 1,
            depth: self.depth + 1,
        }
    }
}

/// The `type` to produce: the first that is not `null` of a list, or one the keywords imply.
fn kind_of(obj: &Map<String, Value>) -> Option<String> {
    match obj.get("type") {
        Some(Value::String(t)) => return Some(t.clone()),
        Some(Value::Array(types)) => {
            let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
            let pick = names.iter().find(|t| **t != "null").or(names.first());
            return pick.map(|t| t.to_string());
        }
        _ => {}
    }
    let has = |keys: &[&str]| keys.iter().any(|k| obj.contains_key(*k));
    let implied = if has(&[
        "properties",
        "required",
        "additionalProperties",
        "minProperties",
    ]) {
        "object"
    } else if has(&[
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "uniqueItems",
    ]) {
        "array"
    } else if has(&[
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
    ]) {
        "number"
    } else {
        return None;
    };
    Some(implied.into())
}

/// A non-negative integer keyword (`minItems`, ...).
fn count(obj: &Map<String, Value>, key: &str) -> Option<usize> {
    obj.get(key)
        .and_then(Value::as_u64)
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// `tasks` → `task`, `entries` → `entry`, `status` and `class` stay.
fn singular(label: &str) -> String {
    if let Some(stem) = label.strip_suffix("ies") {
        return format!("{stem}y");
    }
    match label.strip_suffix('s') {
        Some(stem) if !stem.is_empty() && !stem.ends_with('s') && !stem.ends_with('u') => {
            stem.to_string()
        }
        _ => label.to_string(),
    }
}

/// A string for `at`: the format's shape, or `"<label> <n>"` padded or cut to the bounds.
fn text(at: &Place, obj: &Map<String, Value>) -> Value {
    let n = at.index + 1;
    let formatted = match obj.get("format").and_then(Value::as_str) {
        Some("date") => Some(format!("2026-01-{:02}", 1 + at.index % 28)),
        Some("date-time") => Some(format!("2026-01-{:02}T09:00:00Z", 1 + at.index % 28)),
        Some("time") => Some(format!("09:{:02}:00Z", at.index % 60)),
        Some("uuid") => {
            let name = format!("{}/{}", at.label, at.index);
            Some(uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string())
        }
        Some("email") => Some(format!("{}{n}@example.com", slug(&at.label))),
        Some("uri") | Some("url") => Some(format!("https://example.com/{}/{n}", slug(&at.label))),
        _ => None,
    };
    if let Some(s) = formatted {
        return Value::String(s);
    }
    // An identifier reads as one, after what it identifies: `task-2`, usable in a name.
    let mut s = if matches!(at.label.as_str(), "id" | "key" | "slug") {
        format!("{}-{n}", slug(&at.owner))
    } else {
        format!("{} {n}", at.label)
    };
    let min = count(obj, "minLength").unwrap_or(0);
    while s.chars().count() < min {
        s.push_str(" more");
    }
    let len = s.chars().count();
    match count(obj, "maxLength") {
        // Cut from the front, so the number that tells items apart stays.
        Some(max) if len > max => Value::String(s.chars().skip(len - max).collect()),
        _ => Value::String(s),
    }
}

fn slug(label: &str) -> String {
    label
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_lowercase()
}

/// `index + 1`, moved into the bounds and onto `multipleOf`.
fn number(obj: &Map<String, Value>, at: &Place, integer: bool) -> Value {
    let get = |key: &str| obj.get(key).and_then(Value::as_f64);
    let mut low = get("minimum").unwrap_or(f64::NEG_INFINITY);
    let mut high = get("maximum").unwrap_or(f64::INFINITY);
    // Draft 4 spells exclusive bounds as booleans beside the bound; later drafts as numbers.
    let exclusive = |key: &str| obj.get(key).and_then(Value::as_bool).unwrap_or(false);
    let step = if integer { 1.0 } else { 0.5 };
    if let Some(x) = get("exclusiveMinimum") {
        low = low.max(x + step);
    } else if exclusive("exclusiveMinimum") {
        low += step;
    }
    if let Some(x) = get("exclusiveMaximum") {
        high = high.min(x - step);
    } else if exclusive("exclusiveMaximum") {
        high -= step;
    }
    if integer {
        low = low.ceil();
        high = high.floor();
    }
    let mut v = (at.index as f64 + 1.0).clamp(low.min(high), high.max(low));
    if let Some(m) = get("multipleOf").filter(|m| *m > 0.0) {
        let up = (v / m).ceil() * m;
        let down = (v / m).floor() * m;
        v = if up <= high { up } else { down };
    }
    if integer || v.fract() == 0.0 && v.abs() < 9e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

#[cfg(test)]
mod tests;
