//! Go-style durations (`10h`, `1h30m`, `250ms`), the format `tctl lock --ttl`
//! and `maxLockStaleness` use, so manifests written for Teleport carry over.

use std::time::Duration;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing to parse.
    #[error("empty duration")]
    Empty,
    /// A number was not followed by one of the known units.
    #[error("invalid duration {0:?}: expected a sequence like 1h30m, units ns, us, ms, s, m, h")]
    Invalid(String),
    /// The value does not fit in a `Duration`.
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a non-negative Go duration, as `time.ParseDuration` does: a
/// leading `+` is allowed (the API server's CEL `duration()` accepts it, so a
/// Lock's `ttl` may carry one), a `-` is not.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(input.to_string());
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    let unsigned = input.strip_prefix('+').unwrap_or(input);
    if unsigned.is_empty() {
        return Err(invalid());
    }
    if unsigned == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = unsigned;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after_int) = rest.split_at(int_len);
        let (frac_part, after_number) = match after_int.strip_prefix('.') {
            Some(frac) => {
                let frac_len = frac.bytes().take_while(u8::is_ascii_digit).count();
                frac.split_at(frac_len)
            }
            None => ("", after_int),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let (unit, scale) = UNITS
            .iter()
            .filter(|(unit, _)| after_number.starts_with(unit))
            .max_by_key(|(unit, _)| unit.len())
            .ok_or_else(invalid)?;
        let overflow = || DurationError::Overflow(input.to_string());
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| overflow())?
        };
        let mut nanos = whole.checked_mul(*scale).ok_or_else(overflow)?;
        // Fractions are exact down to the nanosecond; further digits are dropped, as Go does.
        let mut place = *scale;
        for digit in frac_part.bytes() {
            place /= 10;
            nanos = nanos
                .checked_add(u128::from(digit - b'0') * place)
                .ok_or_else(overflow)?;
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(overflow)?;
        rest = &after_number[unit.len()..];
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000)
        .map_err(|_| DurationError::Overflow(input.to_string()))?;
    Ok(Duration::new(secs, (total_nanos % 1_000_000_000) as u32))
}

/// Formats a duration the way Go's `Duration.String` does, so values round-trip.
pub fn format(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".to_string();
    }
    let total = duration.as_nanos();
    if total < 1_000_000_000 {
        let (value, unit) = if total < 1_000 {
            (total.to_string(), "ns")
        } else if total < 1_000_000 {
            (trim_fraction(total, 1_000), "µs")
        } else {
            (trim_fraction(total, 1_000_000), "ms")
        };
        return format!("{value}{unit}");
    }
    let hours = total / 3_600_000_000_000;
    let minutes = (total / 60_000_000_000) % 60;
    let seconds = trim_fraction(total % 60_000_000_000, 1_000_000_000);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{seconds}s"));
    out
}

fn trim_fraction(value: u128, scale: u128) -> String {
    let whole = value / scale;
    let frac = value % scale;
    if frac == 0 {
        return whole.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_examples() {
        assert_eq!(parse("10h").unwrap(), Duration::from_secs(36_000));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5_400));
        assert_eq!(parse("1.5h").unwrap(), Duration::from_secs(5_400));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("2m3.5s").unwrap(), Duration::from_millis(123_500));
        assert_eq!(parse("7µs").unwrap(), Duration::from_micros(7));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert_eq!(parse("+1h30m").unwrap(), Duration::from_secs(5_400));
        assert_eq!(parse("+0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_what_go_rejects() {
        for bad in [
            "", "h", "10", "10d", "1h-5m", ".h", "1.h2", " 1h", "1h ", "-1h", "+", "++1h", "+-1h",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
        for huge in [
            "99999999999999999999999h",
            // Found by fuzzing: the whole part fits, the fraction tips it over.
            "340282366920938463463374607431768211.999us",
            "340282366920938463463374607431768.999999ms",
            "94522879700260684295381835.9999999999999h",
        ] {
            assert!(
                matches!(parse(huge), Err(DurationError::Overflow(_))),
                "{huge}"
            );
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format(Duration::from_secs(36_000)), "10h0m0s");
        assert_eq!(format(Duration::from_millis(1_500)), "1.5s");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::ZERO), "0s");
        for text in ["10h0m0s", "1m30s", "1.5s", "250ms", "7µs", "42ns"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
    }
}
