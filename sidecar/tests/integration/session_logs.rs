//! The proxy's own log, as an on-call engineer reads it: the line that says a
//! session was cut names the session, its user and the lock, because it is
//! written inside the session's span; the call site names none of them.

use crate::support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use deadbolt_api::TargetKind;
use deadbolt_runtime::logging::{self, LogFormat};
use deadbolt_testkit::eventually_some;
use deadbolt_testkit::postgres::Postgres;
use support::operator::{Operator, target};
use support::proxy::{Proxy, user};

/// Log lines written so far, shared with the logger.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn json(&self) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_sessions_log_line_names_its_session_user_and_lock() {
    // The logger is the process's: other tests in this binary log into it
    // too, so the line is picked by this session's id.
    let lines = Lines::default();
    let writer = lines.clone();
    logging::init_with_writer(LogFormat::Json, "info", move || writer.clone()).unwrap();
    let postgres = Postgres::start();
    let operator = Operator::start().await;
    let proxy = Proxy::start(&operator, &postgres, "proxy-logs").await;

    let mut session = std::process::Command::new("psql")
        .arg(proxy.conninfo(&user("alice"), "app"))
        .args(["-XAtc", "select pg_sleep(60)"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // This proxy's audit names the session; the log line is picked by it.
    let sid = eventually_some("the session to start", || {
        proxy
            .audit
            .json()
            .into_iter()
            .find(|e| e["event"] == "session.start" && e["user"] == "alice")
            .and_then(|e| e["sid"].as_str().map(str::to_string))
    })
    .await;
    operator.lock(
        "incident-7",
        target(TargetKind::User, "alice"),
        "Suspicious activity.",
    );

    let cut = eventually_some("a \"session cut\" line", || {
        lines
            .json()
            .into_iter()
            .find(|line| line["message"] == "session cut" && line["span"]["sid"] == sid.as_str())
    })
    .await;
    let span = &cut["span"];
    assert_eq!(span["name"], "session", "{cut}");
    assert_eq!(span["user"], "alice", "{cut}");
    assert_eq!(span["login"], "app", "{cut}");
    assert_eq!(span["server_id"], "proxy-logs", "{cut}");
    assert_eq!(span["lock"], "incident-7", "{cut}");
    assert!(
        proxy
            .audit
            .json()
            .iter()
            .any(|e| e["event"] == "session.terminated" && e["sid"] == sid.as_str()),
        "the log's session is the one the audit saw cut"
    );
    let _ = session.kill();
    let _ = session.wait();
}
