//! How fast a pushed lock reaches the clients of many live PostgreSQL sessions,
//! and what an idle session costs the proxy in memory.
//!
//! One run starts a real PostgreSQL (Debian's binaries, in a temporary
//! directory), the in-process test operator serving the lock view over TLS, and
//! the release `deadbolt-sidecar postgres` binary as a separate process. It
//! opens N sessions (default 1,000; `DEADBOLT_BENCH_SESSIONS` to change) with
//! raw tokio-rustls clients presenting distinct Deadbolt user certificates that
//! all hold the role `bench`, locks that role, and measures, per session, the
//! time from the lock's upsert into the operator's view to the client's receipt
//! of the FATAL `ErrorResponse`. It also reads the proxy's RSS before and with
//! the idle sessions open. Every session must receive the lock message, or the
//! run fails.
//!
//! Run: `cargo bench -p deadbolt-sidecar --bench postgres_cut`.

#[path = "../tests/integration/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadbolt_api::TargetKind;
use deadbolt_api::credential::CertIdentity;
use deadbolt_runtime::tls::{self, ClientTls};
use deadbolt_testkit::pg_session::{await_cut, open_session};
use deadbolt_testkit::postgres::Postgres;
use deadbolt_testkit::stats::{cpus, machine, ms, percentile};
use futures::StreamExt;
use rustls::ClientConfig;
use support::operator::{Operator, any_database_role, target};
use support::proxy_process::{ProxyProcess, write_private};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The exact command this figure comes from.
const COMMAND: &str = "cargo bench -p deadbolt-sidecar --bench postgres_cut";
/// Sessions opened at once while setting up.
const OPEN_CONCURRENCY: usize = 16;
/// The proxy's server id.
const SERVER_ID: &str = "bench-proxy";
/// The lock's message, as the operator stores it.
const LOCK_MESSAGE: &str = "Benchmark lock.";
/// How long everything may take to arrive after the lock.
const CUT_DEADLINE: Duration = Duration::from_secs(60);

/// A TLS client config presenting a fresh user certificate for `identity`.
fn client_config(operator: &Operator, identity: &CertIdentity) -> Arc<ClientConfig> {
    let issued = operator
        .ca
        .issue_user_cert(identity, Duration::from_secs(3600))
        .unwrap();
    ClientTls {
        roots: operator.ca.root_store().unwrap(),
        identity: Some(issued.certified_key().unwrap()),
    }
    .config(&[deadbolt_sidecar::postgres::ALPN_POSTGRESQL])
    .unwrap()
}

/// When the proxy recorded each cut (the `time` of its `session.terminated`
/// audit events, written once the client was told and the upstream closed),
/// relative to the lock's upsert; sorted. Wall clocks, same host.
async fn audited_cuts(log: &Path, upsert: jiff::Timestamp, sessions: usize) -> Vec<Duration> {
    let deadline = Instant::now() + support::PATIENCE;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let mut cuts: Vec<Duration> = text
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|event| event["event"] == "session.terminated")
            .filter_map(|event| event["time"].as_str()?.parse::<jiff::Timestamp>().ok())
            .map(|time| Duration::try_from(time.duration_since(upsert)).unwrap_or_default())
            .collect();
        if cuts.len() >= sessions {
            cuts.sort();
            return cuts;
        }
        assert!(
            Instant::now() < deadline,
            "the audit log holds {} of {sessions} session.terminated events",
            cuts.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// CPU time used so far (ns), by the machine and by the processes involved.
struct CpuSample {
    machine_busy: u64,
    machine_total: u64,
    bench: u64,
    proxy: u64,
    postgres: u64,
}

impl CpuSample {
    fn take(proxy: u32, postmaster: u32) -> Self {
        let (machine_busy, machine_total) = machine_cpu();
        Self {
            machine_busy,
            machine_total,
            bench: process_cpu("self", false).unwrap(),
            proxy: process_cpu(&proxy.to_string(), false).expect("the proxy is gone"),
            postgres: postgres_cpu(postmaster),
        }
    }

    fn since(&self, before: &Self) -> Self {
        Self {
            machine_busy: self.machine_busy - before.machine_busy,
            machine_total: self.machine_total - before.machine_total,
            bench: self.bench - before.bench,
            proxy: self.proxy - before.proxy,
            postgres: self.postgres.saturating_sub(before.postgres),
        }
    }
}

/// Nanoseconds per clock tick (`getconf CLK_TCK`, usually 100 a second).
fn tick_ns() -> u64 {
    static TICK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICK.get_or_init(|| {
        let per_second: u64 = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100);
        1_000_000_000 / per_second
    })
}

/// Busy and total CPU time of all CPUs, from `/proc/stat`.
fn machine_cpu() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields[3] + fields[4];
    ((total - idle) * tick_ns(), total * tick_ns())
}

