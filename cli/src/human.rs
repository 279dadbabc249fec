//! Output for people: sizes in binary units, counted nouns, aligned tables with headers.
//! Machine output (`--json`) keeps raw numbers and never goes through here.

use std::io::{self, Write};

/// `n` bytes in the largest binary unit that keeps at least one whole unit (IEC 80000-13
/// prefixes: KiB = 1024 B): `"512 B"`, `"1.5 KiB"`, `"98.2 MiB"`. Below 0.1 of a unit
/// the next smaller unit is used, so no size prints as `0.0`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `"1 file"`, `"2 files"`: `n` and `noun`, plural with an `s` unless `n` is 1.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `n` with `singular` when it is 1, else with `plural` (`"3 entries"`).
pub fn count_as(n: u64, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// Writes `rows` under `headers`, each column as wide as its widest cell, two spaces
/// apart; the last column is not padded. Cells are written as given: escape
/// caller-supplied text first.
pub fn table(out: &mut dyn Write, headers: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: &mut dyn Iterator<Item = &str>| -> io::Result<()> {
        let mut text = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            if i + 1 < widths.len() {
                text.extend(std::iter::repeat_n(
                    ' ',
                    w.saturating_sub(cell.chars().count()),
                ));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(out, &mut headers.iter().copied())?;
    for row in rows {
        line(out, &mut row.iter().map(String::as_str))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sizes_use_binary_units_and_never_print_zero_point_zero() {
        // Oracle: the unit definitions, by hand (1 KiB = 1024 B, 1 MiB = 1024 KiB).
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(40_000), "39.1 KiB");
        assert_eq!(bytes(98 * 1024 * 1024 + 200 * 1024), "98.2 MiB");
        assert_eq!(bytes(300 * 1024 * 1024), "300 MiB");
        assert_eq!(bytes(5 * (1 << 30)), "5.0 GiB");
        assert_eq!(bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn counts_are_singular_for_one() {
        assert_eq!(count(1, "file"), "1 file");
        assert_eq!(count(0, "file"), "0 files");
        assert_eq!(count(2, "record"), "2 records");
        assert_eq!(count_as(1, "entry", "entries"), "1 entry");
        assert_eq!(count_as(3, "entry", "entries"), "3 entries");
    }

    #[test]
    fn tables_align_columns_under_their_headers() {
        let mut out = Vec::new();
        let rows = vec![
            vec!["Patient".to_owned(), "family".to_owned(), "x".to_owned()],
            vec!["Condition".to_owned(), "code".to_owned(), "".to_owned()],
        ];
        table(&mut out, &["COLLECTION", "INDEX", "PARTS"], &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "COLLECTION  INDEX   PARTS\n\
             Patient     family  x\n\
             Condition   code\n"
        );
    }
}
