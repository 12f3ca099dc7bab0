//! The condition parser: recursive descent over the text's bytes, one function per grammar rule
//! (see the module documentation of [`crate::condition`]). It stops at the first mistake.

use serde_json::Value;

use super::{Expr, Func, Kind, Op};
use crate::manifest::diagnostic::did_you_mean;
use crate::template::Error;
use crate::template::reference::{self, describe_at, next_char_end};

/// How deeply `(` and `!` may nest: deeper input is refused rather than risking the stack.
const MAX_DEPTH: usize = 64;

/// How many values and operators a condition may hold; this bounds the depth of its tree, which
/// checking and evaluating walk recursively.
const MAX_NODES: usize = 512;

const EXAMPLE: &str = r#"e.g. `jobs.test.status == "failed"`"#;

/// Parses a whole condition.
pub(super) fn parse(text: &str) -> Result<Expr, Error> {
    let (start, end) = unwrap(text);
    let mut p = Parser {
        text: &text[..end],
        pos: start,
        depth: 0,
        nodes: 0,
    };
    p.skip_spaces();
    if p.at_end() {
        return Err(Error::new(
            "the condition is empty",
            0..text.len(),
            format!("write a condition, {EXAMPLE}"),
        ));
    }
    let expr = p.or()?;
    p.skip_spaces();
    if !p.at_end() {
        return Err(p.unexpected("after the condition"));
    }
    Ok(expr)
}

/// The bytes to parse: inside one `${{ … }}` around the whole text, or all of it.
fn unwrap(text: &str) -> (usize, usize) {
    let trimmed = text.trim();
    let lead = text.len() - text.trim_start().len();
    if trimmed.len() >= 5 && trimmed.starts_with("${{") && trimmed.ends_with("}}") {
        (lead + 3, lead + trimmed.len() - 2)
    } else {
        (0, text.len())
    }
}

