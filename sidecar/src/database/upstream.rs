//! How a database proxy reaches its upstream, whatever the protocol: where it
//! is (a TCP connection with a deadline, and the error when there is none),
//! the passwords it logs in with (a file of `user:password` lines) and the
//! TLS it speaks (trust, an optional client certificate, the name to verify).
//! The PostgreSQL and MySQL proxies read the same flags and the same file
//! format; each protocol's own `upstream` module does the login on its wire.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadbolt_runtime::tls::{self, CertifiedKey, ClientTls};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

/// How long the upstream has to accept a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how the proxy reaches the real server.
#[derive(Clone)]
pub struct UpstreamConfig {
    /// `host:port`.
    pub address: String,
    /// TLS, when the upstream speaks it.
    pub tls: Option<UpstreamTls>,
    /// Passwords for the database users; a user without one logs in with an
    /// empty password (PostgreSQL: trust).
    pub passwords: Passwords,
}

/// The upstream could not be reached, or stopped answering while the proxy
/// set up its session (TCP, TLS or a deadline).
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the database at {address}: {reason}")]
pub struct Unreachable {
    /// The upstream's address.
    pub address: String,
    /// Why.
    pub reason: String,
}

impl UpstreamConfig {
    /// Why the upstream cannot be reached, with its address.
    pub fn unreachable(&self, reason: impl std::fmt::Display) -> Unreachable {
        Unreachable {
            address: self.address.clone(),
            reason: reason.to_string(),
        }
    }

    /// A TCP connection to the upstream (no delay), within the connect deadline.
    pub async fn connect_tcp(&self) -> Result<TcpStream, Unreachable> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.address))
            .await
            .map_err(|_| self.unreachable("timed out"))?
            .map_err(|error| self.unreachable(error))?;
        tcp.set_nodelay(true)
            .map_err(|error| self.unreachable(error))?;
        Ok(tcp)
    }
}

/// Passwords the proxy logs in to the upstream with, per database user, from a
/// file of `user:password` lines (`*` matches any user).
#[derive(Clone, Default)]
pub struct Passwords(HashMap<String, String>);

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Passwords {
    /// Parses `user:password` lines; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut passwords = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let (user, password) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: expected user:password", number + 1))?;
            passwords.insert(user.to_string(), password.to_string());
        }
        Ok(Self(passwords))
    }

    /// Reads a password file.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        Self::parse(&text).map_err(|error| format!("{}: {error}", path.display()))
    }

    /// The password for `user`, or the wildcard's.
    pub fn for_user(&self, user: &str) -> Option<&str> {
        self.0
            .get(user)
            .or_else(|| self.0.get("*"))
            .map(String::as_str)
    }
}

/// TLS to the upstream.
#[derive(Clone)]
pub struct UpstreamTls {
    /// Trust (and an optional client certificate for certificate authentication).
    pub config: Arc<ClientConfig>,
    /// The name the server certificate must carry.
    pub server_name: ServerName<'static>,
}

/// The upstream TLS flags every database proxy has.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTlsFlags<'a> {
    /// The upstream, `host:port`.
    pub upstream: &'a str,
    /// CA (PEM) of the upstream's certificate; TLS is off without it.
    pub ca: Option<&'a Path>,
    /// Client certificate (PEM).
    pub cert: Option<&'a Path>,
    /// Key of `cert`.
    pub key: Option<&'a Path>,
    /// The name to verify (default: the upstream's host).
    pub server_name: Option<&'a str>,
}

impl UpstreamTls {
    /// Builds the upstream TLS from the flags; `None` when no CA was given.
    pub fn from_flags(flags: UpstreamTlsFlags<'_>) -> anyhow::Result<Option<Self>> {
        let Some(ca) = flags.ca else {
            return Ok(None);
        };
        let identity = match (flags.cert, flags.key) {
            (Some(cert), Some(key)) => Some(CertifiedKey::from_files(cert, key)?),
            _ => None,
        };
        let config = ClientTls {
            roots: tls::root_store_from_file(ca)?,
            identity,
        }
        .config(&[])?;
        let host = flags.server_name.map(str::to_string).unwrap_or_else(|| {
            flags
                .upstream
                .rsplit_once(':')
                .map_or(flags.upstream.to_string(), |(h, _)| h.to_string())
        });
        let server_name = ServerName::try_from(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        )
        .with_context(|| format!("invalid upstream server name {host:?}"))?;
        Ok(Some(Self {
            config,
            server_name,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_files_match_users_then_the_wildcard() {
        let passwords =
            Passwords::parse("# comment\napp:s3cret:with:colons\n*:fallback\n").unwrap();
        assert_eq!(passwords.for_user("app"), Some("s3cret:with:colons"));
        assert_eq!(passwords.for_user("other"), Some("fallback"));
        assert!(Passwords::parse("no-colon").is_err());
        assert!(format!("{passwords:?}").contains("app"));
        assert!(!format!("{passwords:?}").contains("s3cret"));
    }

    #[test]
    fn without_a_ca_there_is_no_upstream_tls() {
        let flags = UpstreamTlsFlags {
            upstream: "db:3306",
            ca: None,
            cert: None,
            key: None,
            server_name: None,
        };
        assert!(UpstreamTls::from_flags(flags).unwrap().is_none());
    }
}
