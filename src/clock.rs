//! Wall-clock arithmetic in UTC: Unix milliseconds now, civil dates (`YYYY-MM-DD`) and
//! RFC 3339 stamps for records and day files, date parsing for config and admin queries, and
//! the time left until the next UTC midnight (when daily quotas reset).
//!
//! Invariants: pure functions of their arguments except [`now_ms`] and [`unix_secs`], the only
//! reads of the wall clock; dates are proleptic Gregorian, years 1970–9999. No allocation but
//! [`day`]'s string.

use std::time::Duration;

/// The wall clock in Unix milliseconds (what records, day files and counters are keyed by).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The wall clock in Unix seconds.
pub(crate) fn unix_secs() -> u64 {
    now_ms() / 1000
}

/// Days since the Unix epoch → (year, month, day), proleptic Gregorian (Howard Hinnant's
/// civil-from-days).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) → days since the Unix epoch: the inverse of [`civil_from_days`] (no
/// range checks: an out-of-range month or day lands on a neighbouring date).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds from a Unix time to the next UTC midnight.
pub(crate) fn until_utc_midnight(unix_secs: u64) -> Duration {
    Duration::from_secs(86_400 - unix_secs % 86_400)
}

fn two(out: &mut Vec<u8>, n: u64) {
    out.push(b'0' + (n / 10 % 10) as u8);
    out.push(b'0' + (n % 10) as u8);
}

/// `YYYY-MM-DD` of a day number.
fn write_day(out: &mut Vec<u8>, days: u64) {
    let (y, m, d) = civil_from_days(days as i64);
    let y = y.clamp(0, 9999) as u64;
    two(out, y / 100);
    two(out, y);
    out.push(b'-');
    two(out, u64::from(m));
    out.push(b'-');
    two(out, u64::from(d));
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn write_rfc3339_ms(out: &mut Vec<u8>, unix_ms: u64) {
    write_day(out, unix_ms / 86_400_000);
    let secs = unix_ms / 1000 % 86_400;
    out.push(b'T');
    two(out, secs / 3600);
    out.push(b':');
    two(out, secs / 60 % 60);
    out.push(b':');
    two(out, secs % 60);
    out.push(b'.');
    let ms = unix_ms % 1000;
    out.push(b'0' + (ms / 100) as u8);
    two(out, ms);
    out.push(b'Z');
}

/// `YYYY-MM-DD` of a Unix time in milliseconds (UTC): the record's file.
pub(crate) fn day(unix_ms: u64) -> String {
    let mut out = Vec::with_capacity(10);
    write_day(&mut out, unix_ms / 86_400_000);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
/// `YYYY-MM-DDTHH:MM:SS.mmmZ` as a string.
pub(crate) fn rfc3339_ms(unix_ms: u64) -> String {
    let mut out = Vec::new();
    write_rfc3339_ms(&mut out, unix_ms);
    String::from_utf8(out).unwrap_or_default()
}

/// Parses `YYYY-MM-DD` or a Unix time in seconds into Unix milliseconds.
/// Times after 9999-12-31 are refused (no arithmetic on them can overflow).
pub(crate) fn parse_time(s: &str) -> Option<u64> {
    const LAST_SECOND: u64 = 253_402_300_799;
    if let Ok(secs) = s.parse::<u64>() {
        return (secs <= LAST_SECOND).then_some(secs * 1000);
    }
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i64 = s.get(..4)?.parse().ok()?;
    let m: u32 = s.get(5..7)?.parse().ok()?;
    let d: u32 = s.get(8..)?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    // A day past the month's end (2023-02-29) lands on another date: refused.
    if civil_from_days(days) != (y, m, d) {
        return None;
    }
    u64::try_from(days).ok().map(|d| d * 86_400_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(day(0), "1970-01-01");
        assert_eq!(day(1_795_651_200_000), "2026-11-26");
        assert_eq!(parse_time("2026-11-26"), Some(1_795_651_200_000));
        assert_eq!(
            parse_time("2024-02-29").map(day).as_deref(),
            Some("2024-02-29")
        );
        assert_eq!(parse_time("2023-02-29"), None);
        assert_eq!(parse_time("1795651200"), Some(1_795_651_200_000));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("18446744073709000"), None);
        assert_eq!(parse_time("253402300799"), Some(253_402_300_799_000));
        assert_eq!(rfc3339_ms(1_795_651_200_123), "2026-11-26T00:00:00.123Z");
    }

    #[test]
    fn quotas_reset_at_utc_midnight() {
        assert_eq!(
            until_utc_midnight(86_400 * 3 + 100),
            Duration::from_secs(86_300)
        );
    }
}
