//! The load-time type check of a condition: mistakes that would make it always false, or fail
//! whenever it is evaluated, found before anything runs.

use serde_json::Value;

use super::{Condition, Expr, Func, Kind, Op};
use crate::events::Status;
use crate::manifest::diagnostic::did_you_mean;
use crate::template::{Error, Reference};

/// What the loader knows a reference yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    /// A string.
    String,
    /// A number.
    Number,
    /// `true` or `false`.
    Bool,
    /// A job's status: a string, one of [`Status`]'s names.
    Status,
    /// A JSON array.
    Array,
    /// Not known at load time: anything passes.
    Any,
}

/// A node's type while checking: a [`Type`], or what only literals have.
#[derive(Clone, Debug, PartialEq)]
enum Ty {
    Known(Type),
    Null,
    /// A string literal, whose text is known.
    Text(String),
}

impl Ty {
    fn base(&self) -> Option<Type> {
        match self {
            Ty::Known(t) => Some(*t),
            Ty::Text(_) => Some(Type::String),
            Ty::Null => None,
        }
    }

    fn is(&self, t: Type) -> bool {
        self.base() == Some(t)
    }

    fn is_any(&self) -> bool {
        self.is(Type::Any)
    }

    fn is_stringish(&self) -> bool {
        matches!(self.base(), Some(Type::String | Type::Status))
    }

    fn name(&self) -> &'static str {
        match self.base() {
            Some(Type::String) => "a string",
            Some(Type::Number) => "a number",
            Some(Type::Bool) => "a boolean",
            Some(Type::Status) => "a status",
            Some(Type::Array) => "an array",
            Some(Type::Any) => "a value",
            None => "null",
        }
    }
}

/// Every status name, in [`Status`]'s order.
pub(crate) fn statuses() -> Vec<&'static str> {
    use Status::*;
    // The match makes a new status a compile error here until it is listed.
    let listed = |s: Status| match s {
        Pending | Running | Completed | Failed | Skipped | Blocked | BudgetExceeded | TimedOut
        | Cancelled => s,
    };
    [
        Pending,
        Running,
        Completed,
        Failed,
        Skipped,
        Blocked,
        BudgetExceeded,
        TimedOut,
        Cancelled,
    ]
    .map(|s| listed(s).as_str())
    .to_vec()
}

/// Type-checks a condition, given what each reference yields; returns every mistake, each with
/// its span in the condition text and a help line. See the module documentation for the rules.
pub fn check(c: &Condition, type_of: &dyn Fn(&Reference) -> Type) -> Vec<Error> {
    let mut errors = Vec::new();
    ty(&c.expr, type_of, &mut errors);
    errors
}

fn ty(e: &Expr, type_of: &dyn Fn(&Reference) -> Type, errors: &mut Vec<Error>) -> Ty {
    match &e.kind {
        Kind::Literal(Value::String(s)) => Ty::Text(s.clone()),
        Kind::Literal(Value::Number(_)) => Ty::Known(Type::Number),
        Kind::Literal(Value::Bool(_)) => Ty::Known(Type::Bool),
        Kind::Literal(Value::Null) => Ty::Null,
        // The grammar has no array or object literals.
        Kind::Literal(_) => Ty::Known(Type::Any),
        Kind::Ref(r) => Ty::Known(type_of(r)),
        Kind::Not(inner) => {
            ty(inner, type_of, errors);
            Ty::Known(Type::Bool)
        }
        Kind::And(a, b) | Kind::Or(a, b) => {
            ty(a, type_of, errors);
            ty(b, type_of, errors);
            Ty::Known(Type::Bool)
        }
        Kind::Compare(op, a, b) => {
            let (ta, tb) = (ty(a, type_of, errors), ty(b, type_of, errors));
            compare(*op, (a, &ta), (b, &tb), e, errors);
            Ty::Known(Type::Bool)
        }
        Kind::Call(func, args) => {
            let types: Vec<Ty> = args.iter().map(|a| ty(a, type_of, errors)).collect();
            call(*func, args, &types, errors);
            match func {
                Func::Length => Ty::Known(Type::Number),
                _ => Ty::Known(Type::Bool),
            }
        }
    }
}

