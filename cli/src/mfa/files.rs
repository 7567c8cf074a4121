//! Writing credential files safely: the soft token, the credential cache and
//! `login --out` all hold private keys, so each is written the way every
//! Deadbolt key is ([`deadbolt_runtime::files`]), into directories only the
//! owner can read.

use std::path::Path;

use super::MfaError;

pub use deadbolt_runtime::files::{PRIVATE, PUBLIC};

/// Writes `contents` to `path` atomically with `mode`
/// ([`deadbolt_runtime::files::write_atomically`]).
pub fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), MfaError> {
    deadbolt_runtime::files::write_atomically(path, contents, mode)
        .map_err(|error| MfaError::file(path, error))
}

/// Creates `dir` and its missing parents, readable by the owner only (on Unix).
pub fn create_private_dir(dir: &Path) -> Result<(), MfaError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|error| MfaError::file(dir, error))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_are_replaced_whole_with_their_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        write_atomically(&path, b"new", PRIVATE).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("file");
        let error = write_atomically(&path, b"x", PRIVATE).unwrap_err();
        assert!(error.to_string().contains("missing"), "{error}");
    }
}