struct Parser<'a> {
    /// The text up to the end of what is parsed (a wrapping `}}` excluded).
    text: &'a str,
    pos: usize,
    depth: usize,
    /// Values and operators so far.
    nodes: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    /// Consumes `token` (after spaces) when it is next.
    fn eat(&mut self, token: &str) -> bool {
        self.skip_spaces();
        if self.text.as_bytes()[self.pos..].starts_with(token.as_bytes()) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn unexpected(&self, context: &str) -> Error {
        let rest = &self.text[self.pos..];
        let word: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let help = match word.as_str() {
            "and" => "write `&&` for and".to_string(),
            "or" => "write `||` for or".to_string(),
            "not" => "write `!` for not".to_string(),
            _ if rest.starts_with('=') => "compare with `==`".to_string(),
            _ if rest.starts_with("}}") || rest.starts_with('$') => {
                "write the whole condition inside one `${{ }}`, or without one".to_string()
            }
            _ if rest.starts_with('&') => "write `&&` for and".to_string(),
            _ if rest.starts_with('|') => "write `||` for or".to_string(),
            _ => "join conditions with `&&` or `||`".to_string(),
        };
        let end = if word.is_empty() {
            next_char_end(self.text, self.pos)
        } else {
            self.pos + word.len()
        };
        Error::new(
            format!("unexpected {} {context}", describe_at(self.text, self.pos)),
            self.pos..end,
            help,
        )
    }

    fn deeper(&mut self, at: usize) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Error::new(
                format!("the condition nests deeper than {MAX_DEPTH} levels"),
                at..next_char_end(self.text, at),
                "split it, or remove redundant parentheses and `!`",
            ));
        }
        Ok(())
    }

    /// Counts one more value or operator, starting at `at`.
    fn count(&mut self, at: usize) -> Result<(), Error> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(Error::new(
                format!("the condition holds more than {MAX_NODES} values and operators"),
                at..next_char_end(self.text, at),
                "split the job, or compute the decision in an upstream job's output",
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, Error> {
        let mut left = self.and()?;
        while self.eat("||") {
            self.count(self.pos - 2)?;
            let right = self.and()?;
            left = binary(left, right, Kind::Or);
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, Error> {
        let mut left = self.not()?;
        while self.eat("&&") {
            self.count(self.pos - 2)?;
            let right = self.not()?;
            left = binary(left, right, Kind::And);
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, Error> {
        self.skip_spaces();
        let start = self.pos;
        if self.peek() == Some(b'!') && self.text.as_bytes().get(start + 1) != Some(&b'=') {
            self.pos += 1;
            self.deeper(start)?;
            self.count(start)?;
            let operand = self.not()?;
            self.depth -= 1;
            let span = start..operand.span.end;
            return Ok(Expr {
                kind: Kind::Not(Box::new(operand)),
                span,
            });
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, Error> {
        let left = self.primary()?;
        let Some(op) = self.operator()? else {
            return Ok(left);
        };
        self.count(self.pos)?;
        let right = self.primary()?;
        let op_at = self.pos;
        if self.operator()?.is_some() {
            return Err(Error::new(
                "comparisons do not chain",
                left.span.start..op_at.max(self.pos),
                "join two comparisons with `&&`, or put one in parentheses",
            ));
        }
        let span = left.span.start..right.span.end;
        Ok(Expr {
            kind: Kind::Compare(op, Box::new(left), Box::new(right)),
            span,
        })
    }

    /// Consumes a comparison operator when one is next.
    fn operator(&mut self) -> Result<Option<Op>, Error> {
        self.skip_spaces();
        let rest = &self.text.as_bytes()[self.pos..];
        let (op, len) = match rest {
            [b'=', b'=', ..] => (Op::Eq, 2),
            [b'!', b'=', ..] => (Op::Ne, 2),
            [b'<', b'=', ..] => (Op::Le, 2),
            [b'>', b'=', ..] => (Op::Ge, 2),
            [b'<', ..] => (Op::Lt, 1),
            [b'>', ..] => (Op::Gt, 1),
            [b'=', ..] => {
                return Err(Error::new(
                    "`=` is not an operator",
                    self.pos..self.pos + 1,
                    "compare with `==`",
                ));
            }
            _ => return Ok(None),
        };
        self.pos += len;
        Ok(Some(op))
    }

    fn primary(&mut self) -> Result<Expr, Error> {
        self.skip_spaces();
        let start = self.pos;
        self.count(start)?;
        let literal = |value: Value, end: usize| Expr {
            kind: Kind::Literal(value),
            span: start..end,
        };
        match self.peek() {
            None => Err(Error::new(
                "the condition ends where a value was expected",
                start..start,
                format!("finish it, {EXAMPLE}"),
            )),
            Some(b'(') => {
                self.pos += 1;
                self.deeper(start)?;
                let inner = self.or()?;
                self.depth -= 1;
                if !self.eat(")") {
                    return Err(Error::new(
                        "this `(` is not closed",
                        start..start + 1,
                        format!(
                            "close it with `)`; found {} instead",
                            describe_at(self.text, self.pos)
                        ),
                    ));
                }
                Ok(Expr {
                    kind: inner.kind,
                    span: start..self.pos,
                })
            }
            Some(b'"' | b'\'') => {
                let (s, end) = reference::parse_quoted(self.text, start)?;
                self.pos = end;
                Ok(literal(Value::String(s), end))
            }
            Some(b'0'..=b'9' | b'-') => {
                let value = self.number()?;
                Ok(literal(value, self.pos))
            }
            Some(b) if b.is_ascii_alphabetic() || b == b'_' => self.word(start),
            Some(_) => Err(self.unexpected("where a value was expected")),
        }
    }

    /// `true`, `false`, `null`, a call or a reference, starting at `start`.
    fn word(&mut self, start: usize) -> Result<Expr, Error> {
        let bytes = self.text.as_bytes();
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let word = &self.text[start..end];
        let continues = bytes
            .get(end)
            .is_some_and(|&b| reference::is_name_byte(b) || b == b'.' || b == b'[');
        let value = match word {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            "null" => Some(Value::Null),
            _ => None,
        };
        if let Some(value) = value.filter(|_| !continues) {
            self.pos = end;
            return Ok(Expr {
                kind: Kind::Literal(value),
                span: start..end,
            });
        }
        let mut after = end;
        while bytes.get(after).is_some_and(|b| b.is_ascii_whitespace()) {
            after += 1;
        }
        if bytes.get(after) == Some(&b'(') {
            let Some(func) = Func::ALL.into_iter().find(|f| f.name() == word) else {
                let names = Func::ALL.map(Func::name);
                let mut help = format!("the functions are {}", names.join(", "));
                if let Some(near) = did_you_mean(word, names) {
                    help = format!("did you mean `{near}`? {help}");
                }
                return Err(Error::new(
                    format!("`{word}` is not a function"),
                    start..end,
                    help,
                ));
            };
            self.pos = after + 1;
            return self.call(func, start);
        }
        let (r, end) = reference::parse_at(self.text, start)?;
        self.pos = end;
        Ok(Expr {
            kind: Kind::Ref(r),
            span: start..end,
        })
    }

    /// The arguments of `func`, after its `(`, and the `)`.
    fn call(&mut self, func: Func, start: usize) -> Result<Expr, Error> {
        let mut args = Vec::new();
        if !self.eat(")") {
            loop {
                args.push(self.or()?);
                if self.eat(")") {
                    break;
                }
                if !self.eat(",") {
                    return Err(Error::new(
                        format!("expected `,` or `)` in the call of `{}`", func.name()),
                        self.pos..next_char_end(self.text, self.pos),
                        "separate arguments with `,` and close the call with `)`",
                    ));
                }
            }
        }
        let span = start..self.pos;
        if args.len() != func.arity() {
            let n = func.arity();
            return Err(Error::new(
                format!(
                    "`{}` takes {n} argument{}, not {}",
                    func.name(),
                    if n == 1 { "" } else { "s" },
                    args.len()
                ),
                span,
                match func {
                    Func::Length => "e.g. `length(jobs.plan.outputs.structured.tasks)`",
                    _ => "e.g. `contains(jobs.build.outputs.stdout, \"warning\")`",
                },
            ));
        }
        Ok(Expr {
            kind: Kind::Call(func, args),
            span,
        })
    }

    /// A JSON number.
    fn number(&mut self) -> Result<Value, Error> {
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let digits = |mut i: usize| {
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let mut i = start;
        if bytes[i] == b'-' {
            i += 1;
        }
        let int_end = digits(i);
        let mut end = int_end;
        let mut integer = true;
        if bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
            end = digits(end + 1);
            integer = false;
        }
        if matches!(bytes.get(end), Some(b'e' | b'E')) {
            let mut e = end + 1;
            if matches!(bytes.get(e), Some(b'+' | b'-')) {
                e += 1;
            }
            if bytes.get(e).is_some_and(u8::is_ascii_digit) {
                end = digits(e);
                integer = false;
            }
        }
        let text = &self.text[start..end];
        let bad = |why: &str| {
            Error::new(
                format!("`{text}` is not a number: {why}"),
                start..end.max(start + 1),
                "write a number like 3, -1.5 or 1e6",
            )
        };
        if int_end == i {
            return Err(bad("a digit must follow `-`"));
        }
        self.pos = end;
        if integer && let Ok(n) = text.parse::<i64>() {
            return Ok(Value::from(n));
        }
        let f: f64 = text.parse().map_err(|_| bad("it cannot be read"))?;
        serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| bad("it is too large"))
    }
}

fn binary(left: Expr, right: Expr, kind: fn(Box<Expr>, Box<Expr>) -> Kind) -> Expr {
    let span = left.span.start..right.span.end;
    Expr {
        kind: kind(Box::new(left), Box::new(right)),
        span,
    }
}