fn compare(op: Op, a: (&Expr, &Ty), b: (&Expr, &Ty), whole: &Expr, errors: &mut Vec<Error>) {
    // A status against a string literal: the literal must name a status.
    for ((_, ts), (other, to)) in [(a, b), (b, a)] {
        if ts.is(Type::Status)
            && let Ty::Text(text) = to
            && !statuses().contains(&text.as_str())
        {
            let names = statuses();
            let mut help = format!("a status is one of: {}", names.join(", "));
            if let Some(near) = did_you_mean(text, names.iter().copied()) {
                help = format!("did you mean \"{near}\"? {help}");
            }
            errors.push(Error::new(
                format!("\"{text}\" is not a status"),
                other.span.clone(),
                help,
            ));
            return;
        }
    }
    let (ta, tb) = (a.1, b.1);
    if op.is_ordering() {
        for (e, t) in [a, b] {
            let fits = t.is_any() || t.is(Type::Number) || t.is(Type::String);
            if !fits {
                let why = if t.is(Type::Status) {
                    "statuses are not ordered; compare them with `==` or `!=`".to_string()
                } else {
                    format!("`{}` compares two numbers or two strings", op.text())
                };
                errors.push(Error::new(
                    format!("`{}` cannot order {}", op.text(), t.name()),
                    e.span.clone(),
                    why,
                ));
                return;
            }
        }
        if !ta.is_any() && !tb.is_any() && ta.base() != tb.base() {
            errors.push(Error::new(
                format!("`{}` between {} and {}", op.text(), ta.name(), tb.name()),
                whole.span.clone(),
                format!("`{}` compares two numbers or two strings", op.text()),
            ));
        }
        return;
    }
    // `==` and `!=`: null may be compared with anything, a status with any string.
    if ta.is_any() || tb.is_any() || *ta == Ty::Null || *tb == Ty::Null {
        return;
    }
    if ta.is_stringish() && tb.is_stringish() || ta.base() == tb.base() {
        return;
    }
    let help = if ta.is(Type::Status) || tb.is(Type::Status) {
        format!("a status is a string, one of: {}", statuses().join(", "))
    } else {
        "values of different types are never equal; write both sides as the same type \
         (e.g. `0`, not `\"0\"`, for a number)"
            .to_string()
    };
    errors.push(Error::new(
        format!(
            "`{}` between {} and {} is always {}",
            op.text(),
            ta.name(),
            tb.name(),
            op == Op::Ne
        ),
        whole.span.clone(),
        help,
    ));
}

fn call(func: Func, args: &[Expr], types: &[Ty], errors: &mut Vec<Error>) {
    let bad = |errors: &mut Vec<Error>, at: &Expr, what: String, help: &str| {
        errors.push(Error::new(what, at.span.clone(), help));
    };
    let name = func.name();
    match func {
        Func::Contains => {
            let (hay, needle) = (&types[0], &types[1]);
            if hay.is_any() || hay.is(Type::Array) {
                return;
            }
            if !hay.is_stringish() {
                bad(
                    errors,
                    &args[0],
                    format!("`contains` cannot look in {}", hay.name()),
                    "`contains` looks in a string or an array",
                );
            } else if !needle.is_any() && !needle.is_stringish() {
                bad(
                    errors,
                    &args[1],
                    format!("`contains` cannot look for {} in a string", needle.name()),
                    "in a string, `contains` looks for a string",
                );
            }
        }
        Func::StartsWith | Func::EndsWith => {
            for (arg, t) in args.iter().zip(types) {
                if !t.is_any() && !t.is_stringish() {
                    bad(
                        errors,
                        arg,
                        format!("`{name}` takes strings, not {}", t.name()),
                        "both arguments must be strings",
                    );
                }
            }
        }
        Func::Length => {
            let t = &types[0];
            if !(t.is_any() || t.is_stringish() || t.is(Type::Array)) {
                bad(
                    errors,
                    &args[0],
                    format!("`length` cannot measure {}", t.name()),
                    "`length` counts a string's characters or an array's items",
                );
            }
        }
    }
}
