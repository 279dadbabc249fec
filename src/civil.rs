//! Days since the Unix epoch to proleptic Gregorian civil dates and back (UTC, no
//! time-zone database), by the `days_from_civil` / `civil_from_days` algorithms of
//! Howard Hinnant, "chrono-Compatible Low-Level Date Algorithms" (public domain). FHIR
//! `date` and `dateTime` values (FHIR R4, "Data Types", "date" and "dateTime") use this
//! calendar; the research export generalizes and shifts them with it, the synthetic
//! generator of medvault-fhir writes them with it and the `medvault` command formats and
//! parses access-log times with it (one copy, re-exported as `medvault_fhir::civil`).

/// Days since 1970-01-01 of the civil date `y-m-d` (`m` in 1..=12, `d` in 1..=31; not
/// validated: an out-of-range day counts on into the next month). Negative before 1970.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date `(year, month 1..=12, day 1..=31)` of `days` since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Known values: the epoch, the day before it, a leap day (1 709 164 800 s since
    /// the epoch, `date -u -d 2024-02-29 +%s`), the last day of 9999.
    #[test]
    fn known_days() {
        for (days, ymd) in [
            (0, (1970, 1, 1)),
            (-1, (1969, 12, 31)),
            (19_782, (2024, 2, 29)),
            (2_932_896, (9999, 12, 31)),
        ] {
            assert_eq!(civil_from_days(days), ymd);
            assert_eq!(days_from_civil(ymd.0, ymd.1, ymd.2), days);
        }
    }
}
