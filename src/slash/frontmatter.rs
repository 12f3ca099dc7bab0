//! The YAML frontmatter of a command file: splitting it from the body and reading it.
//!
//! Owns the text → [`Frontmatter`] step only; it never touches the file system. Keys Claude Code
//! knows (`description`, `argument-hint`, `allowed-tools`, `model`, `disable-model-invocation`)
//! have accessors; every other key is kept as written, in file order.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

/// The keys of a command's frontmatter, in the order they were written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Frontmatter {
    pub fields: Vec<(String, Value)>,
}

// A JSON object in the author's order (serde_json's own map would sort the keys).
impl Serialize for Frontmatter {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.fields.len()))?;
        for (k, v) in &self.fields {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl Frontmatter {
    /// The value of a key, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// `description`, when it is text.
    pub fn description(&self) -> Option<String> {
        self.get("description").map(scalar_text)
    }

    /// `argument-hint` as the author wrote it: YAML reads `[message]` as a list, so a list is
    /// shown in brackets again.
    pub fn argument_hint(&self) -> Option<String> {
        self.get("argument-hint").map(|v| match v {
            Value::Array(items) => format!(
                "[{}]",
                items.iter().map(scalar_text).collect::<Vec<_>>().join(", ")
            ),
            other => scalar_text(other),
        })
    }

    /// `allowed-tools`: a list, or one string of comma-separated tools (both forms exist).
    pub fn allowed_tools(&self) -> Vec<String> {
        match self.get("allowed-tools") {
            Some(Value::Array(items)) => items.iter().map(scalar_text).collect(),
            Some(Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect(),
            Some(other) => vec![scalar_text(other)],
            None => Vec::new(),
        }
    }

    /// `model`, when set.
    pub fn model(&self) -> Option<String> {
        self.get("model").map(scalar_text)
    }

    /// `disable-model-invocation`: true keeps the model from calling the command itself.
    pub fn disable_model_invocation(&self) -> bool {
        matches!(
            self.get("disable-model-invocation"),
            Some(Value::Bool(true))
        ) || matches!(self.get("disable-model-invocation"), Some(Value::String(s)) if s == "true")
    }
}

/// A value as one line of text (strings without quotes, anything else as JSON).
pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Splits a command file into its frontmatter text (between `---` lines at the very top) and its
/// body. A file without an opening `---`, or without a closing one, is all body.
pub fn split(text: &str) -> (Option<&str>, &str) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Some(rest) = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
    else {
        return (None, text);
    };
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "---" {
            return (Some(&rest[..offset]), &rest[offset + line.len()..]);
        }
        offset += line.len();
    }
    (None, text)
}

/// Reads frontmatter text. Claude Code accepts values such as `argument-hint: [a] [b]` that
/// strict YAML rejects, so a failed parse is retried with every top-level value quoted; only when
/// that fails too is the frontmatter broken (the error of the first attempt is returned).
pub fn parse(text: &str) -> Result<Frontmatter, String> {
    match parse_strict(text) {
        Ok(f) => Ok(f),
        Err(first) => parse_strict(&quote_values(text)).map_err(|_| first),
    }
}

fn parse_strict(text: &str) -> Result<Frontmatter, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
    let mut fields = Vec::new();
    match docs.into_iter().next() {
        None | Some(Yaml::Null) => {}
        Some(Yaml::Hash(map)) => {
            for (k, v) in map {
                fields.push((scalar_text(&to_json(k)), to_json(v)));
            }
        }
        Some(_) => return Err("frontmatter must be `key: value` lines".into()),
    }
    Ok(Frontmatter { fields })
}

/// `key: value` lines at the top level with the value single-quoted (block values untouched).
fn quote_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.lines() {
        let quoted = (!line.starts_with([' ', '\t', '#', '-']))
            .then(|| line.split_once(": "))
            .flatten()
            .filter(|(_, v)| {
                let v = v.trim();
                !v.is_empty() && !v.starts_with(['\'', '"', '|', '>'])
            });
        match quoted {
            Some((k, v)) => out.push_str(&format!("{k}: '{}'", v.trim().replace('\'', "''"))),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn to_json(y: Yaml) -> Value {
    match y {
        Yaml::String(s) => Value::String(s),
        Yaml::Integer(i) => Value::from(i),
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::String(r), Value::Number),
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Array(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (scalar_text(&to_json(k)), to_json(v)))
                .collect(),
        ),
        Yaml::Null | Yaml::Alias(_) | Yaml::BadValue => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_frontmatter_from_body() {
        let (fm, body) = split("---\ndescription: hi\n---\nBody $ARGUMENTS\n");
        assert_eq!(fm, Some("description: hi\n"));
        assert_eq!(body, "Body $ARGUMENTS\n");
        assert_eq!(split("no frontmatter\n"), (None, "no frontmatter\n"));
        // An opening line without a closing one is body, as in Claude Code.
        assert_eq!(split("---\nkey: v\n").0, None);
    }

    #[test]
    fn reads_known_keys_and_keeps_the_others_in_order() {
        let f = parse(
            "description: Create tests\nargument-hint: [area]\nallowed-tools: Bash(git add:*), Read\n\
             model: sonnet\ndisable-model-invocation: true\ncategory: testing\ntimeout: 300\n",
        )
        .unwrap();
        assert_eq!(f.description().as_deref(), Some("Create tests"));
        assert_eq!(f.argument_hint().as_deref(), Some("[area]"));
        assert_eq!(f.allowed_tools(), ["Bash(git add:*)", "Read"]);
        assert_eq!(f.model().as_deref(), Some("sonnet"));
        assert!(f.disable_model_invocation());
        let keys: Vec<_> = f.fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys[5..], ["category", "timeout"]);
        assert_eq!(f.get("timeout"), Some(&Value::from(300)));
    }

    #[test]
    fn accepts_hints_that_strict_yaml_rejects() {
        let f = parse("argument-hint: [pr-number] [priority]\ndescription: Review\n").unwrap();
        assert_eq!(f.argument_hint().as_deref(), Some("[pr-number] [priority]"));
        assert_eq!(f.description().as_deref(), Some("Review"));
    }

    #[test]
    fn yes_and_no_stay_text_as_in_yaml_1_2() {
        let f = parse("model: no\n").unwrap();
        assert_eq!(f.model().as_deref(), Some("no"));
    }

    #[test]
    fn broken_frontmatter_is_an_error_not_a_panic() {
        assert!(parse("description: \"unterminated\n").is_err());
        assert!(parse("- a list\n- not a map\n").is_err());
        assert!(parse("key: [unclosed\n  more: x\n").is_err());
    }
}
