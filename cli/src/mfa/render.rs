//! What the MFA commands print: the device table, `status`, and the summary of
//! `login --out`. Pure functions of the service's answers (and the time, where
//! it matters), so the layout is tested without a service.

use std::path::Path;

use deadbolt_api::mfa::service::{Device, WhoAmI};
use jiff::Timestamp;

use crate::output::{self, NONE};

/// The device table's columns.
pub const DEVICE_HEADERS: [&str; 3] = ["UUID", "NAME", "LAST USED"];

/// The device table, aligned like `kubectl deadbolt ls`.
pub fn devices(devices: &[Device]) -> String {
    let rows: Vec<Vec<String>> = devices
        .iter()
        .map(|device| {
            vec![
                output::cell(&device.uuid),
                output::cell(&device.name),
                device
                    .last_used
                    .map(|at| at.to_string())
                    .unwrap_or_else(|| "never".to_string()),
            ]
        })
        .collect();
    output::table(&DEVICE_HEADERS, &rows)
}

/// `kubectl deadbolt status`: who the caller is and what stands between it
/// and a new session, as of `now`.
pub fn status(whoami: &WhoAmI, now: Timestamp) -> String {
    let list = |items: &[String]| {
        if items.is_empty() {
            NONE.to_string()
        } else {
            items
                .iter()
                .map(|item| output::cell(item))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let mut lines: Vec<(&str, String)> = vec![
        ("User", output::cell(&whoami.user)),
        ("Groups", list(&whoami.groups)),
        ("Roles", list(&whoami.roles)),
    ];
    lines.push((
        "Locked",
        if whoami.locks.is_empty() {
            "no".to_string()
        } else {
            format!(
                "yes, new sessions are refused ({} lock{} in force)",
                whoami.locks.len(),
                if whoami.locks.len() == 1 { "" } else { "s" }
            )
        },
    ));
    lines.push(("MFA devices", whoami.mfa_devices.to_string()));
    let mut failures = whoami.failed_mfa_attempts.to_string();
    if let Some(until) = whoami.mfa_locked_until.filter(|until| *until > now) {
        failures.push_str(&format!(" (new MFA credentials are refused until {until})"));
    }
    lines.push(("Failed MFA checks", failures));
    lines.push((
        "Session MFA",
        if whoami.cluster_requires_mfa {
            "required for every session (cluster-wide)".to_string()
        } else {
            "required where one of your roles asks for it".to_string()
        },
    ));
    let width = lines
        .iter()
        .map(|(label, _)| label.len() + 1)
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for (label, value) in lines {
        let label = format!("{label}:");
        text.push_str(&format!("{label:<width$}   {value}\n"));
        if label == "Locked:" && !whoami.locks.is_empty() {
            let rows: Vec<Vec<String>> = whoami
                .locks
                .iter()
                .map(|lock| {
                    vec![
                        output::cell(&lock.name),
                        output::cell(&lock.message),
                        lock.expires_at
                            .map(|at| at.to_string())
                            .unwrap_or_else(|| "never".to_string()),
                    ]
                })
                .collect();
            for line in output::table(&["LOCK", "MESSAGE", "EXPIRES"], &rows).lines() {
                text.push_str("  ");
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    text
}

/// The files `login --out PREFIX` writes: certificate, key, CA.
pub fn out_paths(prefix: &Path) -> [std::path::PathBuf; 3] {
    let with = |suffix: &str| {
        let mut path = prefix.as_os_str().to_os_string();
        path.push(suffix);
        std::path::PathBuf::from(path)
    };
    [with(".crt"), with(".key"), with("-ca.crt")]
}

/// What `login --out PREFIX` says: where the files are, until when they work, and how to use them.
pub fn login_summary(prefix: &Path, expires_at: Timestamp, mfa_device: &str) -> String {
    let [cert, key, ca] = out_paths(prefix);
    let (cert, key, ca) = (cert.display(), key.display(), ca.display());
    format!(
        "MFA session certificate issued, valid until {expires_at} (MFA device {device}):\n\
         \x20 certificate: {cert}\n\
         \x20 private key: {key}\n\
         \x20 CA:          {ca}\n\
         psql:  \"sslmode=verify-full sslcert={cert} sslkey={key} sslrootcert={ca} host=... user=...\"\n\
         mysql: --ssl-mode=VERIFY_IDENTITY --ssl-cert={cert} --ssl-key={key} --ssl-ca={ca}\n",
        device = output::cell(mfa_device),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadbolt_api::mfa::service::LockInForce;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn devices_are_a_kubectl_style_table() {
        let text = devices(&[
            Device {
                uuid: "d6c06a18-e147-4232-9dfe-6f83a28d5850".into(),
                name: "yubikey".into(),
                user: "alice".into(),
                created: None,
                last_used: Some(at("2030-01-01T10:00:00Z")),
            },
            Device {
                uuid: "5444970a-39a0-4814-968d-e58b4a8fa686".into(),
                name: "backup\nkey".into(),
                user: "alice".into(),
                created: None,
                last_used: None,
            },
        ]);
        assert_eq!(
            text,
            "UUID                                   NAME         LAST USED\n\
             d6c06a18-e147-4232-9dfe-6f83a28d5850   yubikey      2030-01-01T10:00:00Z\n\
             5444970a-39a0-4814-968d-e58b4a8fa686   backup key   never\n"
        );
    }

    fn whoami() -> WhoAmI {
        WhoAmI {
            user: "alice@example.com".into(),
            groups: vec!["developers".into(), "system:authenticated".into()],
            roles: vec!["access-prod".into()],
            locks: vec![],
            cluster_requires_mfa: false,
            mfa_devices: 2,
            failed_mfa_attempts: 0,
            mfa_locked_until: None,
        }
    }

    #[test]
    fn status_of_a_user_in_good_standing() {
        let text = status(&whoami(), at("2030-01-01T00:00:00Z"));
        assert_eq!(
            text,
            "User:                alice@example.com\n\
             Groups:              developers, system:authenticated\n\
             Roles:               access-prod\n\
             Locked:              no\n\
             MFA devices:         2\n\
             Failed MFA checks:   0\n\
             Session MFA:         required where one of your roles asks for it\n"
        );
    }

    #[test]
    fn status_shows_locks_and_the_mfa_lock_out() {
        let mut who = whoami();
        who.roles.clear();
        who.locks = vec![
            LockInForce {
                name: "dc7cee9d".into(),
                message: "Suspicious activity.".into(),
                expires_at: Some(at("2030-01-01T10:00:00Z")),
            },
            LockInForce {
                name: "role-lock".into(),
                message: "".into(),
                expires_at: None,
            },
        ];
        who.failed_mfa_attempts = 5;
        who.mfa_locked_until = Some(at("2030-01-01T00:05:00Z"));
        who.cluster_requires_mfa = true;
        let text = status(&who, at("2030-01-01T00:00:00Z"));
        assert_eq!(
            text,
            "User:                alice@example.com\n\
             Groups:              developers, system:authenticated\n\
             Roles:               <none>\n\
             Locked:              yes, new sessions are refused (2 locks in force)\n\
             \x20 LOCK        MESSAGE                EXPIRES\n\
             \x20 dc7cee9d    Suspicious activity.   2030-01-01T10:00:00Z\n\
             \x20 role-lock   <none>                 never\n\
             MFA devices:         2\n\
             Failed MFA checks:   5 (new MFA credentials are refused until 2030-01-01T00:05:00Z)\n\
             Session MFA:         required for every session (cluster-wide)\n"
        );
        // Once the lock-out is over, only the count remains.
        let later = status(&who, at("2030-01-01T00:06:00Z"));
        assert!(later.contains("Failed MFA checks:   5\n"), "{later}");
    }

    #[test]
    fn login_files_are_named_after_the_prefix() {
        let [cert, key, ca] = out_paths(Path::new("/tmp/alice"));
        assert_eq!(cert, Path::new("/tmp/alice.crt"));
        assert_eq!(key, Path::new("/tmp/alice.key"));
        assert_eq!(ca, Path::new("/tmp/alice-ca.crt"));
        let text = login_summary(
            Path::new("db"),
            at("2030-01-01T00:05:00Z"),
            "d6c06a18-e147-4232-9dfe-6f83a28d5850",
        );
        assert!(text.contains("valid until 2030-01-01T00:05:00Z"), "{text}");
        assert!(text.contains("sslcert=db.crt sslkey=db.key sslrootcert=db-ca.crt"));
        assert!(text.contains("--ssl-cert=db.crt --ssl-key=db.key --ssl-ca=db-ca.crt"));
    }
}
