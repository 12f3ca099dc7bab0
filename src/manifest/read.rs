//! Reads a [`Node`] tree into the raw manifest types, collecting every key and type mistake.
//!
//! The raw types are declared with [`raw_table!`], which derives the JSON Schema (schemars), the
//! TOML writer (serde `Serialize`, used by `orch convert`) and this reader from one field list, so
//! the schema, the converter and the loader cannot disagree on a key. The reader never stops at the
//! first mistake; it never interprets values beyond their type (that is `resolve`'s work).

use std::borrow::Cow;
use std::collections::HashMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Serialize, Serializer, ser::SerializeMap};

use super::diagnostic::{ManifestError, did_you_mean, span};
use super::node::{Key, Node, Span, Value};

/// Walks a tree, remembering where it is (for messages) and what went wrong.
pub struct Reader {
    path: Vec<String>,
    /// Keys starting with `//` are comments in zen's JSON configs.
    json_comments: bool,
    pub errors: Vec<ManifestError>,
}

impl Reader {
    pub fn new(json_comments: bool) -> Self {
        Reader {
            path: Vec::new(),
            json_comments,
            errors: Vec::new(),
        }
    }

    /// The dotted path of the value being read, as the user would write it.
    pub fn path(&self) -> String {
        if self.path.is_empty() {
            "the manifest".to_string()
        } else {
            self.path.join(".")
        }
    }

    /// Reads `node` as `T` under the key `key`.
    pub fn field<T: FromNode>(&mut self, key: &str, node: &Node) -> Option<T> {
        self.path.push(quote_key(key));
        let value = T::from_node(node, self);
        self.path.pop();
        value
    }

    pub fn wrong_type(&mut self, node: &Node, expected: &'static str) {
        let help = match (&node.value, expected) {
            (Value::String(s), "an integer" | "a number") if s.parse::<f64>().is_ok() => {
                format!("remove the quotes: {s}")
            }
            (Value::String(_), "an array") => "wrap it in brackets: [\"...\"]".into(),
            _ => format!("write {expected} here"),
        };
        self.errors.push(ManifestError::WrongType {
            path: self.path(),
            expected,
            found: node.value.kind(),
            span: span(&node.span),
            help,
        });
    }

    /// The entries of a table, with duplicate keys (JSON only) and comment keys handled.
    pub fn table<'n>(&mut self, node: &'n Node) -> Option<Vec<&'n (Key, Node)>> {
        let Value::Table(entries) = &node.value else {
            self.wrong_type(node, "a table");
            return None;
        };
        let mut seen: Vec<&'n (Key, Node)> = Vec::with_capacity(entries.len());
        let mut first: HashMap<&'n str, &'n Key> = HashMap::with_capacity(entries.len());
        for entry in entries {
            if self.json_comments && entry.0.name.starts_with("//") {
                continue;
            }
            if let Some(first) = first.get(entry.0.name.as_str()) {
                self.errors.push(ManifestError::DuplicateKey {
                    path: format!("{}.{}", self.path(), quote_key(&entry.0.name)),
                    first: span(&first.span),
                    second: span(&entry.0.span),
                });
                continue;
            }
            if entry.0.name.contains('\0') {
                let mut path = self.path.clone();
                path.push(quote_key(&entry.0.name));
                let path = path.join(".");
                self.nul_byte(&path, &entry.0.span);
                continue;
            }
            first.insert(&entry.0.name, &entry.0);
            seen.push(entry);
        }
        Some(seen)
    }

    /// A string or key holding a NUL byte.
    pub fn nul_byte(&mut self, path: &str, at: &Span) {
        self.errors.push(ManifestError::NulByte {
            path: path.to_string(),
            span: span(at),
        });
    }

    pub fn unknown_key(&mut self, key: &Key, context: &str, known: &[&str]) {
        let help = match did_you_mean(&key.name, known.iter().copied()) {
            Some(suggestion) => format!("did you mean `{suggestion}`?"),
            None => format!("the keys of {context} are: {}", known.join(", ")),
        };
        let at = if self.path.is_empty() {
            context.to_string()
        } else {
            format!("`{}`", self.path())
        };
        self.errors.push(ManifestError::UnknownKey {
            key: key.name.clone(),
            at,
            context: context.to_string(),
            span: span(&key.span),
            help,
        });
    }
}

/// Quotes a key for a dotted path when it is not a bare TOML key.
pub(crate) fn quote_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// A raw type that can be read from a node.
pub trait FromNode: Sized {
    /// Reads the node; on a mistake, records it in the reader and returns `None`.
    fn from_node(node: &Node, r: &mut Reader) -> Option<Self>;
}

impl FromNode for String {
    fn from_node(node: &Node, r: &mut Reader) -> Option<Self> {
        match &node.value {
            // No string of a manifest may hold NUL: each may end up in an argv, an
            // environment, a path or a C string, where NUL cannot be passed.
            Value::String(s) if s.contains('\0') => {
                r.nul_byte(&r.path(), &node.span);
                None
            }
            Value::String(s) => Some(s.clone()),
            _ => {
                r.wrong_type(node, "a string");
                None
            }
        }
    }
}

impl FromNode for bool {
    fn from_node(node: &Node, r: &mut Reader) -> Option<Self> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                r.wrong_type(node, "a boolean");
                None
            }
        }
    }
}

