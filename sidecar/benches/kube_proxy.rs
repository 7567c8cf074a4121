//! What the kube proxy costs and how fast it cuts, in one run:
//!
//! 1. Requests per second and latency of `GET` (one ConfigMap) and `LIST`
//!    (the namespace's ConfigMaps) over HTTP/2, straight to the fake API
//!    server (with the proxy's token and an `Impersonate-User`, as the proxy
//!    sends them) and through the proxy (Deadbolt client certificate), with
//!    the ratio proxy/direct.
//! 2. The proxy's memory with N open watches (default 10,000;
//!    `DEADBOLT_BENCH_WATCHES`), from its RSS before and after.
//! 3. The time from a lock upsert (on a role every watcher holds) to the
//!    moment each watch client receives its `ERROR` event; every watch must
//!    receive the lock message, or the run fails.
//!
//! The proxy is the release `deadbolt-sidecar kube` binary in its own process;
//! the fake API server, the operator and the clients share the bench process,
//! so on a small machine they compete with the proxy for the same cores on
//! both paths alike.
//!
//! Run: `cargo bench -p deadbolt-sidecar --bench kube_proxy`
//! (`DEADBOLT_BENCH_SECONDS` per throughput run, default 5).

#[path = "../tests/integration/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use deadbolt_api::TargetKind;
use deadbolt_api::credential::CertIdentity;
use deadbolt_runtime::tls::{self, ClientTls};
use deadbolt_testkit::stats::{machine, ms, percentile};
use futures::StreamExt;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use support::kube_upstream::FakeApiServer;
use support::operator::{Operator, target};
use support::proxy_process::ProxyProcess;

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const COMMAND: &str = "cargo bench -p deadbolt-sidecar --bench kube_proxy";
const SERVER_ID: &str = "bench-kube";
const LOCK_MESSAGE: &str = "Benchmark lock.";
/// Client connections for the throughput runs, and requests in flight on each.
const LOAD_CONNECTIONS: usize = 4;
const LOAD_STREAMS: usize = 8;
/// Watches per client connection (under the servers' 200-stream limit).
const WATCHES_PER_CONNECTION: usize = 100;
const CUT_DEADLINE: Duration = Duration::from_secs(120);
const GET: &str = "/api/v1/namespaces/shop/configmaps/settings";
const LIST: &str = "/api/v1/namespaces/shop/configmaps";

/// Where a client sends requests, and what it adds to each.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    tls: Arc<ClientConfig>,
    headers: Vec<(String, String)>,
}

impl Target {
    async fn connect(&self) -> http2::SendRequest<Empty<Bytes>> {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let tls = TlsConnector::from(self.tls.clone())
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(connection);
        sender
    }

    fn request(&self, path: &str) -> Request<Empty<Bytes>> {
        let mut request = Request::get(format!("https://localhost{path}"));
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request.body(Empty::new()).unwrap()
    }
}

/// Requests `path` for `duration` with [`LOAD_CONNECTIONS`] × [`LOAD_STREAMS`]
/// in flight; returns the sorted latencies.
async fn load(target: &Target, path: &str, duration: Duration) -> Vec<Duration> {
    let mut tasks = Vec::new();
    let deadline = Instant::now() + duration;
    for _ in 0..LOAD_CONNECTIONS {
        let sender = target.connect().await;
        for _ in 0..LOAD_STREAMS {
            let mut sender = sender.clone();
            let target = target.clone();
            let path = path.to_string();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let started = Instant::now();
                    sender.ready().await.unwrap();
                    let response = sender.send_request(target.request(&path)).await.unwrap();
                    assert_eq!(response.status(), StatusCode::OK);
                    response.into_body().collect().await.unwrap();
                    latencies.push(started.elapsed());
                }
                latencies
            }));
        }
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    all
}

