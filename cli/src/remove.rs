//! `kubectl deadbolt rm NAME`: deletes one lock, like `tctl rm locks/NAME`.

use std::io::Write;

use deadbolt_api::resources::Lock;
use kube::Api;
use kube::api::DeleteParams;

use crate::Error;

/// The longest Kubernetes object name (a DNS subdomain).
const MAX_NAME_LEN: usize = 253;

/// The lock name in `NAME`, `locks/NAME`, `lock/NAME` or `locks.deadbolt.dev/NAME`
/// (tctl's and kubectl's spellings), checked to be a valid object name so it
/// cannot change the request path.
pub fn parse_name(input: &str) -> Result<String, Error> {
    let name = [
        "locks.deadbolt.dev/",
        "lock.deadbolt.dev/",
        "locks/",
        "lock/",
    ]
    .iter()
    .find_map(|prefix| input.strip_prefix(prefix))
    .unwrap_or(input);
    let invalid = |reason: &str| Error::InvalidName {
        name: input.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(invalid("a name is required"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid("must be no more than 253 characters"));
    }
    let valid_chars = name.bytes().all(|byte| {
        byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'.'
    });
    let valid_ends = |byte: Option<&u8>| {
        byte.is_some_and(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
    };
    if !valid_chars || !valid_ends(name.as_bytes().first()) || !valid_ends(name.as_bytes().last()) {
        return Err(invalid(
            "must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        ));
    }
    Ok(name.to_string())
}

/// Deletes the lock `name` and prints `lock "<name>" has been deleted`; a missing lock is [`Error::NotFound`].
pub async fn remove(api: &Api<Lock>, name: &str, out: &mut dyn Write) -> Result<(), Error> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            writeln!(out, "lock {name:?} has been deleted")?;
            Ok(())
        }
        Err(error) => {
            let error = Error::from(error);
            if error.is_missing_object() {
                Err(Error::NotFound(name.to_string()))
            } else {
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_tctl_and_kubectl_spellings() {
        let uuid = "24679348-baff-4987-a2cd-e820ab7f9d2b";
        for input in [
            uuid.to_string(),
            format!("locks/{uuid}"),
            format!("lock/{uuid}"),
            format!("locks.deadbolt.dev/{uuid}"),
        ] {
            assert_eq!(parse_name(&input).unwrap(), uuid);
        }
    }

    #[test]
    fn rejects_names_that_are_not_object_names() {
        for bad in [
            "",
            "locks/",
            "a/b",
            "A",
            "-a",
            "a-",
            "a?b",
            "a b",
            "..",
            &"a".repeat(254),
        ] {
            assert!(parse_name(bad).is_err(), "{bad:?}");
        }
    }
}
