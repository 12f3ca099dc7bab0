//! Start-at forms, cron fire times against known values, and the sleep slices: across midnight,
//! month and year ends, leap years and DST changes in named zones.

use std::time::Duration;

use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::{America::New_York, Europe::Berlin, Tz};

use super::*;

fn berlin(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Tz> {
    Berlin
        .with_ymd_and_hms(y, mo, d, h, mi, 0)
        .earliest()
        .unwrap()
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

fn at(spec: &str, now: DateTime<Tz>) -> Result<String, String> {
    let parsed = parse_start_at(spec)?;
    resolve_start_at(&parsed, &now).map(|t| t.to_rfc3339())
}

fn fires(expr: &str, after: DateTime<Tz>, n: usize) -> Vec<String> {
    let s = parse_cron(expr).unwrap();
    next_fires(&s, &after, n)
        .iter()
        .map(|t| t.to_rfc3339())
        .collect()
}

#[test]
fn every_accepted_start_at_form() {
    let hms = |h, m, s| NaiveTime::from_hms_opt(h, m, s).unwrap();
    let today = |t| StartAt::TimeOfDay {
        time: t,
        tomorrow: false,
    };
    let secs = |s| StartAt::In(Duration::from_secs(s));
    let cases = [
        ("now", StartAt::Now),
        ("2h", secs(7_200)),
        ("30m", secs(1_800)),
        ("45s", secs(45)),
        ("1h30m", secs(5_400)),
        ("1h 30m 10s", secs(5_410)),
        ("1.5h", secs(5_400)),
        ("2d", secs(172_800)),
        ("14:30", today(hms(14, 30, 0))),
        ("14:30:15", today(hms(14, 30, 15))),
        ("0:05", today(hms(0, 5, 0))),
        ("2am", today(hms(2, 0, 0))),
        ("2 AM", today(hms(2, 0, 0))),
        ("10:30pm", today(hms(22, 30, 0))),
        ("12am", today(hms(0, 0, 0))),
        ("12pm", today(hms(12, 0, 0))),
        (
            "tomorrow 9am",
            StartAt::TimeOfDay {
                time: hms(9, 0, 0),
                tomorrow: true,
            },
        ),
    ];
    for (text, want) in cases {
        assert_eq!(parse_start_at(text), Ok(want), "{text}");
    }
    for iso in [
        "2026-11-26",
        "2026-11-26T02:00",
        "2026-11-26 02:00:30",
        "2026-11-26T02:00:00.250",
        "2026-11-26T02:00:00Z",
        "2026-11-26T02:00:00+01:00",
        "2026-11-26T02:00-05:00",
    ] {
        assert!(parse_start_at(iso).is_ok(), "{iso}");
    }
}

#[test]
fn every_rejected_start_at_form_says_why() {
    let cases = [
        ("13pm", "12-hour clock"),
        ("0am", "12-hour clock"),
        ("25:00", "not an hour"),
        ("14:60", "above 59"),
        ("soon", "not a delay, a time of day or a date"),
        ("", "empty"),
        ("tomorrow", "needs a time"),
        ("tomorrow soon", "not a time of day"),
        ("30", "not a delay"),
        ("2x", "not a delay"),
        ("30m1h", "out of order"),
        ("1h1h", "out of order"),
        ("2026-02-30", "not a delay"),
        ("2026-13-01T00:00", "not a delay"),
        ("-2h", "not a delay"),
        ("1:2:3:4", "not a delay"),
        ("999999h", "longer than the maximum of 36500d"),
        (
            "99999999999999999999999h",
            "longer than the maximum of 36500d",
        ),
    ];
    for (text, why) in cases {
        let err = parse_start_at(text).expect_err(text);
        assert!(err.contains(why), "{text}: {err}");
    }
    assert!(START_AT_FORMS.contains("10:30pm") && START_AT_FORMS.contains("tomorrow 9am"));
}

#[test]
fn times_of_day_roll_to_tomorrow_across_midnight_month_and_year_ends() {
    let now = berlin(2026, 11, 25, 10, 0);
    assert_eq!(at("14:30", now).unwrap(), "2026-11-25T14:30:00+01:00");
    assert_eq!(at("9am", now).unwrap(), "2026-11-26T09:00:00+01:00");
    assert_eq!(at("10:00", now).unwrap(), "2026-11-26T10:00:00+01:00");
    let late = berlin(2026, 11, 25, 23, 30);
    assert_eq!(at("2h", late).unwrap(), "2026-11-26T01:30:00+01:00");
    assert_eq!(at("1am", late).unwrap(), "2026-11-26T01:00:00+01:00");
    assert_eq!(
        at("2am", berlin(2026, 1, 31, 23, 0)).unwrap(),
        "2026-02-01T02:00:00+01:00"
    );
    assert_eq!(
        at("tomorrow 9am", berlin(2026, 12, 31, 8, 0)).unwrap(),
        "2027-01-01T09:00:00+01:00"
    );
}

#[test]
fn leap_years() {
    assert_eq!(
        at("tomorrow 1am", berlin(2028, 2, 28, 22, 0)).unwrap(),
        "2028-02-29T01:00:00+01:00"
    );
    assert_eq!(
        at("1am", berlin(2027, 2, 28, 22, 0)).unwrap(),
        "2027-03-01T01:00:00+01:00"
    );
    assert_eq!(
        fires("0 12 29 2 *", berlin(2026, 3, 1, 0, 0), 2),
        ["2028-02-29T12:00:00+01:00", "2032-02-29T12:00:00+01:00"]
    );
}

#[test]
fn start_at_across_dst_in_a_named_zone() {
    // Berlin springs forward at 02:00 on 29 March 2026: 02:30 does not exist that night.
    assert_eq!(
        at("2:30am", berlin(2026, 3, 28, 22, 0)).unwrap(),
        "2026-03-29T03:00:00+02:00"
    );
    // A delay is real time: two hours after 01:30 CET is 04:30 CEST.
    assert_eq!(
        at("2h", berlin(2026, 3, 29, 1, 30)).unwrap(),
        "2026-03-29T04:30:00+02:00"
    );
    // It falls back at 03:00 on 25 October: 02:30 happens twice; the first one counts.
    assert_eq!(
        at("2:30am", berlin(2026, 10, 24, 22, 0)).unwrap(),
        "2026-10-25T02:30:00+02:00"
    );
}

#[test]
fn dates_and_date_times() {
    let now = berlin(2026, 11, 25, 10, 0);
    assert_eq!(at("2026-11-26", now).unwrap(), "2026-11-26T00:00:00+01:00");
    assert_eq!(
        at("2026-11-26T02:00", now).unwrap(),
        "2026-11-26T02:00:00+01:00"
    );
    assert_eq!(
        at("2026-11-26T02:00:00Z", now).unwrap(),
        "2026-11-26T03:00:00+01:00"
    );
    assert!(at("2026-01-01", now).unwrap_err().contains("in the past"));
    assert!(
        at("2026-11-25T09:59", now)
            .unwrap_err()
            .contains("in the past")
    );
    assert_eq!(at("now", now).unwrap(), now.to_rfc3339());
}

#[test]
fn five_six_and_shortcut_forms() {
    assert!(parse_cron("0 2 * * *").is_ok());
    assert!(parse_cron("30 0 2 * * *").is_ok());
    for s in ["@hourly", "@daily", "@weekly", "@monthly", "@yearly"] {
        assert!(parse_cron(s).is_ok(), "{s}");
    }
    assert!(parse_cron("0 2 * *").unwrap_err().contains("4 fields"));
    assert!(
        parse_cron("* * * * * * * *")
            .unwrap_err()
            .contains("8 fields")
    );
    assert!(parse_cron("0 25 * * *").is_err());
    assert!(parse_cron("@sometimes").is_err());
}

#[test]
fn weekdays_are_numbered_as_in_classic_cron() {
    // Wednesday 25 November 2026.
    let wed = berlin(2026, 11, 25, 12, 0);
    let day = |expr| fires(expr, wed, 1)[0][..10].to_string();
    assert_eq!(day("0 2 * * 1"), "2026-11-30"); // Monday
    assert_eq!(day("0 2 * * 0"), "2026-11-29"); // Sunday
    assert_eq!(day("0 2 * * 7"), "2026-11-29"); // Sunday again
    assert_eq!(day("0 2 * * 4-5"), "2026-11-26"); // Thursday
    assert_eq!(day("0 2 * * 6-7"), "2026-11-28"); // Saturday
    assert_eq!(day("0 2 * * Mon-Fri"), "2026-11-26");
    assert_eq!(day("0 0 2 * * 1"), "2026-11-30"); // six fields: the same numbers
    let weekend_and_wed = fires("0 2 * * 0,3,6", wed, 3);
    assert_eq!(
        weekend_and_wed.iter().map(|t| &t[..10]).collect::<Vec<_>>(),
        ["2026-11-28", "2026-11-29", "2026-12-02"]
    );
    assert_eq!(day("0 2 * * */2"), "2026-11-26"); // Sun, Tue, Thu, Sat
    assert!(parse_cron("0 2 * * 8").is_err());
    assert!(parse_cron("0 2 * * 5-1").is_err());
}

#[test]
fn cron_next_fires_against_known_values() {
    let cases: [(&str, DateTime<Tz>, &[&str]); 7] = [
        (
            "0 2 * * *",
            berlin(2026, 11, 25, 4, 0),
            &["2026-11-26T02:00:00+01:00", "2026-11-27T02:00:00+01:00"],
        ),
        (
            "0 0 * * *",
            berlin(2026, 11, 25, 23, 59),
            &["2026-11-26T00:00:00+01:00"],
        ),
        (
            "0 0 31 * *",
            berlin(2026, 4, 1, 0, 0),
            &["2026-05-31T00:00:00+02:00", "2026-07-31T00:00:00+02:00"],
        ),
        (
            "@weekly",
            berlin(2026, 11, 25, 12, 0),
            &["2026-11-29T00:00:00+01:00"],
        ),
        (
            "@monthly",
            berlin(2026, 12, 15, 0, 0),
            &["2027-01-01T00:00:00+01:00"],
        ),
        (
            "@hourly",
            berlin(2026, 11, 25, 23, 10),
            &["2026-11-26T00:00:00+01:00"],
        ),
        (
            "*/20 * * * * *",
            berlin(2026, 11, 25, 12, 0),
            &[
                "2026-11-25T12:00:20+01:00",
                "2026-11-25T12:00:40+01:00",
                "2026-11-25T12:01:00+01:00",
            ],
        ),
    ];
    for (expr, after, want) in cases {
        assert_eq!(fires(expr, after, want.len()), want, "{expr}");
    }
}

#[test]
fn a_named_hour_in_a_dst_gap_fires_when_the_gap_ends_and_once_in_a_repeat() {
    assert_eq!(
        fires("30 2 * * *", berlin(2026, 3, 28, 12, 0), 2),
        ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
    );
    assert_eq!(
        fires("30 2 * * *", berlin(2026, 10, 24, 12, 0), 2),
        ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
    );
}

#[test]
fn an_every_hour_schedule_follows_real_time_across_dst() {
    assert_eq!(
        fires("*/30 * * * *", berlin(2026, 3, 29, 1, 0), 3),
        [
            "2026-03-29T01:30:00+01:00",
            "2026-03-29T03:00:00+02:00",
            "2026-03-29T03:30:00+02:00"
        ]
    );
    let before = Berlin.from_utc_datetime(&utc(2026, 10, 24, 23, 30, 0).naive_utc());
    assert_eq!(
        fires("0 * * * *", before, 3),
        [
            "2026-10-25T02:00:00+02:00",
            "2026-10-25T02:00:00+01:00",
            "2026-10-25T03:00:00+01:00"
        ]
    );
    let late_first_pass = Berlin.from_utc_datetime(&utc(2026, 10, 25, 0, 50, 0).naive_utc());
    assert_eq!(
        fires("*/20 * * * *", late_first_pass, 2),
        ["2026-10-25T02:00:00+01:00", "2026-10-25T02:20:00+01:00"]
    );
}

#[test]
fn a_year_of_fires_is_strictly_increasing_and_a_nightly_job_runs_once_a_day() {
    let s = parse_cron("30 1 * * *").unwrap();
    let start = New_York.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let all = next_fires(&s, &start, 365);
    assert!(all.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(all[364].to_rfc3339(), "2026-12-31T01:30:00-05:00");
    let quarter = parse_cron("*/15 * * * *").unwrap();
    let all = next_fires(&quarter, &start, 4 * 24 * 365);
    assert!(all.windows(2).all(|w| w[0] < w[1]));
    // The spring gap loses four quarters and the autumn repeat gains four: a year of real time.
    assert_eq!(
        all.last().unwrap().to_rfc3339(),
        "2027-01-01T00:00:00-05:00"
    );
}

#[test]
fn zones_and_missed_fires() {
    assert_eq!(Zone::parse(None), Ok(Zone::Local));
    assert_eq!(Zone::parse(Some("Europe/Berlin")), Ok(Zone::Named(Berlin)));
    assert!(Zone::parse(Some("Europe/Berln")).is_err());
    let z = Zone::Named(Berlin);
    let s = parse_cron("* * * * * *").unwrap();
    let from = utc(2026, 11, 25, 12, 0, 0);
    assert_eq!(
        z.fires_between(&s, from, utc(2026, 11, 25, 12, 0, 10), 100),
        10
    );
    assert_eq!(
        z.fires_between(&s, from, utc(2026, 11, 25, 13, 0, 0), 100),
        100
    );
    assert_eq!(
        z.next_fire(&parse_cron("0 2 * * *").unwrap(), from),
        Some(utc(2026, 11, 26, 1, 0, 0))
    );
}

#[test]
fn sleep_slices_re_read_the_clock() {
    let now = utc(2026, 11, 25, 12, 0, 0);
    let ms = chrono::Duration::milliseconds;
    assert_eq!(next_sleep(now, now + ms(3_200)), Some(SLICE));
    assert_eq!(
        next_sleep(now, now + ms(400)),
        Some(Duration::from_millis(400))
    );
    assert_eq!(next_sleep(now, now), None);
    // The clock jumped past the target (a suspend, an NTP step): fire now.
    assert_eq!(next_sleep(now + chrono::Duration::hours(3), now), None);
    let secs = Duration::from_secs;
    assert_eq!(crossed_mark(secs(3_601), secs(3_600)), Some(secs(3_600)));
    assert_eq!(crossed_mark(secs(3_600), secs(3_599)), None);
    assert_eq!(crossed_mark(secs(9_000), secs(8_999)), None);
    // Slept through several marks: only the latest is worth a line.
    assert_eq!(crossed_mark(secs(7_200), secs(250)), Some(secs(300)));
    assert_eq!(crossed_mark(secs(59), secs(58)), None);
}

#[tokio::test]
async fn a_clock_jump_during_a_long_sleep_is_noticed_within_a_slice() {
    // An hour to wait; after the first slice the machine "resumes" two hours later.
    let start = utc(2026, 11, 25, 12, 0, 0);
    let reads = std::cell::Cell::new(0);
    let clock = || {
        reads.set(reads.get() + 1);
        match reads.get() {
            1 => start,
            _ => start + chrono::Duration::hours(2),
        }
    };
    let mut ticks = 0;
    let began = std::time::Instant::now();
    super::sleep_until_by(start + chrono::Duration::hours(1), clock, |_| ticks += 1).await;
    assert_eq!(ticks, 1);
    assert!(began.elapsed() < SLICE + Duration::from_millis(500));
}
