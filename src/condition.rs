//! Conditions: the `if = "..."` language of a job. Parsed and type-checked at load time,
//! evaluated by the runner when the job's dependencies have ended; never a shell. Pure: values
//! come in through [`template::Values`].
//!
//! # The language
//! The text may be wrapped in one `${{ … }}` or not: `${{ jobs.test.status == "failed" }}` and
//! `jobs.test.status == "failed"` are the same condition. Whitespace between tokens is free.
//!
//! ```text
//! condition  := or
//! or         := and ( "||" and )*
//! and        := not ( "&&" not )*
//! not        := "!" not | comparison
//! comparison := primary ( ( "==" | "!=" | "<" | "<=" | ">" | ">=" ) primary )?
//! primary    := STRING | NUMBER | "true" | "false" | "null" | REFERENCE
//!             | FUNCTION "(" ( condition ( "," condition )* )? ")" | "(" condition ")"
//! ```
//! - Precedence, lowest first: `||`, `&&`, `!`, comparisons. `!` binds looser than a comparison:
//!   `!jobs.a.status == "failed"` means `!(jobs.a.status == "failed")`. Comparisons do not chain
//!   (`a == b == c` is an error); use `&&` or parentheses.
//! - STRING: `'…'` or `"…"`; `\\`, `\'` and `\"` are the only escapes. NUMBER: JSON's form,
//!   `-?digits(.digits)?([eE][+-]?digits)?`. REFERENCE: as in templates ([`template::Reference`]),
//!   e.g. `jobs.plan.outputs.structured.count`, `matrix.target`, `item.id`.
//! - FUNCTION: `contains(a, b)` (a string contains a substring, or an array contains an element
//!   equal to `b`), `startsWith(a, b)` and `endsWith(a, b)` (strings), `length(a)` (a string's
//!   characters or an array's items). Names are case-sensitive.
//!
//! # Values
//! - `==` and `!=`: values of different JSON types are never equal (`1 == "1"` is false); numbers
//!   compare by value (`1 == 1.0`); arrays and objects compare member by member.
//! - `<`, `<=`, `>`, `>=`: two numbers, or two strings (by Unicode code points); anything else is
//!   an error when evaluated.
//! - `!`, `&&` and `||` give booleans and judge their operands by truthiness, as GitHub Actions
//!   does: `false`, `null`, `0`, `""` and `[]` are false, everything else (`{}` included) is true.
//!   `&&` and `||` short-circuit: `a || b` does not look `b` up when `a` is true.
//! - The condition holds when its value is truthy.
//!
//! # Load-time checks ([`check`])
//! Given what each reference yields ([`Type`]): a status compared with a string that is not a
//! status (`jobs.x.status == "faild"`) names the statuses; a status compared with a number,
//! boolean or array; `==`/`!=` between two values of known, different types (always false);
//! an ordering of anything but two numbers or two strings (statuses are not ordered);
//! `contains` over a number, boolean or null, or looking for a non-string in a string;
//! `startsWith`/`endsWith` over a non-string; `length` of a number, boolean or null. [`Type::Any`]
//! passes everything.

mod check;
mod eval;
mod parse;

#[cfg(test)]
mod tests;

use std::ops::Range;

pub use check::{Type, check};
pub use eval::eval;

use crate::template::{self, Reference};

/// A parsed condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    expr: Expr,
}

/// Parses a condition; the spans of its errors are bytes within `text`.
pub fn parse(text: &str) -> Result<Condition, Vec<template::Error>> {
    parse::parse(text)
        .map(|expr| Condition { expr })
        .map_err(|e| vec![e])
}

impl Condition {
    /// Every reference with its span (bytes within the condition text), in order of appearance.
    pub fn references(&self) -> Vec<(&Reference, Range<usize>)> {
        let mut out = Vec::new();
        self.expr.references(&mut out);
        out
    }
}

/// One node of a condition, with the bytes it was written in.
#[derive(Clone, Debug, PartialEq)]
struct Expr {
    kind: Kind,
    span: Range<usize>,
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Literal(serde_json::Value),
    Ref(Reference),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare(Op, Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }

    fn is_ordering(self) -> bool {
        !matches!(self, Op::Eq | Op::Ne)
    }
}

/// A built-in function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Func {
    Contains,
    StartsWith,
    EndsWith,
    Length,
}

impl Func {
    const ALL: [Func; 4] = [
        Func::Contains,
        Func::StartsWith,
        Func::EndsWith,
        Func::Length,
    ];

    fn name(self) -> &'static str {
        match self {
            Func::Contains => "contains",
            Func::StartsWith => "startsWith",
            Func::EndsWith => "endsWith",
            Func::Length => "length",
        }
    }

    fn arity(self) -> usize {
        match self {
            Func::Length => 1,
            _ => 2,
        }
    }
}

impl Expr {
    fn references<'a>(&'a self, out: &mut Vec<(&'a Reference, Range<usize>)>) {
        match &self.kind {
            Kind::Literal(_) => {}
            Kind::Ref(r) => out.push((r, self.span.clone())),
            Kind::Not(e) => e.references(out),
            Kind::And(a, b) | Kind::Or(a, b) | Kind::Compare(_, a, b) => {
                a.references(out);
                b.references(out);
            }
            Kind::Call(_, args) => args.iter().for_each(|a| a.references(out)),
        }
    }
}
