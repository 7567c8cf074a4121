#![no_main]
//! `deadbolt_api::duration`: `parse` never panics on any string, and every
//! duration it accepts survives `format` and a second `parse` unchanged. The
//! same round trip is checked the other way, from a `Duration` built out of the
//! input's first 12 bytes, so `format` is exercised over its whole range.

use std::time::Duration;

use deadbolt_api::duration::{format, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(parsed) = parse(&text) {
        let formatted = format(parsed);
        assert_eq!(
            parse(&formatted),
            Ok(parsed),
            "{text:?} parsed as {parsed:?}, formatted as {formatted:?}"
        );
    }

    if let Some(raw) = data.get(..12) {
        let secs = u64::from_le_bytes(raw[..8].try_into().unwrap());
        let nanos = u32::from_le_bytes(raw[8..].try_into().unwrap()) % 1_000_000_000;
        let duration = Duration::new(secs, nanos);
        let formatted = format(duration);
        assert_eq!(
            parse(&formatted),
            Ok(duration),
            "{duration:?} formatted as {formatted:?}"
        );
    }
});
