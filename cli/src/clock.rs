//! UTC times for the access log: milliseconds since the Unix epoch to RFC 3339 text and
//! back, by the civil-calendar algorithms of Howard Hinnant (public domain,
//! `medvault_fhir::civil`), so that no time-zone database is involved: the log is in UTC
//! and so is everything shown here.

use medvault_fhir::civil::{civil_from_days, days_from_civil};

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS[.fff]][Z]` (UTC; a space may replace the
/// `T`) or a plain number of milliseconds since the epoch. `None` when malformed.
pub fn parse_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let s = s
        .strip_suffix('Z')
        .or_else(|| s.strip_suffix('z'))
        .unwrap_or(s);
    let (date, time) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut dp = date.split('-');
    let y: i64 = dp.next()?.parse().ok()?;
    let m: u32 = dp.next()?.parse().ok()?;
    let d: u32 = dp.next()?.parse().ok()?;
    if dp.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut ms = 0u64;
    if let Some(t) = time {
        let (hms, frac) = match t.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (t, None),
        };
        let mut tp = hms.split(':');
        let h: u64 = tp.next()?.parse().ok()?;
        let mi: u64 = tp.next()?.parse().ok()?;
        let se: u64 = match tp.next() {
            Some(x) => x.parse().ok()?,
            None => 0,
        };
        if tp.next().is_some() || h > 23 || mi > 59 || se > 60 {
            return None;
        }
        ms = (h * 3600 + mi * 60 + se) * 1000;
        if let Some(f) = frac {
            if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let padded = format!("{f:0<3}");
            ms += padded[..3].parse::<u64>().ok()?;
        }
    }
    let days = days_from_civil(y, m, d);
    if days < 0 {
        return None;
    }
    Some(days as u64 * 86_400_000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_known_values() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(parse_ms("2024-08-06T18:12:57Z"), Some(1_722_967_977_000));
        assert_eq!(format_ms(1_722_967_977_123), "2024-08-06T18:12:57.123Z");
        assert_eq!(parse_ms("2024-02-29"), Some(1_709_164_800_000));
        assert_eq!(parse_ms("2024-02-29 10:00:00.5"), Some(1_709_200_800_500));
        assert_eq!(parse_ms("1722967977000"), Some(1_722_967_977_000));
        for ms in [0u64, 951_782_400_000, 4_102_444_799_999] {
            assert_eq!(parse_ms(&format_ms(ms)), Some(ms));
        }
        assert_eq!(parse_ms("2024-13-01"), None);
        assert_eq!(parse_ms("yesterday"), None);
    }
}
