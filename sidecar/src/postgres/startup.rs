//! Which startup parameters the proxy passes on. Every startup parameter
//! other than `user`, `database`, `options` and `replication` is a setting the
//! server applies at backend start, and `options` carries more of them, so a
//! client could otherwise ask the server to become another role
//! (`role`, `session_authorization`) or open a replication connection behind
//! the proxy's access and lock checks, which see only `user` and `database`.
//! Those are refused; the others pass as they are.

use std::collections::BTreeMap;

/// Settings that change who the session acts as.
const IDENTITY_SETTINGS: [&str; 2] = ["role", "session_authorization"];

/// Checks a startup packet's parameters; the error is what the client is told.
pub fn check(parameters: &BTreeMap<String, String>) -> Result<(), String> {
    for (name, value) in parameters {
        match name.as_str() {
            "user" | "database" => {}
            "replication" => {
                if !is_false(value) {
                    return Err(
                        "replication connections are not allowed through the Deadbolt proxy".into(),
                    );
                }
            }
            "options" => check_options(value)?,
            setting => check_setting(setting)?,
        }
    }
    Ok(())
}

/// PostgreSQL's reading of a boolean `replication=false` (anything else,
/// `database` included, asks for replication).
fn is_false(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "false" | "off" | "no" | "0"
    )
}

/// A setting name as PostgreSQL resolves it: case-insensitive, and a
/// command-line `--name` may spell `_` as `-`.
fn check_setting(name: &str) -> Result<(), String> {
    // Surrounding spaces make PostgreSQL refuse the name; refusing it here too costs nothing.
    let normalized = name.trim().to_ascii_lowercase().replace('-', "_");
    if IDENTITY_SETTINGS.contains(&normalized.as_str()) {
        return Err(format!(
            "the startup setting {name:?} is not allowed through the Deadbolt proxy: \
             it would change the database role behind the proxy's access and lock checks"
        ));
    }
    Ok(())
}

/// `options` is a command line for the backend: whitespace-separated, with
/// `\` escaping the next character (PostgreSQL's `pg_split_opts`). Only
/// settings (`-c name=value`, `-cname=value`, `--name=value`) are accepted;
/// other backend switches are refused rather than interpreted.
fn check_options(options: &str) -> Result<(), String> {
    let words = split_options(options);
    let mut words = words.iter();
    while let Some(word) = words.next() {
        let setting = if word == "-c" {
            words
                .next()
                .ok_or_else(|| "options: -c needs a name=value".to_string())?
                .as_str()
        } else if let Some(setting) = word.strip_prefix("-c") {
            setting
        } else if let Some(setting) = word.strip_prefix("--") {
            setting
        } else {
            return Err(format!(
                "options: only settings (-c name=value or --name=value) are accepted through \
                 the Deadbolt proxy, not {word:?}"
            ));
        };
        let Some((name, _value)) = setting.split_once('=') else {
            return Err(format!("options: {setting:?} is not name=value"));
        };
        check_setting(name)?;
    }
    Ok(())
}

fn split_options(options: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut chars = options.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => {
                if let Some(escaped) = chars.next() {
                    current.push(escaped);
                }
            }
            ch if ch.is_ascii_whitespace() => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            ch => current.push(ch),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameters(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn ordinary_startups_pass() {
        let ordinary = parameters(&[
            ("user", "app"),
            ("database", "app"),
            ("application_name", "psql"),
            ("client_encoding", "UTF8"),
            (
                "options",
                "-c search_path=public --statement-timeout=5s -cwork_mem=64MB",
            ),
            ("replication", "false"),
        ]);
        assert_eq!(check(&ordinary), Ok(()));
    }

    #[test]
    fn identity_changes_are_refused_in_every_spelling() {
        for (name, value) in [
            ("role", "postgres"),
            ("ROLE", "postgres"),
            ("session_authorization", "postgres"),
            ("options", "-c role=postgres"),
            ("options", "-crole=postgres"),
            ("options", "--role=postgres"),
            ("options", "-c Session_Authorization=postgres"),
            ("options", "--session-authorization=postgres"),
            ("options", "-c search_path=x -c\\ role=postgres"),
            ("options", "-c\\ ro\\le=postgres"),
        ] {
            let refused = check(&parameters(&[("user", "app"), (name, value)]));
            assert!(refused.is_err(), "{name}={value} passed");
        }
    }

    #[test]
    fn replication_and_other_switches_are_refused() {
        for value in ["true", "on", "1", "database", "yes"] {
            assert!(
                check(&parameters(&[("replication", value)])).is_err(),
                "{value}"
            );
        }
        for options in ["-d 5", "-P", "-c", "-c nonsense", "-O"] {
            assert!(
                check(&parameters(&[("options", options)])).is_err(),
                "{options}"
            );
        }
    }

    #[test]
    fn options_split_like_postgres() {
        assert_eq!(
            split_options("  -c a=b\\ c  --x=y\\\\ "),
            ["-c", "a=b c", "--x=y\\"]
        );
    }
}