/// CPU time of PostgreSQL: the postmaster, its live children, and (added to
/// the postmaster's children's time by the kernel once reaped) its exited
/// children. A backend's whole lifetime lands in that count when it is
/// reaped, so the live children are summed too, from their exact
/// `schedstat` (a backend's few milliseconds round to zero clock ticks):
/// the difference of two samples is then what the server used between them.
fn postgres_cpu(postmaster: u32) -> u64 {
    let children: u64 = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{name}/stat")).ok()?;
            let after_name = &stat[stat.rfind(')')? + 2..];
            let parent: u32 = after_name.split_whitespace().nth(1)?.parse().ok()?;
            if parent == postmaster {
                schedstat_ns(&name)
            } else {
                None
            }
        })
        .sum();
    let postmaster = postmaster.to_string();
    let reaped = process_cpu(&postmaster, true).expect("the postmaster is gone")
        - process_cpu(&postmaster, false).expect("the postmaster is gone");
    schedstat_ns(&postmaster).expect("the postmaster is gone") + reaped + children
}

/// Exact CPU time of a single-threaded process.
fn schedstat_ns(pid: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// User plus system CPU time of a process (`self` or a pid), all threads, and
/// with `children`, of its exited children it has reaped too. `None` once the
/// process is gone.
fn process_cpu(pid: &str, children: bool) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are plain.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here (0-based 11, 12).
    // cutime and cstime follow them.
    let last = if children { 14 } else { 12 };
    let ticks: u64 = fields
        .get(11..=last)?
        .iter()
        .map(|f| f.parse::<u64>().ok())
        .sum::<Option<u64>>()?;
    Some(ticks * tick_ns())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    tls::install_default_provider();
    let sessions: usize = std::env::var("DEADBOLT_BENCH_SESSIONS")
        .ok()
        .map(|n| n.parse().expect("DEADBOLT_BENCH_SESSIONS must be a number"))
        .unwrap_or(1000);
    let max_connections = (sessions + 100).to_string();

    let postgres = Postgres::start_with(&[
        ("max_connections", &max_connections),
        ("shared_buffers", "16MB"),
    ]);
    let pg_version = postgres.sql("SHOW server_version");
    let pg_max = postgres.sql("SHOW max_connections");
    let pg_buffers = postgres.sql("SHOW shared_buffers");
    let data_directory = postgres.sql("SHOW data_directory");
    let postmaster: u32 =
        std::fs::read_to_string(Path::new(&data_directory).join("postmaster.pid"))
            .ok()
            .and_then(|pid| pid.lines().next()?.trim().parse().ok())
            .expect("no postmaster.pid");
    let operator = Operator::start().await;
    // Access is denied by default: the role every bench user holds (and the
    // lock will target) lets them reach any database.
    operator.role(any_database_role("bench", "bench"));
    let dir = tempfile::Builder::new()
        .prefix("deadbolt-bench")
        .tempdir()
        .unwrap();
    let passwords = dir.path().join("upstream-passwords");
    write_private(&passwords, &Postgres::password_lines());
    let upstream = [
        "--upstream".to_string(),
        postgres.address(),
        "--upstream-password-file".into(),
        passwords.display().to_string(),
    ];
    let mut proxy = ProxyProcess::spawn(&operator, SERVER_ID, dir.path(), "postgres", &upstream);
    let pid = proxy.child.id();
    proxy.wait_ready().await;

    // Warm-up: one full session, then closed, so the baseline RSS includes
    // the code paths and buffers every session touches.
    let warmup = CertIdentity {
        user: "bench-warmup".into(),
        roles: vec!["bench".into()],
        ..Default::default()
    };
    let mut stream = open_session(proxy.listen, client_config(&operator, &warmup))
        .await
        .expect("the warm-up session");
    stream.write_all(&[b'X', 0, 0, 0, 4]).await.unwrap();
    stream.shutdown().await.unwrap();
    drop(stream);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = proxy.rss_kib();

    let configs: Vec<Arc<ClientConfig>> = (0..sessions)
        .map(|index| {
            let identity = CertIdentity {
                user: format!("bench-user-{index:04}"),
                roles: vec!["bench".into()],
                ..Default::default()
            };
            client_config(&operator, &identity)
        })
        .collect();
    let opening = Instant::now();
    let opened: Vec<anyhow::Result<TlsStream<TcpStream>>> = futures::stream::iter(
        configs
            .into_iter()
            .map(|config| open_session(proxy.listen, config)),
    )
    .buffer_unordered(OPEN_CONCURRENCY)
    .collect()
    .await;
    let open_time = opening.elapsed();
    let mut streams = Vec::with_capacity(sessions);
    let mut failures = Vec::new();
    for result in opened {
        match result {
            Ok(stream) => streams.push(stream),
            Err(error) => failures.push(format!("{error:#}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {sessions} sessions did not open (PostgreSQL max_connections={pg_max}); first: {}\nproxy log:\n{}",
        failures.len(),
        failures[0],
        std::fs::read_to_string(dir.path().join("proxy.log")).unwrap_or_default()
    );
    let backends = postgres.sql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = proxy.rss_kib();

    let watchers: Vec<_> = streams
        .into_iter()
        .map(|s| tokio::spawn(await_cut(s)))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    tick_ns();
    let cpu_before = CpuSample::take(pid, postmaster);
    let upsert_wall = jiff::Timestamp::now();
    let upsert = Instant::now();
    operator.lock("bench", target(TargetKind::Role, "bench"), LOCK_MESSAGE);

    let expected = format!(r#"FATAL:  lock targeting Role:"bench" is in force: {LOCK_MESSAGE}"#);
    let mut latencies = Vec::with_capacity(sessions);
    let mut wrong = Vec::new();
    for watcher in watchers {
        match tokio::time::timeout(CUT_DEADLINE, watcher).await {
            Ok(Ok(Ok((received, text)))) if text == expected => {
                match received.checked_duration_since(upsert) {
                    Some(latency) => latencies.push(latency),
                    None => wrong.push("cut before the lock was pushed".to_string()),
                }
            }
            Ok(Ok(Ok((_, text)))) => wrong.push(format!("wrong message: {text}")),
            Ok(Ok(Err(error))) => wrong.push(format!("{error:#}")),
            Ok(Err(error)) => wrong.push(error.to_string()),
            Err(_) => wrong.push("no ErrorResponse within the deadline".into()),
        }
    }
    let window = upsert.elapsed();
    let cpu_after = CpuSample::take(pid, postmaster);
    assert!(
        wrong.is_empty(),
        "{} of {sessions} sessions did not receive {expected:?}; first: {}",
        wrong.len(),
        wrong[0]
    );
    assert_eq!(latencies.len(), sessions);
    latencies.sort();
    let proxy_side = audited_cuts(&dir.path().join("audit.log"), upsert_wall, sessions).await;

    let per_session = (rss_after as f64 - rss_before as f64) / sessions as f64;
    println!();
    println!("Deadbolt PostgreSQL proxy: lock-to-client cut over {sessions} live sessions");
    println!("command:  {COMMAND}");
    println!("machine:  {}", machine());
    println!(
        "postgres: {pg_version} (max_connections={pg_max}, shared_buffers={pg_buffers}, fsync=off), {backends} backends for the bench sessions"
    );
    println!("proxy:    separate process (pid {pid}), release build:");
    println!("          {}", proxy.command_line);
    println!(
        "sessions: {sessions} TLS sessions with distinct user certificates (role \"bench\"), opened in {:.1} s ({OPEN_CONCURRENCY} at a time)",
        open_time.as_secs_f64()
    );
    let mut rows = vec![(
        "sessions that received the lock's ErrorResponse".to_string(),
        format!("{}/{sessions}", latencies.len()),
    )];
    for (name, value) in [
        ("min", latencies[0]),
        ("p50", percentile(&latencies, 50.0)),
        ("p99", percentile(&latencies, 99.0)),
        ("max", *latencies.last().unwrap()),
    ] {
        rows.push((
            format!("lock upsert -> client receives ErrorResponse, {name}"),
            ms(value),
        ));
    }
    for (name, value) in [
        ("p50", percentile(&proxy_side, 50.0)),
        ("max", *proxy_side.last().unwrap()),
    ] {
        rows.push((
            format!("lock upsert -> proxy audits session.terminated, {name}"),
            ms(value),
        ));
    }
    let used = cpu_after.since(&cpu_before);
    rows.push((
        format!(
            "cut window ({}): machine CPU busy, {} CPUs",
            ms(window),
            cpus()
        ),
        format!(
            "{:.0}%",
            used.machine_busy as f64 * 100.0 / used.machine_total.max(1) as f64
        ),
    ));
    let others = used
        .machine_busy
        .saturating_sub(used.proxy + used.bench + used.postgres);
    for (who, nanos) in [
        ("the proxy process", used.proxy),
        ("PostgreSQL (postmaster and backends)", used.postgres),
        ("the bench process (clients, operator)", used.bench),
        ("everything else on the machine", others),
    ] {
        rows.push((
            format!("cut window: CPU time of {who}"),
            ms(Duration::from_nanos(nanos)),
        ));
    }
    rows.push((
        "proxy RSS after 1 warm-up session (closed)".into(),
        format!("{rss_before} KiB"),
    ));
    rows.push((
        format!("proxy RSS with {sessions} idle sessions"),
        format!("{rss_after} KiB"),
    ));
    rows.push((
        "proxy memory per idle session".into(),
        format!("{per_session:.1} KiB"),
    ));
    println!();
    println!("| {:<62} | {:>12} |", "measure", "value");
    println!("|{}|{}|", "-".repeat(64), "-".repeat(14));
    for (measure, value) in rows {
        println!("| {measure:<62} | {value:>12} |");
    }
    println!();
    println!("all {sessions} sessions received {expected:?}");
    drop(proxy);
}
