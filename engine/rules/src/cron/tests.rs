//! Expected times are worked out by hand from cron(5). Calendar anchors: 2024-09-19 is a
//! Thursday (2024-01-01 was a Monday, day 263 of the leap year); the base instant is the
//! tutorial's BackupConfiguration creation time 2024-09-19T04:49:38Z.

use super::*;
use proptest::prelude::*;

use kstash_testkit::ts;

const BASE: &str = "2024-09-19T04:49:38Z";

#[test]
fn next_after_table() {
    let cases: &[(&str, &str, &str)] = &[
        ("*/5 * * * *", BASE, "2024-09-19T04:50:00Z"),
        ("0 * * * *", BASE, "2024-09-19T05:00:00Z"),
        ("@hourly", BASE, "2024-09-19T05:00:00Z"),
        ("@daily", BASE, "2024-09-20T00:00:00Z"),
        ("@midnight", BASE, "2024-09-20T00:00:00Z"),
        // Sunday after Thursday the 19th is the 22nd.
        ("@weekly", BASE, "2024-09-22T00:00:00Z"),
        ("@monthly", BASE, "2024-10-01T00:00:00Z"),
        ("@yearly", BASE, "2025-01-01T00:00:00Z"),
        ("@annually", BASE, "2025-01-01T00:00:00Z"),
        // Friday the 20th is the next weekday.
        ("30 2 * * mon-fri", BASE, "2024-09-20T02:30:00Z"),
        // Both day fields restricted: the 25th OR a Sunday -> Sunday the 22nd wins.
        ("0 12 25 * sun", BASE, "2024-09-22T12:00:00Z"),
        // Both restricted: the 1st OR a Monday -> Monday the 23rd.
        ("0 12 1 * mon", BASE, "2024-09-23T12:00:00Z"),
        // Only day-of-month restricted.
        ("0 12 1 * *", BASE, "2024-10-01T12:00:00Z"),
        // `*/2` starts with `*`: unrestricted per cron(5), so odd day AND Sunday: the 22nd is
        // even, the 29th is odd.
        ("0 0 */2 * sun", BASE, "2024-09-29T00:00:00Z"),
        // 7 is Sunday.
        ("0 0 * * 7", BASE, "2024-09-22T00:00:00Z"),
        ("0 0 * * 5-7", BASE, "2024-09-20T00:00:00Z"),
        // 1-10/4 = 1,5,9.
        ("1-10/4 * * * *", BASE, "2024-09-19T05:01:00Z"),
        // 10/20 = 10,30,50.
        ("10/20 * * * *", BASE, "2024-09-19T04:50:00Z"),
        ("15,45 9,17 * * *", BASE, "2024-09-19T09:15:00Z"),
        // 1/2 = mon,wed,fri (not Sunday): from Friday 04:00 the next is Monday the 23rd.
        (
            "0 0 * * 1/2",
            "2024-09-20T04:00:00Z",
            "2024-09-23T00:00:00Z",
        ),
        // 7/2 is Sunday only.
        ("0 0 * * 7/2", BASE, "2024-09-22T00:00:00Z"),
        ("0 0 1 oct-dec *", BASE, "2024-10-01T00:00:00Z"),
        // Months January-March only: the 1st OR a Sunday -> 1 January 2025 (a Wednesday).
        ("0 0 1 JAN-Mar SUN", BASE, "2025-01-01T00:00:00Z"),
        ("0 0 2 JAN-Mar SUN", BASE, "2025-01-02T00:00:00Z"),
        ("0 0 9 JAN-Mar SUN", BASE, "2025-01-05T00:00:00Z"),
        // Next 29 February after September 2024.
        ("0 0 29 2 *", BASE, "2028-02-29T00:00:00Z"),
        // Strictly after: the matching minute itself is skipped.
        (
            "59 23 31 12 *",
            "2024-12-31T23:59:00Z",
            "2025-12-31T23:59:00Z",
        ),
        (
            "*/5 * * * *",
            "2024-09-19T04:50:00Z",
            "2024-09-19T04:55:00Z",
        ),
        // Hour roll-over into the next day and month.
        (
            "*/15 * * * *",
            "2024-09-30T23:59:59Z",
            "2024-10-01T00:00:00Z",
        ),
        ("0 0 31 * *", BASE, "2024-10-31T00:00:00Z"),
        ("* * ? * ?", BASE, "2024-09-19T04:50:00Z"),
    ];
    for (expr, from, want) in cases {
        let s = Schedule::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert_eq!(
            s.next_after(ts(from)),
            Some(ts(want)),
            "next_after({expr:?}, {from})"
        );
    }
}

