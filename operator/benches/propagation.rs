//! How fast one lock reaches 1,000 subscribed proxies, and what 100,000 locks
//! cost the operator.
//!
//! Run with `cargo bench -p deadbolt-operator --bench propagation`. It prints:
//!
//! - **Memory**: the RSS growth (`VmRSS` in `/proc/self/status`) from loading
//!   100,000 locks into a [`ViewStore`], against the baseline of holding the
//!   same `LockEntry` values in a `Vec`; the time to build and encode the
//!   snapshot a reconnecting proxy downloads, its size, and the time a proxy's
//!   `ViewReplica` (the proxies' view) takes to decode and apply it. Measured first, before any
//!   thread or connection exists, so the heap is fresh.
//! - **Fan-out**: the real lock-view server over TLS on loopback (the test
//!   harness in `tests/integration/support`), 1,000 streams, each its own HTTP/2
//!   connection with its own proxy certificate (CN = server id), each applying
//!   events to a `deadbolt_api::replica::ViewReplica`, the proxies' own view, and acking them as a
//!   proxy does. After every stream has its snapshot, one lock upsert; for each
//!   stream, the time from the upsert call to that stream having applied the
//!   upsert line (p50, p99, max), and the time until the operator has recorded
//!   all 1,000 acks. A few rounds, one upsert each.
//!
//! Client and server share one process and one Tokio runtime (as many worker
//! threads as cores), so the figures include the proxies' own work on the same
//! cores: an upper bound for the operator alone.

#[path = "../tests/integration/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use deadbolt_api::LockEntry;
use deadbolt_api::protocol::{Revision, ViewEvent, ViewObject, decode_line, encode_line};
use deadbolt_api::replica::ViewReplica;
use deadbolt_api::resources::LockTargetSpec;
use deadbolt_operator::subscribers::Subscribers;
use deadbolt_operator::view::ViewStore;
use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::mpsc;

/// Subscribed streams, each its own TLS connection.
const STREAMS: usize = 1_000;
/// Locks loaded for the memory figures.
const LOCKS: usize = 100_000;
/// Locks in the fan-out store before the streams subscribe.
const FANOUT_LOCKS: usize = 100;
/// Lock upserts timed in the fan-out, one at a time.
const ROUNDS: usize = 5;
/// TLS handshakes in flight at once while subscribing.
const CONNECT_CONCURRENCY: usize = 32;
/// How often the ack watcher looks at the subscriber registry.
const ACK_POLL: Duration = Duration::from_micros(100);
/// Heartbeats keep the idle streams (and the harness's read timeout) alive.
const HEARTBEAT: Duration = Duration::from_secs(1);

fn main() {
    let nproc = std::thread::available_parallelism().map_or(1, usize::from);
    println!("command: cargo bench -p deadbolt-operator --bench propagation");
    println!("nproc:   {nproc}");
    let fds = raise_fd_limit();
    println!("fds:     soft limit {fds} (needs about {})", needed_fds());
    let load_before = load_average();
    println!("load:    {load_before} (1, 5, 15 min, from /proc/loadavg)");
    println!();

    let memory = memory();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let fanout = runtime.block_on(fanout());
    let load_after = load_average();

    println!();
    println!("| figure | value |");
    println!("|---|---|");
    println!("| nproc | {nproc} |");
    println!("| load average before / after | {load_before} / {load_after} |");
    memory.print();
    fanout.print();
}

/// The 1, 5 and 15 minute load averages: other work on the machine.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// Two sockets per stream (client and server end) plus slack.
fn needed_fds() -> u64 {
    2 * STREAMS as u64 + 256
}

/// Raises the soft open-files limit towards the hard one if 1,000 connections
/// need it; returns the soft limit in force.
fn raise_fd_limit() -> u64 {
    let needed = needed_fds();
    match rlimit::increase_nofile_limit(needed) {
        Ok(limit) if limit >= needed => limit,
        Ok(limit) => panic!(
            "the open-files limit is {limit}, below the {needed} this bench needs; \
             raise the hard limit (ulimit -Hn)"
        ),
        Err(error) => panic!("could not raise the open-files limit: {error}"),
    }
}

// ---------------------------------------------------------------------------
// Memory and snapshot size
// ---------------------------------------------------------------------------

struct Memory {
    vec_bytes: u64,
    store_bytes: u64,
    load: Duration,
    snapshot_build: Duration,
    snapshot_encode: Duration,
    snapshot_bytes: usize,
    snapshot_decode: Duration,
    snapshot_apply: Duration,
}

