//! Times as flows carry them (RFC 3339 in UTC, nanoseconds) and as `observe` prints and takes
//! them (`Dec  5 04:00:00.123`; `--since 5m`, `--since 2026-12-05T04:00:00Z`), without a
//! calendar crate: the civil-from-days conversion is a few lines.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NANOS: i128 = 1_000_000_000;
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// (year, month 1-12, day 1-31) of days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn split(nanos: i128) -> (i64, u32, u32, u32, u32, u32, u32) {
    let secs = nanos.div_euclid(NANOS) as i64;
    let sub = nanos.rem_euclid(NANOS) as u32;
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400) as u32;
    (year, month, day, tod / 3600, tod / 60 % 60, tod % 60, sub)
}

/// Nanoseconds since the epoch now.
pub fn now_nanos() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_nanos() as i128
}

/// `2026-12-05T04:00:00.123456789Z`.
pub fn rfc3339(nanos: i128) -> String {
    let (y, mo, d, h, mi, s, sub) = split(nanos);
    if !(0..=9999).contains(&y) {
        return format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{sub:09}Z");
    }
    // By hand: the flow collector stamps every event, and `format!` costs it a tenth of its
    // time.
    let mut out = String::with_capacity(30);
    let mut digits = |value: u64, width: u32, after: Option<char>| {
        for place in (0..width).rev() {
            out.push(char::from(b'0' + (value / 10u64.pow(place) % 10) as u8));
        }
        if let Some(c) = after {
            out.push(c);
        }
    };
    digits(y as u64, 4, Some('-'));
    digits(u64::from(mo), 2, Some('-'));
    digits(u64::from(d), 2, Some('T'));
    digits(u64::from(h), 2, Some(':'));
    digits(u64::from(mi), 2, Some(':'));
    digits(u64::from(s), 2, Some('.'));
    digits(u64::from(sub), 9, Some('Z'));
    out
}

/// `Dec  5 04:00:00.123` (what `hubble observe` prints).
pub fn stamp_milli(nanos: i128) -> String {
    let (_, mo, d, h, mi, s, sub) = split(nanos);
    format!("{} {d:>2} {h:02}:{mi:02}:{s:02}.{:03}", MONTHS[(mo - 1) as usize], sub / 1_000_000)
}

/// Parses RFC 3339 (`Z` or `±hh:mm`, any fraction) into nanoseconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Option<i128> {
    let (date, rest) = text.split_once(['T', 't', ' '])?;
    let mut parts = date.splitn(3, '-');
    let (year, month, day): (i64, u32, u32) =
        (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (clock, offset) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, 0i64)
    } else {
        let at = rest.rfind(['+', '-'])?;
        let (c, o) = rest.split_at(at);
        let sign = if o.starts_with('-') { -1 } else { 1 };
        let (oh, om) = o[1..].split_once(':')?;
        (c, sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60))
    };
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut hms = hms.splitn(3, ':');
    let (h, mi, s): (i64, i64, i64) = (hms.next()?.parse().ok()?, hms.next()?.parse().ok()?, hms.next()?.parse().ok()?);
    if h > 23 || mi > 59 || s > 60 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = fraction.chars().chain(std::iter::repeat('0')).take(9).collect();
    let sub: i128 = digits.parse().ok()?;
    let secs = days_from_civil(year, month, day) * 86_400 + h * 3600 + mi * 60 + s - offset;
    Some(i128::from(secs) * NANOS + sub)
}

/// A duration as `observe` takes it: `90s`, `5m`, `1h30m`, `2d` (units s, m, h, d; `ms` too).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let (number, tail) = rest.split_at(digits);
        let n: u64 = number.parse().ok()?;
        let unit_len = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        total += match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            "d" => Duration::from_secs(n * 86_400),
            _ => return None,
        };
        rest = next;
    }
    Some(total)
}

/// `--since`/`--until`: an RFC 3339 time, or a duration before `now` (`5m`, `5m ago`).
pub fn parse_point(text: &str, now: i128) -> Option<i128> {
    if let Some(t) = parse_rfc3339(text) {
        return Some(t);
    }
    let relative = text.trim().trim_end_matches("ago").trim();
    parse_duration(relative).map(|d| now - d.as_nanos() as i128)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        let t = parse_rfc3339("2026-12-05T04:00:00.123Z").unwrap();
        assert_eq!(rfc3339(t), "2026-12-05T04:00:00.123000000Z");
        assert_eq!(stamp_milli(t), "Dec  5 04:00:00.123");
        assert_eq!(parse_rfc3339("2026-12-05T06:00:00+02:00"), parse_rfc3339("2026-12-05T04:00:00Z"));
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z").map(rfc3339).as_deref(),
            Some("2024-02-29T00:00:00.000000000Z")
        );
        for bad in ["", "2026-13-01T00:00:00Z", "2026-12-05", "2026-12-05T25:00:00Z", "2026-12-05T04:00:00.x1Z"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations_and_points() {
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("5w"), None);
        let now = parse_rfc3339("2026-12-05T04:00:00Z").unwrap();
        assert_eq!(parse_point("5m ago", now), parse_rfc3339("2026-12-05T03:55:00Z"));
        assert_eq!(parse_point("2s", now), parse_rfc3339("2026-12-05T03:59:58Z"));
    }

    proptest! {
        #[test]
        fn rfc3339_round_trips(nanos in -62_135_596_800_000_000_000i128..253_402_300_799_000_000_000i128) {
            prop_assert_eq!(parse_rfc3339(&rfc3339(nanos)), Some(nanos));
        }

        #[test]
        fn parsers_never_panic(text in "\\\\PC{0,40}") {
            let _ = parse_rfc3339(&text);
            let _ = parse_duration(&text);
            let _ = parse_point(&text, 0);
        }
    }
}
