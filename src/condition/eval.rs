//! Evaluating a condition against the values of a run (the runner's side).

use serde_json::Value;

use super::{Condition, Expr, Func, Kind, Op};
use crate::template::Values;
use crate::template::path::kind;

/// Evaluates a condition: whether it holds. Truthiness, equality and ordering are as in the
/// module documentation; `&&` and `||` short-circuit. Fails when a reference has no value
/// (naming it) or an operation meets values it cannot take (e.g. `<` between a string and a
/// number).
pub fn eval(c: &Condition, values: &dyn Values) -> Result<bool, String> {
    value(&c.expr, values).map(|v| truthy(&v))
}

/// GitHub Actions' truthiness: `false`, `null`, `0`, `""` and `[]` are false.
pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(_) => true,
    }
}

/// Equality: different JSON types are unequal, numbers compare by value.
pub(crate) fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

fn value(e: &Expr, values: &dyn Values) -> Result<Value, String> {
    Ok(match &e.kind {
        Kind::Literal(v) => v.clone(),
        Kind::Ref(r) => values.get(r).map_err(|why| format!("`{r}`: {why}"))?,
        Kind::Not(inner) => Value::Bool(!truthy(&value(inner, values)?)),
        Kind::And(a, b) => Value::Bool(truthy(&value(a, values)?) && truthy(&value(b, values)?)),
        Kind::Or(a, b) => Value::Bool(truthy(&value(a, values)?) || truthy(&value(b, values)?)),
        Kind::Compare(op, a, b) => {
            let (x, y) = (value(a, values)?, value(b, values)?);
            Value::Bool(compare(*op, &x, &y)?)
        }
        Kind::Call(func, args) => {
            let args = args
                .iter()
                .map(|a| value(a, values))
                .collect::<Result<Vec<_>, _>>()?;
            call(*func, &args)?
        }
    })
}

fn compare(op: Op, x: &Value, y: &Value) -> Result<bool, String> {
    use std::cmp::Ordering;
    let order = match op {
        Op::Eq => return Ok(equal(x, y)),
        Op::Ne => return Ok(!equal(x, y)),
        _ => match (x, y) {
            (Value::Number(a), Value::Number(b)) => {
                let (a, b) = (a.as_f64(), b.as_f64());
                a.partial_cmp(&b).expect("JSON numbers are never NaN")
            }
            (Value::String(a), Value::String(b)) => a.cmp(b),
            _ => {
                return Err(format!(
                    "`{}` compares two numbers or two strings, not {} and {}",
                    op.text(),
                    kind(x),
                    kind(y)
                ));
            }
        },
    };
    Ok(match op {
        Op::Lt => order == Ordering::Less,
        Op::Le => order != Ordering::Greater,
        Op::Gt => order == Ordering::Greater,
        _ => order != Ordering::Less,
    })
}

fn call(func: Func, args: &[Value]) -> Result<Value, String> {
    let name = func.name();
    Ok(match (func, args) {
        (Func::Contains, [Value::String(hay), Value::String(needle)]) => {
            Value::Bool(hay.contains(needle.as_str()))
        }
        (Func::Contains, [Value::Array(items), needle]) => {
            Value::Bool(items.iter().any(|i| equal(i, needle)))
        }
        (Func::Contains, [Value::String(_), other]) => {
            return Err(format!(
                "`contains` looks for a string in a string, not for {}",
                kind(other)
            ));
        }
        (Func::Contains, [other, _]) => {
            return Err(format!(
                "`contains` looks in a string or an array, not in {}",
                kind(other)
            ));
        }
        (Func::StartsWith, [Value::String(a), Value::String(b)]) => {
            Value::Bool(a.starts_with(b.as_str()))
        }
        (Func::EndsWith, [Value::String(a), Value::String(b)]) => {
            Value::Bool(a.ends_with(b.as_str()))
        }
        (Func::StartsWith | Func::EndsWith, [a, b]) => {
            return Err(format!(
                "`{name}` takes two strings, not {} and {}",
                kind(a),
                kind(b)
            ));
        }
        (Func::Length, [Value::String(s)]) => Value::from(s.chars().count()),
        (Func::Length, [Value::Array(a)]) => Value::from(a.len()),
        (Func::Length, [other]) => {
            return Err(format!(
                "`length` counts a string's characters or an array's items, not {}",
                kind(other)
            ));
        }
        _ => unreachable!("the parser checks every call's arity"),
    })
}