/// Opens a watch and returns a task that resolves when its `ERROR` event
/// arrives: the instant and the event line.
async fn open_watch(
    sender: &mut http2::SendRequest<Empty<Bytes>>,
    target: &Target,
) -> tokio::task::JoinHandle<Result<(Instant, String), String>> {
    deadbolt_testkit::kube_client::watch_until_error(
        sender,
        target.request(&format!("{LIST}?watch=true")),
    )
    .await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    tls::install_default_provider();
    let watches: usize = std::env::var("DEADBOLT_BENCH_WATCHES")
        .ok()
        .map(|n| n.parse().expect("DEADBOLT_BENCH_WATCHES must be a number"))
        .unwrap_or(10_000);
    let seconds: u64 = std::env::var("DEADBOLT_BENCH_SECONDS")
        .ok()
        .map(|n| n.parse().expect("DEADBOLT_BENCH_SECONDS must be a number"))
        .unwrap_or(5);

    // Watches stay idle after their first event: an hour between events.
    let upstream = FakeApiServer::start_with_interval(Duration::from_secs(3600)).await;
    let operator = Operator::start().await;
    let dir = tempfile::Builder::new()
        .prefix("deadbolt-kube-bench")
        .tempdir()
        .unwrap();
    let upstream_args = [
        "--upstream-kubeconfig".to_string(),
        upstream.kubeconfig(dir.path()).display().to_string(),
    ];
    let mut proxy = ProxyProcess::spawn(&operator, SERVER_ID, dir.path(), "kube", &upstream_args);
    proxy.wait_ready().await;

    let cluster_tls = ClientTls {
        roots: upstream.ca.root_store().unwrap(),
        identity: None,
    }
    .config(&[b"h2"])
    .unwrap();
    let direct = Target {
        addr: upstream.addr,
        tls: cluster_tls,
        headers: vec![
            ("authorization".into(), format!("Bearer {}", upstream.token)),
            ("impersonate-user".into(), "bench".into()),
        ],
    };
    let user = CertIdentity {
        user: "bench".into(),
        roles: vec!["bench".into()],
        ..Default::default()
    };
    let issued = operator
        .ca
        .issue_user_cert(&user, Duration::from_secs(3600))
        .unwrap();
    let through_proxy = Target {
        addr: proxy.listen,
        tls: ClientTls {
            roots: operator.ca.root_store().unwrap(),
            identity: Some(issued.certified_key().unwrap()),
        }
        .config(&[b"h2"])
        .unwrap(),
        headers: Vec::new(),
    };

    println!("kube proxy bench ({COMMAND}) on {}", machine());
    println!(
        "HTTP/2, {LOAD_CONNECTIONS} connections x {LOAD_STREAMS} requests in flight, {seconds} s per run"
    );
    println!(
        "{:>6} {:>8} {:>12} {:>10} {:>10} {:>10}",
        "", "path", "requests/s", "p50", "p99", "ratio"
    );
    let duration = Duration::from_secs(seconds);
    // Warm both paths (connections, TLS sessions, the proxy's upstream pool).
    load(&direct, GET, Duration::from_millis(500)).await;
    load(&through_proxy, GET, Duration::from_millis(500)).await;
    for (name, path) in [("GET", GET), ("LIST", LIST)] {
        let straight = load(&direct, path, duration).await;
        let proxied = load(&through_proxy, path, duration).await;
        let rate = |latencies: &[Duration]| latencies.len() as f64 / duration.as_secs_f64();
        for (label, latencies) in [("direct", &straight), ("proxy", &proxied)] {
            let ratio = if label == "proxy" {
                format!("{:.1}%", 100.0 * rate(&proxied) / rate(&straight))
            } else {
                String::new()
            };
            println!(
                "{name:>6} {label:>8} {:>12.0} {:>10} {:>10} {ratio:>10}",
                rate(latencies),
                ms(percentile(latencies, 50.0)),
                ms(percentile(latencies, 99.0)),
            );
        }
    }

    // Watches.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = proxy.rss_kib();
    let opening = Instant::now();
    let connections = watches.div_ceil(WATCHES_PER_CONNECTION);
    let opened: Vec<Vec<_>> = futures::stream::iter((0..connections).map(|index| {
        let target = through_proxy.clone();
        let count = WATCHES_PER_CONNECTION.min(watches - index * WATCHES_PER_CONNECTION);
        async move {
            let mut sender = target.connect().await;
            let mut waiting = Vec::with_capacity(count);
            for _ in 0..count {
                waiting.push(open_watch(&mut sender, &target).await);
            }
            (sender, waiting)
        }
    }))
    .buffer_unordered(8)
    .map(|(sender, waiting)| {
        // Keep each connection's sender alive with its watches.
        std::mem::forget(sender);
        waiting
    })
    .collect()
    .await;
    let waiting: Vec<_> = opened.into_iter().flatten().collect();
    let open_time = opening.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = proxy.rss_kib();

    let cpu_before = proxy.cpu_time();
    let upsert = Instant::now();
    operator.lock("bench", target(TargetKind::Role, "bench"), LOCK_MESSAGE);
    let expected = format!(r#"lock targeting Role:\"bench\" is in force: {LOCK_MESSAGE}"#);
    let mut cut_after = Vec::with_capacity(waiting.len());
    let mut failures = Vec::new();
    for task in waiting {
        match tokio::time::timeout(CUT_DEADLINE, task).await {
            Ok(Ok(Ok((at, line)))) if line.contains(&expected) => {
                cut_after.push(at.duration_since(upsert))
            }
            Ok(Ok(Ok((_, line)))) => failures.push(format!("wrong message: {line}")),
            Ok(Ok(Err(error))) => failures.push(error),
            Ok(Err(error)) => failures.push(error.to_string()),
            Err(_) => failures.push("no ERROR event within the deadline".into()),
        }
    }
    // What the cut still does after the last event (audit lines, upstream
    // resets) counts too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cut_cpu = proxy.cpu_time().saturating_sub(cpu_before);
    assert!(
        failures.is_empty(),
        "{} of {watches} watches were not cut with the message; first: {}",
        failures.len(),
        failures[0]
    );
    cut_after.sort();
    let grown = rss_after.saturating_sub(rss_before);
    println!(
        "{watches} watches opened in {:.1} s; proxy RSS {} MiB -> {} MiB: {:.1} KiB per watch",
        open_time.as_secs_f64(),
        rss_before / 1024,
        rss_after / 1024,
        grown as f64 / watches as f64
    );
    println!(
        "lock upsert -> ERROR event at the client: p50 {}, p99 {}, all {watches} cut after {}",
        ms(percentile(&cut_after, 50.0)),
        ms(percentile(&cut_after, 99.0)),
        ms(*cut_after.last().unwrap())
    );
    println!(
        "proxy CPU for the cut (upsert to 0.5 s after the last ERROR event): {} ({:.1} µs per watch)",
        ms(cut_cpu),
        cut_cpu.as_secs_f64() * 1e6 / watches as f64
    );
}
