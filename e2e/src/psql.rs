//! The real `psql`: a live session reading statements from a pipe, and
//! one-shot queries. Sessions are killed when dropped.

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::PATIENCE;
use crate::process::lines_of;

/// A live `psql` reading statements from a pipe.
pub struct LivePsql {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl LivePsql {
    /// Connects with `conninfo` and waits until the session answers.
    pub fn open(conninfo: &str) -> Self {
        let mut child = Command::new("psql")
            .arg(conninfo)
            .arg("-XAt")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("psql is not installed: run scripts/install-tools.sh");
        let lines = lines_of(&mut child);
        let mut live = Self {
            stdin: child.stdin.take(),
            child,
            lines,
        };
        live.query("select 'connected'");
        live.expect("connected");
        live
    }

    /// Sends one statement.
    pub fn query(&mut self, sql: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "{sql};");
        }
    }

    /// Waits until `cut` says the proxy cut the session (its audit log, say),
    /// then asks psql for something (psql reads the server only when it has a
    /// query) and returns what it printed up to `needle`.
    pub fn expect_cut(&mut self, cut: impl Fn() -> bool, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        while !cut() {
            assert!(Instant::now() < deadline, "the session was never cut");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.query("select 'still here?'");
        self.expect(needle)
    }

    /// Waits for a line containing `needle`; returns every line up to it.
    pub fn expect(&self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    let found = line.contains(needle);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(_) => panic!("psql never printed {needle:?}: {seen:?}"),
            }
        }
    }
}

impl Drop for LivePsql {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `psql -c` selecting `'in'`.
pub fn psql_once(conninfo: &str) -> std::process::Output {
    Command::new("psql")
        .arg(conninfo)
        .args(["-XAtc", "select 'in'"])
        .output()
        .unwrap()
}

/// Everything `output` printed, stdout then stderr.
pub fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
