//! A real PostgreSQL server from Debian's packages, started with `initdb` and
//! `pg_ctl` in a temporary directory. PostgreSQL refuses to run as root, so
//! under root the server runs as the `postgres` system user.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

/// Database users the tests log in as, with their passwords.
pub const USERS: [(&str, &str); 3] = [
    ("postgres", "postgres-secret"),
    ("app", "app-secret"),
    ("reporting", "reporting-secret"),
];

/// A running server; stopped when dropped.
pub struct Postgres {
    dir: TempDir,
    bin: PathBuf,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
}

fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: run scripts/install-tools.sh")
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no initdb under /usr/lib/postgresql: run scripts/install-tools.sh")
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn run_as_server_user(program: &Path, args: &[&str]) -> Output {
    let output = if running_as_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(program)
            .args(args)
            .output()
    } else {
        Command::new(program).args(args).output()
    };
    output.unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

fn give_to_server_user(path: &Path) {
    if running_as_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Postgres {
    /// initdb, start, and create the test users and their databases.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`Postgres::start`] with extra server settings (`-c name=value`), which
    /// override the defaults, e.g. `[("max_connections", "1100")]`.
    pub fn start_with(settings: &[(&str, &str)]) -> Self {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("deadbolt-pg")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        let password_file = dir.path().join("pw");
        std::fs::write(&password_file, USERS[0].1).unwrap();
        give_to_server_user(dir.path());
        let init = run_as_server_user(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--pwfile",
                password_file.to_str().unwrap(),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let port = crate::free_port();
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
            dir.path().display()
        );
        for (name, value) in settings {
            options.push_str(&format!(" -c {name}={value}"));
        }
        let log = dir.path().join("log");
        let start = run_as_server_user(
            &bin.join("pg_ctl"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        assert!(
            start.status.success(),
            "pg_ctl start: {}\n{}",
            String::from_utf8_lossy(&start.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let server = Self { dir, bin, port };
        for (user, password) in &USERS[1..] {
            server.sql(&format!("CREATE ROLE {user} LOGIN PASSWORD '{password}'"));
            server.sql(&format!("CREATE DATABASE {user} OWNER {user}"));
        }
        server
    }

    /// Runs SQL as the superuser, directly (not through a proxy).
    pub fn sql(&self, sql: &str) -> String {
        let output = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-XAtc", sql])
            .env("PGPASSWORD", USERS[0].1)
            .output()
            .expect("psql is not installed: run scripts/install-tools.sh");
        crate::command::succeeded(sql, &output)
    }

    /// `user:password` lines for the proxy's upstream logins.
    pub fn password_lines() -> String {
        USERS.iter().map(|(u, p)| format!("{u}:{p}\n")).collect()
    }

    /// `127.0.0.1:port`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = run_as_server_user(
            &self.bin.join("pg_ctl"),
            &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
    }
}
