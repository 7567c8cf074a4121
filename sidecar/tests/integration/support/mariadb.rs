//! A real MariaDB server from Debian's packages: `mariadb-install-db` and
//! `mariadbd` in a temporary directory, on a free loopback port, with grant
//! tables (logins are checked). Users are created through the server's unix
//! socket, where the OS user running the tests is MariaDB's `root`. Under
//! root the server runs with `--user=root`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Database users the tests log in as (`mysql_native_password`), with their passwords.
pub const USERS: [(&str, &str); 2] = [("app", "app-secret"), ("reporting", "reporting-secret")];
/// A user who logs in with MariaDB's `ed25519` plugin.
pub const ED25519_USER: (&str, &str) = ("edward", "edward-secret");

/// A running server; killed when dropped.
pub struct Mariadb {
    dir: TempDir,
    child: Child,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// The OS user MariaDB runs as and maps its `root` to.
fn os_user() -> String {
    if running_as_root() {
        return "root".into();
    }
    let output = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn run(program: &str, args: &[String]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} (install mariadb-server and mariadb-client): {e}")
        })
}

impl Mariadb {
    /// Installs a data directory, starts the server and creates the test users.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Like [`Mariadb::start`], serving TLS with this certificate and key (PEM)
    /// and refusing connections without it (`require_secure_transport`).
    pub fn start_with_tls(cert_pem: &str, key_pem: &str) -> Self {
        Self::start_with(Some((cert_pem, key_pem)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("deadbolt-mariadb")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        let user = os_user();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        // Small, and private: concurrent servers must not share temporary files.
        let small = [
            "--innodb-log-file-size=4M".to_string(),
            "--innodb-buffer-pool-size=16M".to_string(),
            format!("--tmpdir={}", tmp.display()),
        ];
        let mut install = vec![
            "--no-defaults".to_string(),
            format!("--datadir={}", data.display()),
            format!("--user={user}"),
            "--auth-root-authentication-method=socket".to_string(),
            format!("--auth-root-socket-user={user}"),
            "--skip-test-db".to_string(),
        ];
        install.extend(small.iter().cloned());
        let installed = run("mariadb-install-db", &install);
        assert!(
            installed.status.success(),
            "mariadb-install-db: {}{}",
            String::from_utf8_lossy(&installed.stdout),
            String::from_utf8_lossy(&installed.stderr)
        );

        let port = super::free_port();
        let socket = dir.path().join("mysql.sock");
        let log = dir.path().join("error.log");
        let mut server = vec![
            "--no-defaults".to_string(),
            format!("--datadir={}", data.display()),
            format!("--socket={}", socket.display()),
            format!("--port={port}"),
            "--bind-address=127.0.0.1".to_string(),
            format!("--pid-file={}", dir.path().join("mariadb.pid").display()),
            format!("--log-error={}", log.display()),
            "--skip-name-resolve".to_string(),
            "--skip-log-bin".to_string(),
            "--max-connections=300".to_string(),
            format!("--user={user}"),
        ];
        server.extend(small);
        if let Some((cert_pem, key_pem)) = tls {
            let cert = dir.path().join("server.crt");
            let key = dir.path().join("server.key");
            std::fs::write(&cert, cert_pem).unwrap();
            std::fs::write(&key, key_pem).unwrap();
            server.extend([
                format!("--ssl-cert={}", cert.display()),
                format!("--ssl-key={}", key.display()),
                "--require-secure-transport=ON".to_string(),
            ]);
        }
        let child = Command::new("mariadbd")
            .args(&server)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd is not installed: install mariadb-server");
        let mut started = Self { dir, child, port };
        started.wait_until_ready(&log);
        let mut setup = String::new();
        for (user, password) in USERS {
            setup.push_str(&format!(
                "CREATE DATABASE {user}; CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'; GRANT ALL ON {user}.* TO '{user}'@'%';"
            ));
        }
        let (user, password) = ED25519_USER;
        setup.push_str(&format!(
            "INSTALL SONAME 'auth_ed25519'; CREATE USER '{user}'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('{password}'); GRANT ALL ON app.* TO '{user}'@'%'; CREATE DATABASE {user}; GRANT ALL ON {user}.* TO '{user}'@'%';"
        ));
        started.sql(&setup);
        started
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("mysql.sock")
    }

    fn wait_until_ready(&mut self, log: &Path) {
        let deadline = Instant::now() + super::PATIENCE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "mariadbd exited with {status}: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            if self.socket().exists() && self.try_sql("SELECT 1").status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd did not start: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn try_sql(&self, sql: &str) -> Output {
        run(
            "mariadb",
            &[
                "--no-defaults".to_string(),
                format!("--socket={}", self.socket().display()),
                "--user=root".to_string(),
                "--batch".to_string(),
                "--skip-column-names".to_string(),
                "-e".to_string(),
                sql.to_string(),
            ],
        )
    }

    /// Runs SQL as MariaDB's root, through the unix socket (not through a proxy).
    pub fn sql(&self, sql: &str) -> String {
        deadbolt_testkit::command::succeeded(sql, &self.try_sql(sql))
    }

    /// `user:password` lines for the proxy's upstream logins.
    pub fn password_lines() -> String {
        USERS
            .iter()
            .chain([&ED25519_USER])
            .map(|(u, p)| format!("{u}:{p}\n"))
            .collect()
    }

    /// `127.0.0.1:port`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
