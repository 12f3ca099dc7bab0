//! STUB (replaced by the template branch): the API the integrator codes against.
#![allow(dead_code, unused_variables)]

use std::ops::Range;

use serde_json::Value;

pub struct Template {
    parts: Vec<(Reference, Range<usize>)>,
}
#[derive(Clone, Debug, PartialEq)]
pub enum Reference {
    Output {
        job: String,
        key: String,
        path: Vec<PathSeg>,
    },
    Status {
        job: String,
    },
    Matrix {
        key: String,
    },
    Item {
        path: Vec<PathSeg>,
    },
    Env {
        name: String,
    },
    RunId,
    RunStartedAt,
}
#[derive(Clone, Debug, PartialEq)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}
#[derive(Clone, Debug)]
pub struct Error {
    pub message: String,
    pub span: Range<usize>,
    pub help: String,
}
pub fn parse(text: &str) -> Result<Template, Vec<Error>> {
    Ok(Template { parts: vec![] })
}
impl Template {
    pub fn references(&self) -> impl Iterator<Item = (&Reference, Range<usize>)> {
        self.parts.iter().map(|(r, s)| (r, s.clone()))
    }
    pub fn is_literal(&self) -> bool {
        true
    }
    pub fn single(&self) -> Option<&Reference> {
        None
    }
}
pub trait Values {
    fn get(&self, r: &Reference) -> Result<Value, String>;
}
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Plain,
    Shell,
}
pub fn render(t: &Template, values: &dyn Values, mode: Mode) -> Result<String, String> {
    Err("stub".into())
}
pub fn shell_quote(s: &str) -> String {
    s.into()
}
pub fn walk<'v>(v: &'v Value, path: &[PathSeg]) -> Result<&'v Value, String> {
    Ok(v)
}
pub fn schema_allows(schema: &Value, path: &[PathSeg]) -> Result<(), String> {
    Ok(())
}
pub fn quoted_context(script: &str, at: usize) -> bool {
    false
}
impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ref")
    }
}