impl FromNode for i64 {
    fn from_node(node: &Node, r: &mut Reader) -> Option<Self> {
        match node.value {
            Value::Integer(i) => Some(i),
            _ => {
                r.wrong_type(node, "an integer");
                None
            }
        }
    }
}

impl FromNode for f64 {
    fn from_node(node: &Node, r: &mut Reader) -> Option<Self> {
        match node.value {
            Value::Integer(i) => Some(i as f64),
            Value::Float(f) if f.is_finite() => Some(f),
            _ => {
                r.wrong_type(node, "a number");
                None
            }
        }
    }
}

impl<T: FromNode> FromNode for Vec<T> {
    fn from_node(node: &Node, r: &mut Reader) -> Option<Self> {
        let Value::Array(items) = &node.value else {
            r.wrong_type(node, "an array");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match r.field::<T>(&i.to_string(), item) {
                Some(v) => out.push(v),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

/// A value with the span of its text in the manifest, for diagnostics after reading.
#[derive(Clone, Debug, PartialEq)]
pub struct Sp<T> {
    pub value: T,
    pub span: Span,
}

impl<T> Sp<T> {
    /// A value made by orch rather than read (for instance by `convert`); it has no span.
    pub fn synthetic(value: T) -> Self {
        Sp { value, span: 0..0 }
    }
}

impl<T: FromNode> FromNode for Sp<T> {
    fn from_node(node: &Node, r: &mut Reader) -> Option<Self> {
        T::from_node(node, r).map(|value| Sp {
            value,
            span: node.span.clone(),
        })
    }
}

impl<T: Serialize> Serialize for Sp<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<T: JsonSchema> JsonSchema for Sp<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// A table of named entries in source order (jobs, env, command budgets).
#[derive(Clone, Debug, PartialEq)]
pub struct Map<T>(pub Vec<(Sp<String>, T)>);

impl<T> Default for Map<T> {
    fn default() -> Self {
        Map(Vec::new())
    }
}

impl<T: FromNode> FromNode for Map<T> {
    fn from_node(node: &Node, r: &mut Reader) -> Option<Self> {
        let entries = r.table(node)?;
        let mut out = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            if let Some(v) = r.field::<T>(&key.name, value) {
                let name = Sp {
                    value: key.name.clone(),
                    span: key.span.clone(),
                };
                out.push((name, v));
            }
        }
        Some(Map(out))
    }
}

impl<T: Serialize> Serialize for Map<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(&k.value, v)?;
        }
        map.end()
    }
}

impl<T: JsonSchema> JsonSchema for Map<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("Map_of_{}", T::schema_name()).into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "additionalProperties": generator.subschema_for::<T>(),
        })
    }
}

/// The TOML key of a raw table field: its name, or the name given after `as` (for keys that are
/// Rust keywords, such as `if`).
macro_rules! key_of {
    ($field:ident) => {
        stringify!($field)
    };
    ($field:ident $key:literal) => {
        $key
    };
}
pub(crate) use key_of;

/// Declares a raw table type: its fields (all optional), schema, serializer and reader.
macro_rules! raw_table {
    (
        $(#[$meta:meta])*
        pub struct $name:ident as $context:literal {
            $( $(#[$fmeta:meta])* pub $field:ident $(as $key:literal)? : Option<$ty:ty> ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, serde::Serialize, schemars::JsonSchema)]
        #[schemars(deny_unknown_fields)]
        pub struct $name {
            $(
                $(#[$fmeta])*
                $(#[serde(rename = $key)])?
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
            /// Set when a value of this table failed to read (and was reported), so that
            /// `resolve` does not also report it as missing.
            #[serde(skip)]
            #[schemars(skip)]
            pub partial: bool,
        }

        impl $name {
            /// The keys this table accepts.
            pub const KEYS: &'static [&'static str] =
                &[$($crate::manifest::read::key_of!($field $($key)?)),*];
        }

        impl $crate::manifest::read::FromNode for $name {
            fn from_node(
                node: &$crate::manifest::node::Node,
                r: &mut $crate::manifest::read::Reader,
            ) -> Option<Self> {
                let entries = r.table(node)?;
                let mut out = Self::default();
                for (key, value) in entries {
                    match key.name.as_str() {
                        $( $crate::manifest::read::key_of!($field $($key)?) => {
                            out.$field = r.field(&key.name, value);
                            out.partial |= out.$field.is_none();
                        } )*
                        _ => r.unknown_key(key, $context, Self::KEYS),
                    }
                }
                Some(out)
            }
        }
    };
}
pub(crate) use raw_table;

/// Any value, as JSON: a matrix value, an inline JSON Schema. TOML date-times become strings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Json(pub serde_json::Value);

impl Json {
    fn of(node: &Node) -> serde_json::Value {
        use serde_json::Value as J;
        match &node.value {
            Value::String(s) | Value::Datetime(s) => J::String(s.clone()),
            Value::Integer(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Bool(b) => J::Bool(*b),
            Value::Null => J::Null,
            Value::Array(items) => J::Array(items.iter().map(Json::of).collect()),
            Value::Table(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), Json::of(v)))
                    .collect(),
            ),
        }
    }
}

impl FromNode for Json {
    fn from_node(node: &Node, _: &mut Reader) -> Option<Self> {
        Some(Json(Json::of(node)))
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl JsonSchema for Json {
    fn schema_name() -> Cow<'static, str> {
        "AnyValue".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "description": "Any value." })
    }
}
