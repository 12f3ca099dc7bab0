//! Token counts and costs taken from lenient scalars, safely: a count is an integer in
//! `0..=TOKEN_CAP`, a cost a finite dollar figure in `0.0..=COST_CAP_USD`.
//!
//! Owns the rule for every usage figure the parser reads. It must never wrap, never pass on a
//! NaN, an infinity or a negative figure, and never drop a figure silently: whatever it changes
//! it records as an [`Anomaly`]. Absent or `null` fields are zero without an anomaly (Claude Code
//! leaves out what it did not use), and so are numeric strings ("5"), a known producer quirk.

use std::fmt::Display;

use super::lenient::Scalar;
use super::{Anomaly, COST_CAP_USD, TOKEN_CAP};

/// The anomalies found while reading one line.
#[derive(Debug, Default)]
pub(super) struct Anomalies(pub(super) Vec<Anomaly>);

impl Anomalies {
    fn push(&mut self, field: impl Display, value: String, problem: &str, counted: String) {
        self.0.push(Anomaly {
            field: field.to_string(),
            value,
            problem: problem.to_owned(),
            counted,
        });
    }

    /// A token count: the value, or the cap when above it, or 0 when it is not a count. `field`
    /// is written out only for an anomaly (a usage line is counted thousands of times a second).
    pub(super) fn tokens(&mut self, field: impl Display, v: &Scalar<'_>) -> u64 {
        let counted = match *v {
            Scalar::Null => return 0,
            Scalar::UInt(n) => Ok(n),
            Scalar::Int(n) => u64::try_from(n).map_err(|_| ("is negative", 0)),
            Scalar::Float(f) => float_count(f),
            Scalar::Str(ref s) => match s.trim().parse::<u64>() {
                Ok(n) => Ok(n),
                Err(_) => match s.trim().parse::<f64>() {
                    Ok(f) => float_count(f),
                    Err(_) => Err(("is not a number", 0)),
                },
            },
            Scalar::Bool(_) | Scalar::Other => Err(("is not a number", 0)),
        };
        match counted {
            Ok(n) if n <= TOKEN_CAP => n,
            Ok(_) => {
                self.push(
                    field,
                    shown(v),
                    "is above the cap of 10^12 tokens",
                    TOKEN_CAP.to_string(),
                );
                TOKEN_CAP
            }
            Err((problem, n)) => {
                let n = n.min(TOKEN_CAP);
                self.push(field, shown(v), problem, n.to_string());
                n
            }
        }
    }

    /// A cost in dollars: the value, or the cap when above it, or `None` (rejected) when it is
    /// negative, not finite or not a number. Absent or null is `Some(0.0)`.
    pub(super) fn cost(&mut self, field: impl Display, v: &Scalar<'_>) -> Option<f64> {
        let usd = match *v {
            Scalar::Null => return Some(0.0),
            Scalar::UInt(n) => n as f64,
            Scalar::Int(n) => n as f64,
            Scalar::Float(f) => f,
            Scalar::Str(ref s) => s.trim().parse::<f64>().unwrap_or(f64::NAN),
            Scalar::Bool(_) | Scalar::Other => f64::NAN,
        };
        let problem = if usd.is_nan() {
            "is not a number"
        } else if usd.is_infinite() {
            "is not finite"
        } else if usd < 0.0 {
            "is negative"
        } else if usd > COST_CAP_USD {
            self.push(
                field,
                shown(v),
                "is above the cap of $1,000,000",
                format!("${COST_CAP_USD}"),
            );
            return Some(COST_CAP_USD);
        } else {
            return Some(usd);
        };
        self.push(field, shown(v), problem, "$0 (rejected)".into());
        None
    }
}

/// A float as a token count: integral floats are counts (a producer quirk), +infinity is above
/// the cap; a fraction is an anomaly counted without its fractional part; the error carries the
/// problem and the count.
fn float_count(f: f64) -> Result<u64, (&'static str, u64)> {
    if f.is_nan() {
        Err(("is not a number", 0))
    } else if f == f64::INFINITY {
        // Above any cap (`1e309`, "inf"): counted at the cap, which errs on the side of budgets.
        Ok(u64::MAX)
    } else if f < 0.0 {
        Err(("is negative", 0))
    } else if f.fract() != 0.0 {
        // `as` saturates; the caller caps.
        Err(("is not a whole number", f.trunc() as u64))
    } else {
        Ok(f as u64)
    }
}

/// A scalar as it was written, for the anomaly's message.
fn shown(v: &Scalar<'_>) -> String {
    match v {
        Scalar::Str(s) => format!("{:?}", s.chars().take(40).collect::<String>()),
        Scalar::UInt(n) => n.to_string(),
        Scalar::Int(n) => n.to_string(),
        Scalar::Float(f) => f.to_string(),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Null => "null".into(),
        Scalar::Other => "an object or array".into(),
    }
}
