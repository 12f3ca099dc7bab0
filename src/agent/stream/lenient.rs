//! Lenient serde building blocks for the stream-json parser: scalars of any JSON type, objects and
//! arrays that turn into `None`/empty when a field arrives with an unexpected shape.
//!
//! Owns only type tolerance; it must never fail a whole line because one field drifted in type
//! (Claude Code adds and changes fields between releases), and never builds a `serde_json::Value`.

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// Visitor methods that map every non-container JSON value to `$empty`.
macro_rules! scalars_are_empty {
    ($empty:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($empty)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($empty)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($empty)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($empty)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($empty)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($empty)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($empty)
        }
    };
}

/// Any JSON value reduced to a scalar; objects and arrays are skipped and become `Other`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) enum Scalar<'a> {
    Str(Cow<'a, str>),
    UInt(u64),
    Int(i64),
    Float(f64),
    Bool(bool),
    #[default]
    Null,
    Other,
}

impl<'a> Scalar<'a> {
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn to_string_opt(&self) -> Option<String> {
        self.as_str().map(str::to_owned)
    }

    /// The string itself, borrowed from the line when it was written without escapes.
    pub(crate) fn into_str(self) -> Option<Cow<'a, str>> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_u64(&self) -> Option<u64> {
        match *self {
            Scalar::UInt(n) => Some(n),
            Scalar::Int(n) => u64::try_from(n).ok(),
            // Truncation is intended: a float count is a producer quirk, not a fraction.
            Scalar::Float(f) if f >= 0.0 && f.is_finite() => Some(f as u64),
            Scalar::Str(ref s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub(crate) fn as_i64(&self) -> Option<i64> {
        match *self {
            Scalar::UInt(n) => i64::try_from(n).ok(),
            Scalar::Int(n) => Some(n),
            Scalar::Float(f) if f.is_finite() => Some(f as i64),
            Scalar::Str(ref s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub(crate) fn as_f64(&self) -> Option<f64> {
        match *self {
            Scalar::UInt(n) => Some(n as f64),
            Scalar::Int(n) => Some(n as f64),
            Scalar::Float(f) => Some(f),
            Scalar::Str(ref s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub(crate) fn as_bool(&self) -> Option<bool> {
        match *self {
            Scalar::Bool(b) => Some(b),
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor(PhantomData))
    }
}

struct ScalarVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for ScalarVisitor<'a> {
    type Value = Scalar<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::UInt(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Scalar::deserialize(d)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
}

/// An owned numeric field (a [`Scalar`] that never borrows), for structs without a lifetime;
/// read through `figures`, which checks and caps it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Num(pub(crate) Scalar<'static>);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Going through an owned string keeps the 'static lifetime; numbers never borrow.
        let scalar = Scalar::deserialize(d)?;
        Ok(Num(match scalar {
            Scalar::Str(s) => Scalar::Str(std::borrow::Cow::Owned(s.into_owned())),
            Scalar::UInt(n) => Scalar::UInt(n),
            Scalar::Int(n) => Scalar::Int(n),
            Scalar::Float(f) => Scalar::Float(f),
            Scalar::Bool(b) => Scalar::Bool(b),
            Scalar::Null => Scalar::Null,
            Scalar::Other => Scalar::Other,
        }))
    }
}

/// An object field: `Some(T)` when the value is a JSON object, `None` for anything else.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Lenient<T>(pub(crate) Option<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Lenient(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LenientVisitor(PhantomData))
    }
}

struct LenientVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for LenientVisitor<T> {
    type Value = Lenient<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(|t| Lenient(Some(t)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Lenient(None))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Lenient::deserialize(d)
    }
    scalars_are_empty!(Lenient(None));
}

/// An array field: the elements that are objects of shape `T`; anything else is empty.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LenientVec<T>(pub(crate) Vec<T>);

impl<T> Default for LenientVec<T> {
    fn default() -> Self {
        LenientVec(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for LenientVec<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(VecVisitor(PhantomData))
    }
}

struct VecVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for VecVisitor<T> {
    type Value = LenientVec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Lenient(item)) = seq.next_element::<Lenient<T>>()? {
            out.extend(item);
        }
        Ok(LenientVec(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(LenientVec(Vec::new()))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        LenientVec::deserialize(d)
    }
    scalars_are_empty!(LenientVec(Vec::new()));
}

/// An array of strings; non-string elements and non-array values are dropped.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Strings(pub(crate) Vec<String>);

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StringsVisitor)
    }
}

struct StringsVisitor;

impl<'de> Visitor<'de> for StringsVisitor {
    type Value = Strings;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element::<Scalar>()? {
            out.extend(item.to_string_opt());
        }
        Ok(Strings(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Strings(Vec::new()))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Strings::deserialize(d)
    }
    scalars_are_empty!(Strings(Vec::new()));
}

/// The line with every number literal that overflows an f64 (`1e309`, a 400-digit integer)
/// put in quotes, or `None` when there is none (then the line is broken for another reason).
///
/// A small scanner, not a parser: it tracks only whether it is inside a string, which is all it
/// takes to find number literals in a line serde_json will parse anyway.
pub(crate) fn quote_overflowing_numbers(line: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(line.len() + 16);
    let mut changed = false;
    let mut in_string = false;
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if in_string {
            out.push(b);
            match b {
                b'\\' if i + 1 < line.len() => {
                    out.push(line[i + 1]);
                    i += 2;
                    continue;
                }
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
        } else if b == b'"' {
            in_string = true;
            out.push(b);
            i += 1;
        } else if b == b'-' || b.is_ascii_digit() {
            let start = i;
            while i < line.len()
                && matches!(line[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
            {
                i += 1;
            }
            let literal = &line[start..i];
            let overflows = std::str::from_utf8(literal)
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
                .is_some_and(f64::is_infinite);
            if overflows {
                out.push(b'"');
                out.extend_from_slice(literal);
                out.push(b'"');
                changed = true;
            } else {
                out.extend_from_slice(literal);
            }
        } else {
            out.push(b);
            i += 1;
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Default, Debug)]
    #[serde(default)]
    struct Probe<'a> {
        #[serde(borrow)]
        s: Scalar<'a>,
        o: Lenient<Inner>,
        v: LenientVec<Inner>,
    }

    #[derive(serde::Deserialize, Default, Debug, PartialEq)]
    #[serde(default)]
    struct Inner {
        n: u64,
    }

    #[test]
    fn wrong_shapes_become_empty_instead_of_errors() {
        let p: Probe = serde_json::from_str(r#"{"s":{"x":[1]},"o":[1,2],"v":"nope"}"#).unwrap();
        assert_eq!(p.s, Scalar::Other);
        assert_eq!(p.o.0, None);
        assert!(p.v.0.is_empty());
    }

    #[test]
    fn right_shapes_parse_and_non_objects_in_arrays_are_dropped() {
        let p: Probe =
            serde_json::from_str(r#"{"s":"hi","o":{"n":3},"v":[{"n":1},5,{"n":2}]}"#).unwrap();
        assert_eq!(p.s.as_str(), Some("hi"));
        assert_eq!(p.o.0, Some(Inner { n: 3 }));
        assert_eq!(p.v.0, vec![Inner { n: 1 }, Inner { n: 2 }]);
    }

    #[test]
    fn scalars_convert_across_types() {
        assert_eq!(Scalar::Str("42".into()).as_u64(), Some(42));
        assert_eq!(Scalar::Float(3.0).as_u64(), Some(3));
        assert_eq!(Scalar::Int(-1).as_u64(), None);
        assert_eq!(Scalar::UInt(7).as_f64(), Some(7.0));
        assert_eq!(Scalar::Null.as_bool(), None);
    }

    #[test]
    fn only_overflowing_number_literals_are_quoted() {
        let line = br#"{"a":1e309,"b":"1e309 \" 1e999","c":-1e400,"d":12.5e3}"#;
        let quoted = quote_overflowing_numbers(line).unwrap();
        assert_eq!(
            String::from_utf8(quoted).unwrap(),
            r#"{"a":"1e309","b":"1e309 \" 1e999","c":"-1e400","d":12.5e3}"#
        );
        assert_eq!(quote_overflowing_numbers(br#"{"a":1e308,"b":"x"}"#), None);
    }
}
