//! Human sizes (`500GiB`, `1.5TB`, `1048576`) and durations (`30s`, `10m`, `1h`, `2d`), parsed
//! without I/O. Errors are a short reason; the caller adds the key name.

use std::time::Duration;

/// Byte multipliers of the size suffixes (case-insensitive): SI (`KB` = 1000) and binary
/// (`KiB` = 1024).
const SIZE_UNITS: &[(&str, u64)] = &[
    ("b", 1),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
];

/// Second multipliers of the duration suffixes.
const DURATION_UNITS: &[(&str, u64)] = &[("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)];

/// Parses a size: a number (decimals allowed) with an optional unit from [`SIZE_UNITS`];
/// a bare number is bytes. Zero is refused (no quota is written by leaving the key out).
pub fn parse_size(text: &str) -> Result<u64, &'static str> {
    const WHY: &str = "expected bytes or a number with KB/MB/GB/TB/KiB/MiB/GiB/TiB, like 500GiB";
    let (number, unit) = split_number(text);
    let multiplier = if unit.is_empty() {
        1
    } else {
        lookup(SIZE_UNITS, unit).ok_or(WHY)?
    };
    let bytes = if number.contains('.') {
        let n: f64 = number.parse().map_err(|_| WHY)?;
        let b = (n * multiplier as f64).round();
        if !b.is_finite() || b >= u64::MAX as f64 {
            return Err("it is too large");
        }
        b as u64
    } else {
        let n: u64 = number.parse().map_err(|_| WHY)?;
        n.checked_mul(multiplier).ok_or("it is too large")?
    };
    if bytes == 0 {
        return Err("it must be more than 0 bytes (leave the key out for no quota)");
    }
    Ok(bytes)
}

/// Parses a duration: a whole number with a unit from [`DURATION_UNITS`] (`30s`, `10m`, `1h`,
/// `2d`). Zero is refused.
pub fn parse_duration(text: &str) -> Result<Duration, &'static str> {
    const WHY: &str = "expected a whole number with s, m, h or d, like 30s, 10m or 1h";
    let (number, unit) = split_number(text);
    let multiplier = lookup(DURATION_UNITS, unit).ok_or(WHY)?;
    let n: u64 = number.parse().map_err(|_| WHY)?;
    let secs = n.checked_mul(multiplier).ok_or("it is too long")?;
    if secs == 0 {
        return Err("it must be longer than 0s");
    }
    Ok(Duration::from_secs(secs))
}

/// Splits `" 1.5 GiB "` into `("1.5", "GiB")`.
fn split_number(text: &str) -> (&str, &str) {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    (&text[..end], text[end..].trim())
}

fn lookup(units: &[(&str, u64)], unit: &str) -> Option<u64> {
    units
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(unit))
        .map(|&(_, m)| m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("500GiB"), Ok(500 << 30));
        assert_eq!(parse_size("500 gib"), Ok(500 << 30));
        assert_eq!(parse_size("2TB"), Ok(2_000_000_000_000));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert_eq!(parse_size("10kb"), Ok(10_000));
        assert_eq!(parse_size("7B"), Ok(7));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        for bad in ["", "GiB", "10 GB x", "10XB", "-1", "1.2.3MB", "ten"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert!(parse_size("0").unwrap_err().contains("more than 0"));
        assert!(parse_size("99999999999TiB")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("1e30").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration(" 1h "), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        for bad in ["", "30", "1.5h", "h", "1w", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(parse_duration("0s").unwrap_err().contains("longer than 0s"));
    }
}