impl Memory {
    fn print(&self) {
        let per_lock = |bytes: u64| bytes as f64 / LOCKS as f64;
        println!(
            "| size_of::<LockEntry>() (inline, without its strings) | {} B |",
            std::mem::size_of::<LockEntry>()
        );
        println!(
            "| RSS of {LOCKS} LockEntry in a Vec (baseline) | {:.1} MiB ({:.0} B/lock) |",
            mib(self.vec_bytes),
            per_lock(self.vec_bytes)
        );
        println!(
            "| RSS of {LOCKS} locks in a ViewStore | {:.1} MiB ({:.0} B/lock) |",
            mib(self.store_bytes),
            per_lock(self.store_bytes)
        );
        println!(
            "| ViewStore / Vec | {:.2}x |",
            self.store_bytes as f64 / self.vec_bytes.max(1) as f64
        );
        println!("| load {LOCKS} locks (upserts) | {} |", ms(self.load));
        println!(
            "| build snapshot of {LOCKS} locks | {} |",
            ms(self.snapshot_build)
        );
        println!("| encode snapshot line | {} |", ms(self.snapshot_encode));
        println!(
            "| snapshot line size | {} B ({:.1} MiB, {:.0} B/lock) |",
            self.snapshot_bytes,
            mib(self.snapshot_bytes as u64),
            self.snapshot_bytes as f64 / LOCKS as f64
        );
        println!(
            "| proxy: decode snapshot line | {} |",
            ms(self.snapshot_decode)
        );
        println!(
            "| proxy: apply snapshot (ViewReplica::apply) | {} |",
            ms(self.snapshot_apply)
        );
    }
}

fn memory() -> Memory {
    println!("memory: {LOCKS} locks");
    let before_vec = rss();
    let mut locks = Vec::with_capacity(LOCKS);
    locks.extend((0..LOCKS).map(realistic_lock));
    let vec_bytes = rss().saturating_sub(before_vec);

    let before_store = rss();
    let store = ViewStore::default();
    let started = Instant::now();
    for lock in &locks {
        store.upsert(ViewObject::Lock(lock.clone()));
    }
    let load = started.elapsed();
    let store_bytes = rss().saturating_sub(before_store);
    assert_eq!(store.revision(), LOCKS as Revision);

    let started = Instant::now();
    let snapshot = store.snapshot();
    let snapshot_build = started.elapsed();
    assert_eq!(snapshot.locks.len(), LOCKS);
    let started = Instant::now();
    let line = encode_line(&ViewEvent::Snapshot(snapshot));
    let snapshot_encode = started.elapsed();

    let mut proxy = ViewReplica::default();
    let started = Instant::now();
    let event: ViewEvent = decode_line(&line).expect("the snapshot decodes");
    let snapshot_decode = started.elapsed();
    let started = Instant::now();
    proxy.apply(event).expect("the snapshot applies");
    let snapshot_apply = started.elapsed();

    let memory = Memory {
        vec_bytes,
        store_bytes,
        load,
        snapshot_build,
        snapshot_encode,
        snapshot_bytes: line.len(),
        snapshot_decode,
        snapshot_apply,
    };
    drop((locks, store, line, proxy));
    memory
}

/// Lock `n` of a realistic mix: users, roles and logins with distinct values,
/// an administrator's message each, an expiry on every other one.
fn realistic_lock(n: usize) -> LockEntry {
    let created = Timestamp::now() - SignedDuration::from_secs(n as i64);
    let mut target = LockTargetSpec::default();
    match n % 3 {
        0 => target.user = Some(format!("user-{n}@example.com")),
        1 => target.role = Some(format!("team-{n}-oncall")),
        _ => target.login = Some(format!("svc_{n}")),
    }
    LockEntry {
        name: format!("lock-{n:06}"),
        target,
        message: Some(format!(
            "Locked for incident INC-{n}: suspicious activity, contact security."
        )),
        created,
        expires_at: n
            .is_multiple_of(2)
            .then(|| created + SignedDuration::from_hours(12)),
    }
}

/// This process's resident set size, from `/proc/self/status`.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line in /proc/self/status");
    kib * 1024
}

// ---------------------------------------------------------------------------
// Fan-out latency
// ---------------------------------------------------------------------------

struct Round {
    applied: Vec<Duration>,
    all_acked: Duration,
}

struct Fanout {
    connect: Duration,
    rounds: Vec<Round>,
    propagation_count: u64,
    propagation_mean: Duration,
}

impl Fanout {
    fn print(&self) {
        println!(
            "| subscribe {STREAMS} streams (cert + TLS + HTTP/2 + snapshot) | {} |",
            ms(self.connect)
        );
        for (index, round) in self.rounds.iter().enumerate() {
            let n = index + 1;
            println!(
                "| round {n}: upsert -> applied, p50 / p99 / max | {} / {} / {} |",
                ms(percentile(&round.applied, 50)),
                ms(percentile(&round.applied, 99)),
                ms(percentile(&round.applied, 100)),
            );
            println!(
                "| round {n}: upsert -> operator has all {STREAMS} acks | {} |",
                ms(round.all_acked)
            );
        }
        println!(
            "| deadbolt_propagation_seconds: count / mean | {} / {} |",
            self.propagation_count,
            ms(self.propagation_mean)
        );
    }
}

/// What a proxy task reports: which stream applied which revision, and when.
struct AppliedAt {
    revision: Revision,
    at: Instant,
}

