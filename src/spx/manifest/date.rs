//! The manifest's `date`: what a build writes (`SOURCE_DATE_EPOCH` as a naive UTC time) and what
//! the robot's Python reads (`datetime.fromisoformat`).

use crate::error::{Error, Result};

/// The manifest `date` for a build: `SOURCE_DATE_EPOCH` (or 0) as a naive UTC ISO 8601 time, the
/// shape Python's `datetime.isoformat()` writes and `fromisoformat()` reads on every version.
pub fn date_from_epoch(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    let (y, mo, d) = civil_from_days(days);
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Accepts what Python's `datetime.fromisoformat` accepts on 3.11+ for the usual shapes:
/// `YYYY-MM-DD[(T| )HH[:MM[:SS[.f{1,6}]]][Z|±HH:MM]]`.
/// The error's message says what is wrong with `s`.
pub fn parse_iso8601(s: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::input(why));
    let b = s.as_bytes();
    let num = |i: usize, n: usize| -> Option<u32> {
        let part = s.get(i..i + n)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok()).flatten()
    };
    let (Some(y), Some(mo), Some(d)) = (num(0, 4), num(5, 2), num(8, 2)) else {
        return bad("expected YYYY-MM-DD");
    };
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return bad("expected YYYY-MM-DD");
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let dim = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if y == 0 || !(1..=12).contains(&mo) || d == 0 || d > dim[mo as usize - 1] {
        return bad("no such date");
    }
    if s.len() == 10 {
        return Ok(());
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return bad("expected 'T' between date and time");
    }
    let mut rest = &s[11..];
    // offset
    if let Some(r) = rest.strip_suffix('Z').or_else(|| rest.strip_suffix('z')) {
        rest = r;
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let off = &rest[i + 1..];
        let ok = off.len() == 5
            && off.as_bytes()[2] == b':'
            && off[..2].parse::<u32>().is_ok_and(|h| h < 24)
            && off[3..].parse::<u32>().is_ok_and(|m| m < 60);
        if !ok {
            return bad(&format!("invalid UTC offset {off:?}"));
        }
        rest = &rest[..i];
    }
    let (hms, frac) = match rest.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (rest, None),
    };
    if let Some(f) = frac
        && (f.is_empty() || f.len() > 6 || !f.bytes().all(|c| c.is_ascii_digit()))
    {
        return bad("fractional seconds must be 1 to 6 digits");
    }
    let parts: Vec<&str> = hms.split(':').collect();
    let limits = [23, 59, 59];
    if parts.is_empty() || parts.len() > 3 || (frac.is_some() && parts.len() != 3) {
        return bad("expected HH:MM[:SS[.ffffff]]");
    }
    for (p, lim) in parts.iter().zip(limits) {
        if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_digit()) || p.parse::<u32>().unwrap_or(99) > lim {
            return bad("expected HH:MM[:SS[.ffffff]]");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        for ok in [
            "2025-05-12",
            "2025-05-12T22:10:15.123456",
            "2025-05-12 22:10",
            "2024-02-29T00:00:00+02:00",
            "2025-05-12T22:10:15Z",
        ] {
            assert!(parse_iso8601(ok).is_ok(), "{ok}");
        }
        for bad in ["2025-13-01", "2023-02-29", "2025-05-12T25:00", "12/05/2025", "2025-05-12T22:10:15.1234567", ""] {
            assert!(parse_iso8601(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_say_why_and_epochs_are_utc() {
        let date = |s: &str| parse_iso8601(s).unwrap_err().message().to_string();
        assert_eq!(date("2025-02-30"), "no such date");
        assert_eq!(date("2025-05-12X10:00"), "expected 'T' between date and time");
        assert_eq!(date("2025-05-12T10:00+2"), "invalid UTC offset \"2\"");
        assert_eq!(date("2025-05-12T10:00:00."), "fractional seconds must be 1 to 6 digits");
        assert_eq!(date_from_epoch(1_700_000_000), "2023-11-14T22:13:20");
        assert_eq!(date_from_epoch(951_782_400), "2000-02-29T00:00:00");
    }
}
