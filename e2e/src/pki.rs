//! Certificates from the cluster's Deadbolt CA: the operator keeps the CA in
//! the `deadbolt-ca` Secret of its namespace; a scenario copies it into a
//! temporary directory and issues what it needs with the real `deadbolt-ca`.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::{PATIENCE, bin, eventually, kubectl, success};

/// A copy of the operator's CA and the certificates issued from it.
pub struct Pki {
    dir: TempDir,
}

/// A certificate and its key.
pub struct Issued {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// The key (PEM).
    pub key: PathBuf,
}

impl Pki {
    /// The CA of the operator in `namespace`, once it has created it.
    pub fn from_cluster(namespace: &str) -> Self {
        eventually("the operator's deadbolt-ca Secret", PATIENCE, || {
            kubectl(&["get", "secret", "deadbolt-ca", "-n", namespace])
                .status
                .success()
        });
        let field = |key: &str| {
            let jsonpath = format!("{{.data.{}}}", key.replace('.', "\\."));
            let encoded = success(kubectl(&[
                "get",
                "secret",
                "deadbolt-ca",
                "-n",
                namespace,
                "-o",
                &format!("jsonpath={jsonpath}"),
            ]));
            decode_base64(encoded.trim())
        };
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        std::fs::create_dir_all(&ca).unwrap();
        std::fs::write(ca.join("ca.crt"), field("tls.crt")).unwrap();
        write_private(&ca.join("ca.key"), &field("tls.key"));
        Self { dir }
    }

    /// The CA certificate.
    pub fn ca_crt(&self) -> PathBuf {
        self.dir.path().join("ca/ca.crt")
    }

    /// The directory for other files of the scenario.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn issue(&self, out: &str, args: &[&str]) -> Issued {
        let prefix = self.dir.path().join(out);
        let output = Command::new(bin("deadbolt-ca"))
            .arg("--ca-dir")
            .arg(self.dir.path().join("ca"))
            .arg("--out")
            .arg(&prefix)
            .args(args)
            .output()
            .unwrap();
        success(output);
        Issued {
            cert: self.dir.path().join(format!("{out}.crt")),
            key: self.dir.path().join(format!("{out}.key")),
        }
    }

    /// A user's client certificate. Issued from the CA directly, as a test
    /// fixture: the cluster's locks are the proxies' to enforce (tests lock
    /// users that already hold certificates).
    pub fn user(&self, user: &str, groups: &[&str]) -> Issued {
        let mut args = vec!["user", "--user", user, "--no-lock-check"];
        for group in groups {
            args.extend(["--group", group]);
        }
        self.issue(&format!("user-{user}"), &args)
    }

    /// A serving certificate for localhost and 127.0.0.1.
    pub fn serving(&self, out: &str) -> Issued {
        self.issue(
            out,
            &["serving", "--name", "localhost", "--name", "127.0.0.1"],
        )
    }

    /// A proxy's lock-view certificate.
    pub fn proxy(&self, server_id: &str) -> Issued {
        self.issue(
            &format!("proxy-{server_id}"),
            &["proxy", "--server-id", server_id],
        )
    }
}

fn write_private(path: &Path, contents: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Standard base64, as `kubectl get secret` prints data.
pub fn decode_base64(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .unwrap_or_else(|error| panic!("not base64 ({error}): {text}"))
}