async fn fanout() -> Fanout {
    println!("fan-out: {STREAMS} streams, {ROUNDS} rounds of one upsert");
    let store = ViewStore::default();
    for n in 0..FANOUT_LOCKS {
        store.upsert(ViewObject::Lock(realistic_lock(n)));
    }
    let server = support::Server::start(store.clone(), HEARTBEAT).await;

    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    let (applied_tx, mut applied_rx) = mpsc::unbounded_channel::<AppliedAt>();
    let started = Instant::now();
    let mut subscriptions = futures::stream::iter(0..STREAMS)
        .map(|n| {
            let server = &server;
            async move {
                let server_id = format!("proxy-{n:04}");
                let subscription = server.subscribe(&server_id).await;
                (server_id, subscription)
            }
        })
        .buffer_unordered(CONNECT_CONCURRENCY);
    let mut proxies = Vec::with_capacity(STREAMS);
    while let Some((server_id, subscription)) = subscriptions.next().await {
        proxies.push(tokio::spawn(proxy(
            server_id,
            subscription,
            ready_tx.clone(),
            applied_tx.clone(),
        )));
    }
    drop(subscriptions);
    for _ in 0..STREAMS {
        ready_rx
            .recv()
            .await
            .expect("every proxy applies its snapshot");
    }
    let connect = started.elapsed();
    println!("  {STREAMS} streams subscribed in {}", ms(connect));
    support::eventually("every snapshot is acked", || {
        server.subscribers.enforced_by(store.revision()).applied == STREAMS
    })
    .await;

    let mut rounds = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        // Let heartbeats and acks of the previous round settle.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let revision = store.revision() + 1;
        let watcher = watch_acks(server.subscribers.clone(), revision);
        let lock = realistic_lock(LOCKS + round);
        let upserted = Instant::now();
        assert_eq!(store.upsert(ViewObject::Lock(lock)), Some(revision));
        let mut applied = Vec::with_capacity(STREAMS);
        while applied.len() < STREAMS {
            let report = tokio::time::timeout(support::PATIENCE, applied_rx.recv())
                .await
                .expect("every proxy applies the upsert in time")
                .expect("the proxies are running");
            if report.revision == revision {
                applied.push(report.at.duration_since(upserted));
            }
        }
        let all_acked = tokio::task::spawn_blocking(move || watcher.join())
            .await
            .expect("the ack watcher ran")
            .expect("the ack watcher did not panic")
            .duration_since(upserted);
        let round = Round { applied, all_acked };
        println!(
            "  round {}: applied p50 {} p99 {} max {}; all acked {}",
            rounds.len() + 1,
            ms(percentile(&round.applied, 50)),
            ms(percentile(&round.applied, 99)),
            ms(percentile(&round.applied, 100)),
            ms(round.all_acked)
        );
        rounds.push(round);
    }

    let (propagation_count, propagation_mean) = propagation_histogram(&server);
    server.stop().await;
    for proxy in proxies {
        proxy.abort();
    }
    Fanout {
        connect,
        rounds,
        propagation_count,
        propagation_mean,
    }
}

/// One proxy: applies every event to its own `ViewReplica`, reports snapshots
/// and changes, and acks them, until the stream ends.
async fn proxy(
    server_id: String,
    mut subscription: support::Subscription,
    ready: mpsc::UnboundedSender<()>,
    applied: mpsc::UnboundedSender<AppliedAt>,
) {
    let mut state = ViewReplica::default();
    while let Ok(event) = subscription.next_event().await {
        let kind = match &event {
            ViewEvent::Snapshot(_) => Some(true),
            ViewEvent::Heartbeat { .. } => None,
            _ => Some(false),
        };
        let revision = event.revision();
        state.apply(event).expect("events arrive in order");
        let at = Instant::now();
        match kind {
            None => continue,
            Some(true) => {
                let _ = ready.send(());
            }
            Some(false) => {
                let _ = applied.send(AppliedAt { revision, at });
            }
        }
        subscription.ack(&server_id, revision).await;
    }
}

/// A thread that polls the registry until every stream acked `revision`, and
/// returns when it saw that (to within [`ACK_POLL`]).
fn watch_acks(subscribers: Subscribers, revision: Revision) -> std::thread::JoinHandle<Instant> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + support::PATIENCE;
        loop {
            if subscribers.enforced_by(revision).applied >= STREAMS {
                return Instant::now();
            }
            assert!(Instant::now() < deadline, "not every stream acked in time");
            std::thread::sleep(ACK_POLL);
        }
    })
}

/// The count and mean of the operator's `deadbolt_propagation_seconds`.
fn propagation_histogram(server: &support::Server) -> (u64, Duration) {
    let text = server.metrics.render(&server.store, &server.subscribers);
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the metrics:\n{text}"))
    };
    let count = value("deadbolt_propagation_seconds_count");
    let sum = value("deadbolt_propagation_seconds_sum");
    let mean = if count > 0.0 { sum / count } else { 0.0 };
    (count as u64, Duration::from_secs_f64(mean))
}

// ---------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------

/// The nearest-rank percentile of `samples` (100 is the maximum).
fn percentile(samples: &[Duration], percent: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
