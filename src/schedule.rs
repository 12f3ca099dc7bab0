//! Scheduling: cron expressions (and, later, `--start-at`). `now` is always a parameter.

use std::str::FromStr;

use chrono::{DateTime, TimeZone};

/// Parses a cron expression: 5 fields (minute first), 6 with seconds first, or an @-shortcut.
pub fn parse_cron(expr: &str) -> Result<cron::Schedule, String> {
    let expr = expr.trim();
    let fields = expr.split_whitespace().count();
    let full = if !expr.starts_with('@') && fields == 5 {
        format!("0 {expr}")
    } else if expr.starts_with('@') || fields == 6 {
        expr.to_string()
    } else {
        return Err(format!("it has {fields} fields; expected 5 or 6"));
    };
    cron::Schedule::from_str(&full).map_err(|e| e.to_string())
}

/// The next `n` fire times of a schedule after `now`.
pub fn next_fires<Z: TimeZone>(
    schedule: &cron::Schedule,
    now: &DateTime<Z>,
    n: usize,
) -> Vec<DateTime<Z>> {
    schedule.after(now).take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn five_six_and_shortcut_forms() {
        assert!(parse_cron("0 2 * * *").is_ok());
        assert!(parse_cron("30 0 2 * * *").is_ok());
        assert!(parse_cron("@daily").is_ok());
        assert!(parse_cron("0 2 * *").unwrap_err().contains("4 fields"));
        assert!(parse_cron("0 25 * * *").is_err());
    }

    #[test]
    fn next_fire_of_a_nightly_schedule() {
        let s = parse_cron("0 2 * * *").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 4, 0, 0).unwrap();
        let next = next_fires(&s, &now, 2);
        assert_eq!(
            next[0],
            Utc.with_ymd_and_hms(2026, 11, 26, 2, 0, 0).unwrap()
        );
        assert_eq!(
            next[1],
            Utc.with_ymd_and_hms(2026, 11, 27, 2, 0, 0).unwrap()
        );
    }
}
