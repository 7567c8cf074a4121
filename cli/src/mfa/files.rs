//! Writing credential files safely: the soft token, the credential cache and
//! `login --out` all hold private keys, so each file is written whole to a
//! temporary file beside it, with its final permissions from the start, and
//! renamed into place. A reader never sees half a file, and a key is never
//! readable by others, not even for a moment.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::MfaError;

/// Permissions of files holding secrets (keys, the soft token, cache entries).
pub const PRIVATE: u32 = 0o600;

/// Permissions of public files (certificates).
pub const PUBLIC: u32 = 0o644;

/// Writes `contents` to `path` atomically (temporary file, fsync, rename) with `mode` (on Unix).
pub fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), MfaError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| MfaError::file(path, "not a file name"))?
        .to_string_lossy()
        .into_owned();
    let temporary = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let result = (|| {
        let mut file = create_new(&temporary, mode)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temporary, path)
    })();
    if let Err(error) = result {
        let _ = std::fs::remove_file(&temporary);
        return Err(MfaError::file(path, error));
    }
    Ok(())
}

#[cfg(unix)]
fn create_new(path: &Path, mode: u32) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

#[cfg(not(unix))]
fn create_new(path: &Path, _mode: u32) -> std::io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
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
