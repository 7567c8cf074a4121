//! Fixed instants for tests: locks, expiries and clocks read more easily as
//! "second 100" or "2026-01-01T12:00:00Z" than as arithmetic on `now()`.

use jiff::Timestamp;

/// The instant `seconds` after the Unix epoch.
///
/// # Panics
/// If `seconds` is outside jiff's range.
pub fn ts(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds)
        .unwrap_or_else(|error| panic!("{seconds} s is not a timestamp: {error}"))
}

/// The instant an RFC 3339 text names, e.g. `at("2026-01-01T12:00:00Z")`.
///
/// # Panics
/// If `text` does not parse.
pub fn at(text: &str) -> Timestamp {
    text.parse()
        .unwrap_or_else(|error| panic!("{text:?} is not a timestamp: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_text_name_the_same_instants() {
        assert_eq!(ts(0), Timestamp::UNIX_EPOCH);
        assert_eq!(at("1970-01-01T00:01:40Z"), ts(100));
    }
}
