//! `deadbolt-ca` as an operator runs it: a CA is created only by an explicit
//! `init`, never as a side effect of a mistyped `--ca-dir`; keys are written
//! with mode 0600 and replace an old file whole; a locked identity gets no
//! user certificate.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn deadbolt_ca(ca_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deadbolt-ca"))
        .arg("--ca-dir")
        .arg(ca_dir)
        .args(args)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_ca_is_made_only_by_init_and_keys_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let out = dir.path().join("alice");
    let out = out.to_str().unwrap();

    // Issuing from a directory without a CA fails and creates nothing.
    let typo = deadbolt_ca(
        &ca,
        &["--out", out, "user", "--user", "alice", "--no-lock-check"],
    );
    assert!(!typo.status.success());
    assert!(
        stderr(&typo).contains("deadbolt-ca --ca-dir DIR init"),
        "{}",
        stderr(&typo)
    );
    assert!(!ca.exists(), "a CA was created without init");

    let init = deadbolt_ca(&ca, &["init"]);
    assert!(init.status.success(), "{}", stderr(&init));
    assert_eq!(mode(&ca.join("ca.key")), 0o600);
    let again = deadbolt_ca(&ca, &["init"]);
    assert!(!again.status.success(), "a second init replaced the CA");
    assert!(
        stderr(&again).contains("already holds a Deadbolt CA"),
        "{}",
        stderr(&again)
    );

    let issued = deadbolt_ca(
        &ca,
        &["--out", out, "user", "--user", "alice", "--no-lock-check"],
    );
    assert!(issued.status.success(), "{}", stderr(&issued));
    let key = dir.path().join("alice.key");
    assert_eq!(mode(&key), 0o600);
    let first = std::fs::read(&key).unwrap();
    // A second issue replaces the key whole, still private, and leaves no temporary file.
    let reissued = deadbolt_ca(
        &ca,
        &["--out", out, "user", "--user", "alice", "--no-lock-check"],
    );
    assert!(reissued.status.success(), "{}", stderr(&reissued));
    assert_ne!(std::fs::read(&key).unwrap(), first);
    assert_eq!(mode(&key), 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_locked_identity_gets_no_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    assert!(deadbolt_ca(&ca, &["init"]).status.success());
    let out = dir.path().join("jerry");
    let out = out.to_str().unwrap();
    let manifests_arg = manifests.to_str().unwrap();
    let issue = |extra: &[&str]| {
        let mut args = vec!["--out", out, "user", "--user", "jerry", "--group", "devs"];
        args.extend_from_slice(extra);
        deadbolt_ca(&ca, &args)
    };

    // Without a lock view to check, it says so instead of issuing blind.
    let blind = issue(&[]);
    assert!(!blind.status.success());
    assert!(stderr(&blind).contains("--manifests"), "{}", stderr(&blind));

    let unlocked = issue(&["--manifests", manifests_arg]);
    assert!(unlocked.status.success(), "{}", stderr(&unlocked));

    // A lock on a role the user's group receives refuses it, with the lock's message.
    std::fs::write(
        manifests.join("roles.yaml"),
        "apiVersion: deadbolt.dev/v1\nkind: AccessRole\nmetadata: {name: access-prod}\nspec: {groups: [devs]}\n",
    )
    .unwrap();
    std::fs::write(
        manifests.join("lock.yaml"),
        "apiVersion: deadbolt.dev/v1\nkind: Lock\nmetadata: {name: prod-freeze}\nspec: {target: {role: access-prod}, message: Production is frozen.}\n",
    )
    .unwrap();
    let locked = issue(&["--manifests", manifests_arg]);
    assert!(
        !locked.status.success(),
        "a locked identity got a certificate"
    );
    assert!(
        stderr(&locked).contains("Production is frozen.")
            && stderr(&locked).contains("prod-freeze"),
        "{}",
        stderr(&locked)
    );
    // Another user is not concerned.
    let other = deadbolt_ca(
        &ca,
        &[
            "--out",
            out,
            "user",
            "--user",
            "olga",
            "--manifests",
            manifests_arg,
        ],
    );
    assert!(other.status.success(), "{}", stderr(&other));
}
