//! The checked-in `crds/` must be exactly what the Rust types generate.

use std::path::Path;

#[test]
fn checked_in_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let mut expected_files = Vec::new();
    for (file, generated) in deadbolt_api::resources::crd_files() {
        let checked_in = std::fs::read_to_string(dir.join(&file)).unwrap_or_default();
        assert!(
            checked_in == generated,
            "crds/{file} has drifted from the Rust types; regenerate with: cargo run -p deadbolt-api --bin crdgen"
        );
        expected_files.push(file);
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .expect("crds/ exists")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    present.sort();
    expected_files.sort();
    assert_eq!(
        present, expected_files,
        "crds/ holds a file no type generates; regenerate with: cargo run -p deadbolt-api --bin crdgen"
    );
}
