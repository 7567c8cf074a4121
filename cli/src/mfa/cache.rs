//! The session credential cache for the exec credential plugin.
//!
//! kubectl runs its credential plugin once per process, and a shell session
//! runs many kubectl processes; without a cache each one would ask for a
//! security key touch. A credential is kept until it has
//! [`FRESHNESS_MARGIN`] left, one file per (MFA service URL, caller,
//! target). Files are named by a hash: the caller's token is never written
//! down, only a hash of it. Entries hold a private key, so they are written
//! with mode 0600 in a 0700 directory, atomically. A cache file that cannot be
//! read is treated as missing and overwritten: the cache only ever saves a
//! touch, it never fails a login.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::client::sha256_hex;
use super::files::{PRIVATE, create_private_dir, write_atomically};
use super::{Caller, IssuedLogin, MfaError, check_issued};

/// An entry is reused only while it has more than this left, so kubectl never
/// starts a request with a certificate about to expire.
pub const FRESHNESS_MARGIN: Duration = Duration::from_secs(30);

/// The directory's environment variable, which wins over the XDG default.
pub const CACHE_DIR_ENV: &str = "DEADBOLT_CACHE_DIR";

/// The directory holding one file per cached credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialCache {
    dir: PathBuf,
}

/// Which credential an entry holds: a hash of the service URL, the caller and the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheKey(String);

impl CacheKey {
    /// The key for credentials from `url`, for `caller`, narrowed to `target`.
    pub fn new(url: &str, caller: &Caller, target: Option<&str>) -> CacheKey {
        let target = match target {
            Some(target) => format!("target:{target}"),
            None => "any".to_string(),
        };
        CacheKey(sha256_hex(&[
            b"deadbolt-mfa-cache-v1\0",
            url.trim_end_matches('/').as_bytes(),
            b"\0",
            caller.fingerprint().as_bytes(),
            b"\0",
            target.as_bytes(),
        ]))
    }

    /// The entry's file name.
    pub fn file_name(&self) -> String {
        format!("{}.json", self.0)
    }
}

/// One cached credential, as stored.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    certificate_pem: String,
    key_pem: String,
    ca_pem: String,
    expires_at: Timestamp,
    mfa_device: String,
}

impl CredentialCache {
    /// A cache in `dir` (created when first written to).
    pub fn new(dir: impl Into<PathBuf>) -> CredentialCache {
        CredentialCache { dir: dir.into() }
    }

    /// The directory: `$DEADBOLT_CACHE_DIR`, else `$XDG_CACHE_HOME/deadbolt`,
    /// else `$HOME/.cache/deadbolt`; `None` when none of them is set. Empty
    /// and (per the XDG specification) relative `XDG_CACHE_HOME` values are ignored.
    pub fn locate(
        deadbolt_cache_dir: Option<&Path>,
        xdg_cache_home: Option<&Path>,
        home: Option<&Path>,
    ) -> Option<CredentialCache> {
        let non_empty = |path: &&Path| !path.as_os_str().is_empty();
        if let Some(dir) = deadbolt_cache_dir.filter(non_empty) {
            return Some(CredentialCache::new(dir));
        }
        if let Some(xdg) = xdg_cache_home
            .filter(non_empty)
            .filter(|path| path.is_absolute())
        {
            return Some(CredentialCache::new(xdg.join("deadbolt")));
        }
        home.filter(non_empty)
            .map(|home| CredentialCache::new(home.join(".cache").join("deadbolt")))
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file an entry lives in.
    pub fn path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(key.file_name())
    }

    /// The credential stored under `key`, if it is readable, consistent and
    /// has more than [`FRESHNESS_MARGIN`] left at `now`.
    pub fn load(&self, key: &CacheKey, now: Timestamp) -> Option<IssuedLogin> {
        let bytes = std::fs::read(self.path(key)).ok()?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        let login = IssuedLogin {
            cert_pem: entry.certificate_pem,
            key_pem: entry.key_pem,
            ca_pem: entry.ca_pem,
            expires_at: entry.expires_at,
            mfa_device: entry.mfa_device,
        };
        let margin = SignedDuration::try_from(FRESHNESS_MARGIN).ok()?;
        let fresh_until = login.expires_at.checked_sub(margin).ok()?;
        if now >= fresh_until {
            return None;
        }
        check_issued(&login).ok()?;
        Some(login)
    }