#[test]
fn prev_at_or_before_table() {
    let cases: &[(&str, &str, &str)] = &[
        ("*/5 * * * *", BASE, "2024-09-19T04:45:00Z"),
        // The minute containing t counts.
        (
            "*/5 * * * *",
            "2024-09-19T04:45:00Z",
            "2024-09-19T04:45:00Z",
        ),
        (
            "*/5 * * * *",
            "2024-09-19T04:45:59Z",
            "2024-09-19T04:45:00Z",
        ),
        ("0 0 29 2 *", BASE, "2024-02-29T00:00:00Z"),
        // Sunday the 22nd -> Friday the 20th.
        (
            "30 2 * * mon-fri",
            "2024-09-22T10:00:00Z",
            "2024-09-20T02:30:00Z",
        ),
        ("@monthly", "2024-03-01T00:00:00Z", "2024-03-01T00:00:00Z"),
        ("@monthly", "2024-02-29T23:59:59Z", "2024-02-01T00:00:00Z"),
        (
            "59 23 31 12 *",
            "2024-12-31T23:59:30Z",
            "2024-12-31T23:59:00Z",
        ),
        (
            "59 23 31 12 *",
            "2024-12-31T23:58:59Z",
            "2023-12-31T23:59:00Z",
        ),
        // the 25th OR a Sunday, going back from Thursday the 19th: Sunday the 15th.
        ("0 12 25 * sun", BASE, "2024-09-15T12:00:00Z"),
        ("@yearly", BASE, "2024-01-01T00:00:00Z"),
    ];
    for (expr, from, want) in cases {
        let s = Schedule::parse(expr).unwrap();
        assert_eq!(
            s.prev_at_or_before(ts(from)),
            Some(ts(want)),
            "prev_at_or_before({expr:?}, {from})"
        );
    }
}

#[test]
fn matches_ignores_seconds() {
    let s = Schedule::parse("*/5 * * * *").unwrap();
    assert!(s.matches(ts("2024-09-19T04:45:00Z")));
    assert!(s.matches(ts("2024-09-19T04:45:59Z")));
    assert!(!s.matches(ts("2024-09-19T04:46:00Z")));
}

fn field_error(expr: &str) -> (Field, String, String) {
    match Schedule::parse(expr) {
        Err(CronError::Field {
            field,
            value,
            reason,
        }) => (field, value, reason),
        other => panic!("{expr}: expected a field error, got {other:?}"),
    }
}

#[test]
fn field_errors_name_field_and_value() {
    let cases: &[(&str, Field, &str, &str)] = &[
        ("60 * * * *", Field::Minute, "60", "60 is out of range 0-59"),
        ("* 24 * * *", Field::Hour, "24", "24 is out of range 0-23"),
        (
            "* * 0 * *",
            Field::DayOfMonth,
            "0",
            "0 is out of range 1-31",
        ),
        (
            "* * 32 * *",
            Field::DayOfMonth,
            "32",
            "32 is out of range 1-31",
        ),
        ("* * * 13 *", Field::Month, "13", "13 is out of range 1-12"),
        ("* * * * 8", Field::DayOfWeek, "8", "8 is out of range 0-7"),
        (
            "* * * foo *",
            Field::Month,
            "foo",
            "\"foo\" is not a number (expected 1-12 or jan-dec)",
        ),
        (
            "* * * * mon-xyz",
            Field::DayOfWeek,
            "mon-xyz",
            "\"xyz\" is not a number (expected 0-7 or sun-sat)",
        ),
        (
            "*/0 * * * *",
            Field::Minute,
            "*/0",
            "step must be at least 1",
        ),
        (
            "*/x * * * *",
            Field::Minute,
            "*/x",
            "step \"x\" is not a positive number",
        ),
        (
            "5-1 * * * *",
            Field::Minute,
            "5-1",
            "range start 5 is after its end 1",
        ),
        ("1,,2 * * * *", Field::Minute, "", "empty list element"),
        ("-1 * * * *", Field::Minute, "-1", "\"\" is not a number"),
        ("* ? * * *", Field::Hour, "?", "\"?\" is not a number"),
        (
            "0 0 30 2 *",
            Field::DayOfMonth,
            "30",
            "no selected month has such a day, the schedule would never fire",
        ),
        (
            "0 0 31 4,6,9,11 *",
            Field::DayOfMonth,
            "31",
            "no selected month has such a day, the schedule would never fire",
        ),
    ];
    for (expr, field, value, reason) in cases {
        assert_eq!(
            field_error(expr),
            (*field, value.to_string(), reason.to_string()),
            "{expr}"
        );
    }
}

