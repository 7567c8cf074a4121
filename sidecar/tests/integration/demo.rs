//! The README's one-command demo runs and does what it says: it exits 0 only
//! when the live session was cut with the lock message, a new connection was
//! refused with it, and access came back after the lock was deleted.

use std::path::Path;
use std::process::Command;

#[test]
fn the_local_demo_runs_clean() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_deadbolt-sidecar"))
        .parent()
        .unwrap()
        .to_path_buf();
    for binary in ["deadbolt-operator", "deadbolt-ca"] {
        assert!(
            bin_dir.join(binary).exists(),
            "{binary} is not built in {}; run `cargo build --workspace --bins` first (scripts/test.sh does)",
            bin_dir.display()
        );
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/demo.sh");
    let output = Command::new("bash")
        .arg(script)
        .env("DEADBOLT_BIN", &bin_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("demo OK"), "{stdout}");
    assert!(
        stdout.contains(r#"FATAL:  lock targeting User:"alice" is in force: Suspicious activity."#),
        "{stdout}"
    );
    assert!(stdout.contains("welcome back, app"), "{stdout}");
}
