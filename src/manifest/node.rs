//! A format-neutral tree of spanned values, built from TOML or JSON text.
//!
//! Both manifest formats are parsed into this one tree so that a single reader
//! ([`super::read`]) checks keys and types for both and reports every mistake at once, each with the
//! byte span of the offending key or value. This module only parses; it never interprets keys.

use std::ops::Range;

use jsonc_parser::ast;
use toml::de::{DeTable, DeValue};

/// A byte range into the manifest's source text.
pub type Span = Range<usize>;

/// A value with the span of its text.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

/// A table key with the span of its text.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub span: Span,
}

/// The value kinds shared by TOML and JSON (JSON `null` is kept so it can be reported).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    /// A TOML date-time, kept as text.
    Datetime(String),
    Null,
    Array(Vec<Node>),
    /// Entries in source order; JSON may repeat a key, which the reader reports.
    Table(Vec<(Key, Node)>),
}

impl Value {
    /// The word used in "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a boolean",
            Value::Datetime(_) => "a date-time",
            Value::Null => "null",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

/// A syntax error found while parsing, with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntaxError {
    pub message: String,
    pub span: Span,
}

/// Parses TOML text. Syntax errors are all returned (the parser recovers where it can).
pub fn parse_toml(text: &str) -> Result<Node, Vec<SyntaxError>> {
    let (table, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return Err(errors
            .into_iter()
            .map(|e| SyntaxError {
                message: e.message().trim().to_string(),
                span: e.span().unwrap_or(0..0),
            })
            .collect());
    }
    let span = 0..text.len();
    Ok(Node {
        value: toml_table(table.into_inner()),
        span,
    })
}

fn toml_table(table: DeTable<'_>) -> Value {
    Value::Table(
        table
            .into_iter()
            .map(|(k, v)| {
                let key = Key {
                    span: k.span(),
                    name: k.into_inner().into_owned(),
                };
                let span = v.span();
                (key, toml_node(v.into_inner(), span))
            })
            .collect(),
    )
}

fn toml_node(value: DeValue<'_>, span: Span) -> Node {
    let value = match value {
        DeValue::String(s) => Value::String(s.into_owned()),
        DeValue::Integer(i) => match i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()) {
            Ok(n) => Value::Integer(n),
            // Out of i64 range: keep it as a float so the reader reports a range error.
            Err(_) => Value::Float(f64::INFINITY),
        },
        DeValue::Float(f) => Value::Float(f.as_str().replace('_', "").parse().unwrap_or(f64::NAN)),
        DeValue::Boolean(b) => Value::Bool(b),
        DeValue::Datetime(d) => Value::Datetime(d.to_string()),
        DeValue::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| {
                    let span = v.span();
                    toml_node(v.into_inner(), span)
                })
                .collect(),
        ),
        DeValue::Table(t) => toml_table(t),
    };
    Node { value, span }
}

/// Parses strict JSON text (no comments, no trailing commas), as Python's `json` module would.
pub fn parse_json(text: &str) -> Result<Node, Vec<SyntaxError>> {
    let options = jsonc_parser::ParseOptions {
        allow_comments: false,
        allow_loose_object_property_names: false,
        allow_trailing_commas: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    };
    let parsed = jsonc_parser::parse_to_ast(text, &Default::default(), &options).map_err(|e| {
        let range = e.range();
        vec![SyntaxError {
            message: e.kind().to_string(),
            span: range.start..range.end.max(range.start),
        }]
    })?;
    match parsed.value {
        Some(value) => Ok(json_node(value)),
        None => Err(vec![SyntaxError {
            message: "the file holds no JSON value".into(),
            span: 0..0,
        }]),
    }
}

fn json_node(value: ast::Value<'_>) -> Node {
    use jsonc_parser::common::Ranged;
    let range = value.range();
    let value = match value {
        ast::Value::StringLit(s) => Value::String(s.value.into_owned()),
        ast::Value::NumberLit(n) => match n.value.parse::<i64>() {
            Ok(i) => Value::Integer(i),
            Err(_) => Value::Float(n.value.parse().unwrap_or(f64::NAN)),
        },
        ast::Value::BooleanLit(b) => Value::Bool(b.value),
        ast::Value::NullKeyword(_) => Value::Null,
        ast::Value::Array(a) => Value::Array(a.elements.into_iter().map(json_node).collect()),
        ast::Value::Object(o) => Value::Table(
            o.properties
                .into_iter()
                .map(|p| {
                    let name_range = p.name.range();
                    let key = Key {
                        name: p.name.into_string(),
                        span: name_range.start..name_range.end,
                    };
                    (key, json_node(p.value))
                })
                .collect(),
        ),
    };
    Node {
        value,
        span: range.start..range.end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_spans_point_at_keys_and_values() {
        let text = "[jobs.a]\nrun = [\"true\"]\nmax_tokens = 1_000\n";
        let root = parse_toml(text).expect("valid");
        let Value::Table(top) = &root.value else {
            panic!()
        };
        let (jobs_key, jobs) = &top[0];
        assert_eq!(jobs_key.name, "jobs");
        let Value::Table(jobs) = &jobs.value else {
            panic!()
        };
        let Value::Table(a) = &jobs[0].1.value else {
            panic!()
        };
        assert_eq!(&text[a[0].0.span.clone()], "run");
        assert_eq!(&text[a[0].1.span.clone()], "[\"true\"]");
        assert_eq!(a[1].1.value, Value::Integer(1000));
        assert_eq!(&text[a[1].1.span.clone()], "1_000");
    }

    #[test]
    fn json_spans_are_byte_offsets_even_after_multibyte_text() {
        let text = "{\"// é\": 1, \"instances\": [{\"name\": \"x\"}]}";
        let root = parse_json(text).expect("valid");
        let Value::Table(top) = &root.value else {
            panic!()
        };
        assert_eq!(&text[top[1].0.span.clone()], "\"instances\"");
        assert_eq!(top[1].0.name, "instances");
    }

    #[test]
    fn syntax_errors_carry_spans() {
        let errs = parse_toml("[jobs\nx = 1").unwrap_err();
        assert!(!errs.is_empty());
        let errs = parse_json("{\"a\": 1,}").unwrap_err();
        assert_eq!(errs.len(), 1);
    }
}
