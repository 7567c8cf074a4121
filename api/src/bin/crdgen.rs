//! Writes `crds/<plural>.deadbolt.dev.yaml` for every Deadbolt CRD.
//!
//! Run from the repository root: `cargo run -p deadbolt-api --bin crdgen`.
//! With `--check`, compares instead of writing and exits 1 on drift.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let check = std::env::args().any(|arg| arg == "--check");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let mut drifted = false;
    for (file, yaml) in deadbolt_api::resources::crd_files() {
        let path = dir.join(&file);
        if check {
            let current = std::fs::read_to_string(&path).unwrap_or_default();
            if current != yaml {
                eprintln!("crds/{file} is out of date");
                drifted = true;
            }
        } else if let Err(error) = std::fs::write(&path, yaml) {
            eprintln!("cannot write {}: {error}", path.display());
            return ExitCode::FAILURE;
        } else {
            println!("wrote crds/{file}");
        }
    }
    if drifted {
        eprintln!("regenerate with: cargo run -p deadbolt-api --bin crdgen");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
