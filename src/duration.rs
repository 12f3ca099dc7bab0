//! Durations as people write them in manifests and flags: "500ms", "5s", "30m", "2h", "1d", "1h30m",
//! or a bare number of seconds ("2.5"), and back again for display.
//!
//! Owns the one limit every user-written duration obeys, [`MAX`]: a value is capped when it is
//! parsed, so that no later `Instant + duration` or `now - period` can overflow. Never reads a clock.

use std::time::Duration;

/// The longest duration orch accepts, in manifests and flags: a century. Nothing orch waits for
/// lasts longer, and every instant a century away still fits `Instant` and `DateTime<Utc>`.
pub const MAX: Duration = Duration::from_secs(36_500 * 86_400);

/// [`MAX`] as people read it, for messages.
pub const MAX_TEXT: &str = "36500d (100 years)";

/// Why a text is not a duration.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// Not shaped like a duration; the text says what is wrong in a few words.
    #[error("{0}")]
    Invalid(String),
    /// A duration, but longer than [`MAX`].
    #[error("it is longer than the maximum of {MAX_TEXT}")]
    TooLong,
}

impl From<String> for ParseError {
    fn from(reason: String) -> Self {
        ParseError::Invalid(reason)
    }
}

/// Parses a duration of at most [`MAX`].
pub fn parse(text: &str) -> Result<Duration, ParseError> {
    let s = text.trim();
    if s.is_empty() {
        return Err("it is empty".to_string().into());
    }
    if let Ok(seconds) = s.parse::<f64>() {
        return seconds_to_duration(seconds);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("expected a number at `{rest}`").into());
        }
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{}` is not a number", &rest[..digits]))?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let scale = match unit {
            "ms" => 0.001,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hrs" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            "" => return Err(format!("`{number}` has no unit").into()),
            other => return Err(format!("unknown unit `{other}`").into()),
        };
        total += number * scale;
        rest = rest[unit_len..].trim_start();
    }
    seconds_to_duration(total)
}

/// Seconds as a duration of at most [`MAX`] (a huge or infinite number is too long, not invalid).
pub fn seconds_to_duration(seconds: f64) -> Result<Duration, ParseError> {
    if seconds.is_nan() || seconds < 0.0 {
        return Err("it must be zero or more".to_string().into());
    }
    if seconds > MAX.as_secs_f64() {
        return Err(ParseError::TooLong);
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| ParseError::TooLong)
}

/// The instant `d` before `now`, or the earliest instant chrono knows when that is further back
/// (never a panic, whatever `d` is).
pub fn before(now: chrono::DateTime<chrono::Utc>, d: Duration) -> chrono::DateTime<chrono::Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

/// Formats a duration compactly: "0s", "250ms", "5s", "2m30s", "1h", "2d3h".
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 && ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    let frac = d.subsec_millis();
    if frac != 0 && d.as_secs() < 60 {
        out = format!("{:.1}s", d.as_secs_f64());
    }
    out
}

/// Serializes a duration as whole milliseconds (the unit of every `*_ms` field orch writes).
pub fn serialize_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse(" 10000s "), Ok(Duration::from_secs(10000)));
    }

    #[test]
    fn rejects_nonsense() {
        assert!(parse("").is_err());
        assert!(
            parse("5 parsecs")
                .unwrap_err()
                .to_string()
                .contains("parsecs")
        );
        assert!(parse("-5").is_err());
        assert!(parse("5").is_ok());
        assert!(parse("h").is_err());
        assert_eq!(parse("1e400"), Err(ParseError::TooLong));
    }

    #[test]
    fn caps_at_a_century() {
        assert_eq!(parse("36500d"), Ok(MAX));
        for text in ["36500d1s", "1e19", "999999999999h", "18446744073709551616s"] {
            assert_eq!(parse(text), Err(ParseError::TooLong), "{text}");
        }
        assert!(
            parse("1e19")
                .unwrap_err()
                .to_string()
                .contains("36500d (100 years)")
        );
    }

    #[test]
    fn before_never_overflows() {
        let now = chrono::Utc::now();
        assert_eq!(
            before(now, Duration::from_secs(60)),
            now - chrono::Duration::seconds(60)
        );
        assert_eq!(
            before(now, Duration::MAX),
            chrono::DateTime::<chrono::Utc>::MIN_UTC
        );
        assert!(before(now, MAX) < now);
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format(Duration::from_secs(5)), "5s");
        assert_eq!(format(Duration::from_secs(150)), "2m30s");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::from_millis(2500)), "2.5s");
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(Duration::from_secs(10000)), "2h46m40s");
    }
}
