//! `kubectl deadbolt lock`: builds a `Lock` from `tctl lock`'s flags and creates it.

use std::io::Write;

use deadbolt_api::duration;
use deadbolt_api::resources::{Lock, LockSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::PostParams;

use crate::{Error, LockArgs};

/// Builds the lock `kubectl deadbolt lock` would create, named `name`.
///
/// Checks run in tctl's order: `--ttl` with `--expires`, then the values of
/// `--ttl` and `--expires`, then the target. `--ttl` is sent verbatim as
/// `spec.ttl` so the server counts it from the lock's creation; `--expires`
/// is normalised to UTC seconds, the form `metav1.Time` takes.
pub fn build_lock(args: &LockArgs, name: &str) -> Result<Lock, Error> {
    let ttl = args.ttl.as_deref().filter(|ttl| !ttl.is_empty());
    let expires = args
        .expires
        .as_deref()
        .filter(|expires| !expires.is_empty());
    if ttl.is_some() && expires.is_some() {
        return Err(Error::TtlAndExpires);
    }
    if let Some(ttl) = ttl {
        validate_ttl(ttl)?;
    }
    let expires = expires.map(parse_expires).transpose()?;
    let target = args.target.require_target()?;
    let spec = LockSpec {
        target,
        message: args.message.clone().filter(|message| !message.is_empty()),
        expires: expires.map(Time),
        ttl: ttl.map(str::to_string),
    };
    Ok(Lock::new(name, spec))
}

/// Accepts a positive Go duration (`10h`, `1h30m`); `10d` or `0s` get a clear error.
pub fn validate_ttl(ttl: &str) -> Result<(), Error> {
    let invalid = |reason: String| Error::InvalidTtl {
        value: ttl.to_string(),
        reason,
    };
    let parsed = duration::parse(ttl).map_err(|error| match error {
        duration::DurationError::Overflow(_) => invalid("the duration is too large".to_string()),
        _ => invalid(
            "expected a Go duration such as 10h, 90m or 1h30m (units ns, us, ms, s, m, h; days are not a unit: 10 days is 240h)"
                .to_string(),
        ),
    })?;
    if parsed.is_zero() {
        return Err(invalid(
            "the lock would expire at once; use a positive duration such as 10h or 90m".to_string(),
        ));
    }
    Ok(())
}

/// Parses an RFC 3339 time (`2030-01-01T00:00:00Z`, `2030-01-01T02:00:00+02:00`).
///
/// jiff's parser also takes extensions RFC 3339 does not have (time zone
/// annotations, missing seconds), so the shape is checked first and jiff then
/// checks the values (month 13, February 30).
pub fn parse_expires(text: &str) -> Result<jiff::Timestamp, Error> {
    let invalid = |reason: String| Error::InvalidExpires {
        value: text.to_string(),
        reason,
    };
    const EXPECTED: &str = "expected an RFC 3339 time such as 2030-01-01T00:00:00Z";
    if !is_rfc3339_shape(text) {
        return Err(invalid(EXPECTED.to_string()));
    }
    text.parse::<jiff::Timestamp>()
        .map_err(|error| invalid(format!("{EXPECTED}: {error}")))
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, with `t`/`z` in either case as RFC 3339 allows.
fn is_rfc3339_shape(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|part| part.iter().all(u8::is_ascii_digit))
    };
    let at =
        |index: usize, allowed: &[u8]| bytes.get(index).is_some_and(|byte| allowed.contains(byte));
    if !(digits(0..4)
        && at(4, b"-")
        && digits(5..7)
        && at(7, b"-")
        && digits(8..10)
        && at(10, b"Tt")
        && digits(11..13)
        && at(13, b":")
        && digits(14..16)
        && at(16, b":")
        && digits(17..19))
    {
        return false;
    }
    let mut rest = &bytes[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let count = fraction
            .iter()
            .take_while(|byte| byte.is_ascii_digit())
            .count();
        if count == 0 {
            return false;
        }
        rest = &fraction[count..];
    }
    match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            [h1, h2, m1, m2].iter().all(|byte| byte.is_ascii_digit())
        }
        _ => false,
    }
}

/// Creates `lock` and prints tctl's confirmation, `Created a lock with name "<name>".`
pub async fn create(api: &Api<Lock>, lock: Lock, out: &mut dyn Write) -> Result<(), Error> {
    let created = api.create(&PostParams::default(), &lock).await?;
    let name = created
        .metadata
        .name
        .or(lock.metadata.name)
        .unwrap_or_default();
    writeln!(out, "Created a lock with name {name:?}.")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_shapes() {
        for good in [
            "2030-01-01T00:00:00Z",
            "2030-01-01t00:00:00z",
            "2030-01-01T00:00:00.123456789Z",
            "2030-01-01T02:00:00+02:00",
            "2030-01-01T02:00:00-05:30",
        ] {
            assert!(is_rfc3339_shape(good), "{good}");
            assert!(parse_expires(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "tomorrow",
            "2030-01-01",
            "2030-01-01T00:00Z",
            "2030-01-01 00:00:00Z",
            "2030-01-01T00:00:00",
            "2030-01-01T00:00:00.Z",
            "2030-01-01T00:00:00+0200",
            "2030-01-01T00:00:00Z[UTC]",
            "2030-01-01T00:00:00Zx",
            "2030-01-01T00:00:00+02:00:00",
            "२०३०-01-01T00:00:00Z",
        ] {
            assert!(parse_expires(bad).is_err(), "{bad}");
        }
        assert!(parse_expires("2030-13-01T00:00:00Z").is_err());
        assert!(parse_expires("2030-02-30T00:00:00Z").is_err());
    }

    #[test]
    fn expires_is_normalised_to_utc() {
        let timestamp = parse_expires("2030-01-01T02:00:00+02:00").unwrap();
        assert_eq!(timestamp.to_string(), "2030-01-01T00:00:00Z");
    }

    #[test]
    fn ttl_rules() {
        assert!(validate_ttl("10h").is_ok());
        assert!(validate_ttl("1h30m").is_ok());
        for bad in ["10d", "0", "0s", "h", "-1h", " 1h"] {
            assert!(validate_ttl(bad).is_err(), "{bad}");
        }
    }
}