#[test]
fn whole_schedule_errors() {
    assert_eq!(Schedule::parse("  "), Err(CronError::Empty));
    assert_eq!(
        Schedule::parse("* * * *"),
        Err(CronError::FieldCount {
            schedule: "* * * *".into(),
            got: 4
        })
    );
    assert_eq!(
        Schedule::parse("0 * * * * *").unwrap_err().to_string(),
        "cron schedule \"0 * * * * *\": expected 5 fields (minute hour day-of-month month \
         day-of-week), got 6"
    );
    assert!(matches!(
        Schedule::parse("@fortnightly"),
        Err(CronError::UnknownMacro { .. })
    ));
    assert!(matches!(
        Schedule::parse("CRON_TZ=Europe/Paris 0 * * * *"),
        Err(CronError::TimeZone { .. })
    ));
    assert_eq!(
        Schedule::parse("* 24 * * *").unwrap_err().to_string(),
        "cron hour field: invalid value \"24\": 24 is out of range 0-23"
    );
}

#[test]
fn feb_30_with_weekday_is_valid_via_or_rule() {
    // Both day fields restricted: fires on Mondays of February even though the 30th never
    // exists. From Thursday 2024-09-19, the first Monday of February 2025 is the 3rd.
    let s = Schedule::parse("0 0 30 2 mon").unwrap();
    assert_eq!(s.next_after(ts(BASE)), Some(ts("2025-02-03T00:00:00Z")));
}

const SCHEDULES: &[&str] = &[
    "* * * * *",
    "*/5 * * * *",
    "*/7 1-5 * * *",
    "0 * * * *",
    "30 2 * * mon-fri",
    "0 12 25 * sun",
    "0 0 */2 * sun",
    "15,45 9,17 * * *",
    "1-10/4 */3 * * *",
    "0 0 1 * *",
    "0 0 29 2 *",
    "59 23 31 12 *",
    "0 0 31 * *",
    "5 4 * * 7",
    "0 0 30 2 mon",
    "@weekly",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn next_after_is_the_first_match_after_t(
        idx in 0..SCHEDULES.len(),
        secs in 0i64..4_102_444_800,
    ) {
        let s = Schedule::parse(SCHEDULES[idx]).unwrap();
        let t = Timestamp::from_second(secs).unwrap();
        let n = s.next_after(t).unwrap();
        prop_assert!(n > t);
        prop_assert!(s.matches(n));
        prop_assert_eq!(n.as_second() % 60, 0);
        // Nothing matches in (t, n): the last match before n is at or before t.
        let before = s.prev_at_or_before(n - jiff::SignedDuration::from_secs(1));
        prop_assert!(before.is_none_or(|b| b <= t));
    }

    #[test]
    fn prev_at_or_before_is_the_last_match_up_to_t(
        idx in 0..SCHEDULES.len(),
        secs in 400_000_000i64..4_102_444_800,
    ) {
        let s = Schedule::parse(SCHEDULES[idx]).unwrap();
        let t = Timestamp::from_second(secs).unwrap();
        let p = s.prev_at_or_before(t).unwrap();
        prop_assert!(p <= t);
        prop_assert!(s.matches(p));
        prop_assert!(s.next_after(p).unwrap() > t);
    }

    #[test]
    fn next_after_agrees_with_a_minute_scan(
        idx in 0..5usize,
        secs in 0i64..4_102_444_800,
    ) {
        // The first five schedules fire at least once a day: scan two days minute by minute.
        let s = Schedule::parse(SCHEDULES[idx]).unwrap();
        let t = Timestamp::from_second(secs).unwrap();
        let mut m = secs - secs.rem_euclid(60) + 60;
        let found = loop {
            let cand = Timestamp::from_second(m).unwrap();
            if s.matches(cand) {
                break cand;
            }
            m += 60;
            prop_assert!(m < secs + 3 * 86_400, "no match within two days");
        };
        prop_assert_eq!(s.next_after(t), Some(found));
    }
}