    /// Stores `login` under `key`, replacing whatever was there.
    pub fn store(&self, key: &CacheKey, login: &IssuedLogin) -> Result<(), MfaError> {
        create_private_dir(&self.dir)?;
        let entry = Entry {
            certificate_pem: login.cert_pem.clone(),
            key_pem: login.key_pem.clone(),
            ca_pem: login.ca_pem.clone(),
            expires_at: login.expires_at,
            mfa_device: login.mfa_device.clone(),
        };
        let bytes =
            serde_json::to_vec(&entry).map_err(|error| MfaError::file(self.path(key), error))?;
        write_atomically(&self.path(key), &bytes, PRIVATE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    /// A consistent credential (a self-signed certificate for its own key).
    fn login(expires_at: Timestamp) -> IssuedLogin {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["alice".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        IssuedLogin {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: cert.pem(),
            expires_at,
            mfa_device: "d6c06a18-e147-4232-9dfe-6f83a28d5850".into(),
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    const URL: &str = "https://mfa.deadbolt.svc:8443";
    const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.secret-token-text";

    #[test]
    fn hits_until_thirty_seconds_before_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CredentialCache::new(dir.path().join("deadbolt"));
        let key = CacheKey::new(URL, &Caller::Token(TOKEN.into()), None);
        assert_eq!(cache.load(&key, at(1_000)), None, "empty cache: a miss");
        let stored = login(at(1_300));
        cache.store(&key, &stored).unwrap();
        assert_eq!(cache.load(&key, at(1_000)), Some(stored.clone()));
        assert_eq!(cache.load(&key, at(1_269)), Some(stored.clone()));
        assert_eq!(cache.load(&key, at(1_270)), None, "30 s left: too close");
        assert_eq!(cache.load(&key, at(1_400)), None, "expired");
        // A later login replaces the entry.
        let renewed = login(at(1_600));
        cache.store(&key, &renewed).unwrap();
        assert_eq!(cache.load(&key, at(1_400)), Some(renewed));
    }

    #[test]
    fn entries_are_per_url_caller_and_target() {
        let token = Caller::Token(TOKEN.into());
        let base = CacheKey::new(URL, &token, None);
        assert_eq!(base, CacheKey::new(&format!("{URL}/"), &token, None));
        assert_ne!(base, CacheKey::new("https://other:8443", &token, None));
        assert_ne!(
            base,
            CacheKey::new(URL, &Caller::Token("other".into()), None)
        );
        assert_ne!(base, CacheKey::new(URL, &token, Some("db-prod")));
        assert_ne!(
            CacheKey::new(URL, &token, Some("a")),
            CacheKey::new(URL, &token, Some("b"))
        );
        let cert = Caller::Certificate {
            cert_pem: "cert".into(),
            key_pem: "key-1".into(),
        };
        let same_cert = Caller::Certificate {
            cert_pem: "cert".into(),
            key_pem: "key-2".into(),
        };
        assert_eq!(
            CacheKey::new(URL, &cert, None),
            CacheKey::new(URL, &same_cert, None)
        );
        assert_ne!(CacheKey::new(URL, &cert, None), base);
    }

    #[test]
    fn the_token_never_reaches_the_cache_directory() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CredentialCache::new(dir.path());
        let key = CacheKey::new(URL, &Caller::Token(TOKEN.into()), Some("db"));
        cache.store(&key, &login(at(1_300))).unwrap();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(!name.contains("secret-token"), "{name}");
            let contents = std::fs::read_to_string(entry.path()).unwrap();
            assert!(!contents.contains(TOKEN), "the token is in {name}");
            assert!(!contents.contains("secret-token-text"));
        }
    }

    #[cfg(unix)]
    #[test]
    fn files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cache = CredentialCache::new(dir.path().join("a").join("deadbolt"));
        let key = CacheKey::new(URL, &Caller::Token(TOKEN.into()), None);
        cache.store(&key, &login(at(1_300))).unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&cache.path(&key)), 0o600);
        assert_eq!(mode(cache.dir()), 0o700);
    }

    #[test]
    fn a_corrupt_entry_is_a_miss_and_is_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CredentialCache::new(dir.path());
        let key = CacheKey::new(URL, &Caller::Token(TOKEN.into()), None);
        for garbage in [
            &b"{not json"[..],
            b"",
            b"\xff\xfe",
            br#"{"certificatePem":"x","keyPem":"y","caPem":"z","expiresAt":"2999-01-01T00:00:00Z","mfaDevice":"d"}"#,
        ] {
            std::fs::write(cache.path(&key), garbage).unwrap();
            assert_eq!(cache.load(&key, at(1_000)), None);
        }
        // A certificate that does not match its key is not used either.
        let mut mismatched = login(at(1_300));
        mismatched.key_pem = login(at(1_300)).key_pem;
        cache.store(&key, &mismatched).unwrap();
        assert_eq!(cache.load(&key, at(1_000)), None);
        let good = login(at(1_300));
        cache.store(&key, &good).unwrap();
        assert_eq!(cache.load(&key, at(1_000)), Some(good));
    }

    #[test]
    fn the_directory_follows_the_environment() {
        let locate = |deadbolt: Option<&str>, xdg: Option<&str>, home: Option<&str>| {
            CredentialCache::locate(
                deadbolt.map(Path::new),
                xdg.map(Path::new),
                home.map(Path::new),
            )
            .map(|cache| cache.dir().to_path_buf())
        };
        let path = |text: &str| Some(PathBuf::from(text));
        assert_eq!(locate(Some("/c"), Some("/x"), Some("/h")), path("/c"));
        assert_eq!(locate(None, Some("/x"), Some("/h")), path("/x/deadbolt"));
        assert_eq!(locate(Some(""), Some("/x"), None), path("/x/deadbolt"));
        assert_eq!(
            locate(None, Some("relative"), Some("/h")),
            path("/h/.cache/deadbolt")
        );
        assert_eq!(locate(None, None, Some("/h")), path("/h/.cache/deadbolt"));
        assert_eq!(locate(None, None, None), None);
    }
}
