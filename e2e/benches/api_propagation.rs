//! From a Lock created through the Kubernetes API to every live session
//! hearing about it, against a real API server: the operator (release build,
//! `--source kube`) sees the Lock through its watch and streams it to the
//! proxies, which cut their sessions.
//!
//! 1. 1,000 live PostgreSQL-protocol sessions through `deadbolt-sidecar
//!    postgres` (a real PostgreSQL behind it): per trial, one Lock on the role
//!    they all hold is created with an API `create` (what `kubectl apply` sends),
//!    and each session's time from the create call to its `ErrorResponse` is taken.
//! 2. The same for 1,000 open watches through `deadbolt-sidecar kube` in front
//!    of the same API server, to each watch's `ERROR` event.
//!
//! Each is repeated for `DEADBOLT_BENCH_TRIALS` trials (default 20); the figures
//! are the p50 and p99 over every session of every trial, and the spread of
//! the trials' own p99. The baseline, in the same trials: the same create seen
//! by a plain watch on Locks straight from the API server (what the operator's
//! own watch gets), so the ratio says what Deadbolt adds to the API server's
//! own delivery. The API server is `KUBECONFIG`'s.
//!
//! Run: `./scripts/bench-api-propagation.sh` (it builds the release binaries
//! and starts a private API server from `../shared/k8s` when `KUBECONFIG` is unset).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use deadbolt_e2e::pki::{Issued, Pki};
use deadbolt_e2e::postgres::Postgres;
use deadbolt_e2e::process::Sidecar;
use deadbolt_e2e::scenario::{DatabaseAccess, Scenario};
use deadbolt_e2e::{admin_kubeconfig, kubectl, success};
use deadbolt_runtime::tls::{CertifiedKey, ClientTls, root_store};
use deadbolt_testkit::{kube_client, pg_session, stats};
use futures::StreamExt;
use http::Request;
use http_body_util::Full;
use kube::api::{DeleteParams, PostParams, WatchEvent, WatchParams};
use stats::{machine, ms, percentile};

const COMMAND: &str = "./scripts/bench-api-propagation.sh";
const SESSIONS: usize = 1000;
const WATCHES_PER_CONNECTION: usize = 100;
const OPEN_CONCURRENCY: usize = 16;

fn lock(name: &str, target: &str) -> deadbolt_api::Lock {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "deadbolt.dev/v1",
        "kind": "Lock",
        "metadata": {"name": name},
        "spec": {"target": {target.split_once(": ").unwrap().0: target.split_once(": ").unwrap().1},
                 "message": "Benchmark lock."},
    }))
    .unwrap()
}

fn client_tls(pki: &Pki, user: &Issued, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    ClientTls {
        roots: root_store(&std::fs::read(pki.ca_crt()).unwrap()).unwrap(),
        identity: Some(CertifiedKey::from_files(&user.cert, &user.key).unwrap()),
    }
    .config(alpn)
    .unwrap()
}

#[derive(Default)]
struct Figures {
    all: Vec<Duration>,
    trial_p99: Vec<Duration>,
    /// Per trial: the create seen by a direct watch on Locks.
    baseline: Vec<Duration>,
}

impl Figures {
    fn print(&self, what: &str) {
        let mut all = self.all.clone();
        all.sort();
        let mut p99s = self.trial_p99.clone();
        p99s.sort();
        let mut baseline = self.baseline.clone();
        baseline.sort();
        let p50 = percentile(&all, 50.0);
        let base = percentile(&baseline, 50.0);
        println!(
            "{what}: {} trials x {SESSIONS}: p50 {}, p99 {}, max {}; per-trial p99 from {} to {} (median {})",
            self.trial_p99.len(),
            ms(p50),
            ms(percentile(&all, 99.0)),
            ms(*all.last().unwrap()),
            ms(p99s[0]),
            ms(*p99s.last().unwrap()),
            ms(percentile(&p99s, 50.0)),
        );
        println!(
            "  baseline, API create -> ADDED on a direct watch of Locks: p50 {}, max {}; \
             Deadbolt p50 / baseline p50 = {:.1}x ({} added)",
            ms(base),
            ms(*baseline.last().unwrap()),
            p50.as_secs_f64() / base.as_secs_f64().max(1e-9),
            ms(p50.saturating_sub(base)),
        );
    }
}

impl Figures {
    /// One trial: with every session waiting, creates `lock` through the API
    /// and takes each session's time from the call to its cut (and the
    /// baseline's), then deletes the lock.
    async fn measure<W>(
        &mut self,
        locks: &kube::Api<deadbolt_api::Lock>,
        lock: &deadbolt_api::Lock,
        waits: impl IntoIterator<Item = W>,
    ) where
        W: std::future::Future<Output = (Instant, String)>,
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let name = lock.metadata.name.clone().unwrap();
        let baseline = direct_watch(locks, &name).await;
        let created = Instant::now();
        locks.create(&PostParams::default(), lock).await.unwrap();
        let mut times = Vec::new();
        for wait in waits {
            let (received, text) = wait.await;
            assert!(text.contains("Benchmark lock."), "{text}");
            times.push(received.duration_since(created));
        }
        self.baseline
            .push(baseline.await.unwrap().duration_since(created));
        times.sort();
        self.trial_p99.push(percentile(&times, 99.0));
        self.all.extend(times);
        locks.delete(&name, &DeleteParams::default()).await.unwrap();
    }
}

/// Starts a plain watch on the Lock `name`, straight from the API server;
/// the task ends with the instant its ADDED event arrived.
async fn direct_watch(
    locks: &kube::Api<deadbolt_api::Lock>,
    name: &str,
) -> tokio::task::JoinHandle<Instant> {
    let params = WatchParams::default().fields(&format!("metadata.name={name}"));
    let mut events = locks.watch(&params, "0").await.unwrap().boxed();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if let Ok(WatchEvent::Added(_)) = event {
                return Instant::now();
            }
        }
        panic!("the direct watch ended before the lock was added");
    })
}

async fn postgres_trials(
    locks: &kube::Api<deadbolt_api::Lock>,
    proxy: &Sidecar,
    config: Arc<rustls::ClientConfig>,
    role: &str,
    trials: usize,
) -> Figures {
    let mut figures = Figures::default();
    for trial in 0..trials {
        let opened: Vec<_> = futures::stream::iter(
            (0..SESSIONS).map(|_| pg_session::open_session(proxy.listen, config.clone())),
        )
        .buffer_unordered(OPEN_CONCURRENCY)
        .collect()
        .await;
        let waits: Vec<_> = opened
            .into_iter()
            .map(|session| tokio::spawn(pg_session::await_cut(session.expect("a session"))))
            .collect();
        let waits = waits.into_iter().map(|wait| async move {
            let (received, message) = wait.await.unwrap().expect("a cut");
            (received, message)
        });
        let name = format!("bench-pg-{trial}");
        figures
            .measure(locks, &lock(&name, &format!("role: {role}")), waits)
            .await;
        // The proxy lets sessions in again once it has seen the deletion.
        let deadline = Instant::now() + Duration::from_secs(30);
        while pg_session::open_session(proxy.listen, config.clone())
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the lock was never lifted");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    figures
}

async fn watch_trials(
    locks: &kube::Api<deadbolt_api::Lock>,
    client: &kube_client::RawClient,
    user: &str,
    namespace: &str,
    trials: usize,
) -> Figures {
    let mut figures = Figures::default();
    let path = format!("/api/v1/namespaces/{namespace}/configmaps?watch=true");
    let request = || {
        Request::get(format!("https://localhost{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    for trial in 0..trials {
        let mut waits = Vec::new();
        for _ in 0..SESSIONS / WATCHES_PER_CONNECTION {
            let mut sender = client.http2().await;
            for _ in 0..WATCHES_PER_CONNECTION {
                waits.push(kube_client::watch_until_error(&mut sender, request()).await);
            }
        }
        let waits = waits.into_iter().map(|wait| async move {
            let (received, line) = wait.await.unwrap().expect("an ERROR event");
            (received, line)
        });
        let name = format!("bench-watch-{trial}");
        figures
            .measure(locks, &lock(&name, &format!("user: {user}")), waits)
            .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    figures
}

fn main() {
    assert!(
        deadbolt_e2e::cluster_available().is_ok(),
        "set KUBECONFIG to a cluster, or run {COMMAND}"
    );
    // 1,000 sessions or watches, each a socket here, two in the proxy and one
    // in PostgreSQL (the processes started below inherit the limit).
    let fds = rlimit::increase_nofile_limit(8192).expect("the open-files limit");
    assert!(
        fds >= 4096,
        "the open-files limit is {fds}; raise it (ulimit -Hn)"
    );
    let trials: usize = std::env::var("DEADBOLT_BENCH_TRIALS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20);
    let mut scenario = Scenario::new("bench");
    let postgres = Postgres::start_with(&[("max_connections", "1100")]);
    let operator = scenario.operator("bench-operator", &[]);
    let pki = scenario.pki();
    let DatabaseAccess {
        passwords,
        group,
        role,
    } = scenario.database_access(&pki);
    let pg_proxy = Sidecar::postgres(
        &pki,
        &operator.view_url(),
        "bench-pg",
        &postgres.address(),
        &passwords,
        scenario.logs(),
    );
    let kube_proxy = Sidecar::kube(
        &pki,
        &operator.view_url(),
        "bench-kube",
        &admin_kubeconfig(),
        scenario.logs(),
    );
    let watcher = scenario.name("watcher");
    scenario.bind("view", &watcher);
    success(kubectl(&[
        "create",
        "configmap",
        "settings",
        "-n",
        scenario.ns(),
    ]));
    let pg_user = pki.user("bench-pg-user", &[&group]);
    let watch_user = pki.user(&watcher, &[]);

    println!(
        "API propagation bench ({COMMAND}) on {}, {trials} trials",
        machine()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        deadbolt_runtime::tls::install_default_provider();
        let client = kube::Client::try_default().await.unwrap();
        let locks: kube::Api<deadbolt_api::Lock> = kube::Api::all(client);
        let pg = postgres_trials(
            &locks,
            &pg_proxy,
            client_tls(&pki, &pg_user, &[b"postgresql"]),
            &role,
            trials,
        )
        .await;
        pg.print("API create -> ErrorResponse at 1,000 PostgreSQL sessions");
        let raw = kube_client::RawClient::new(
            kube_proxy.listen,
            &std::fs::read(pki.ca_crt()).unwrap(),
            Some(CertifiedKey::from_files(&watch_user.cert, &watch_user.key).unwrap()),
        );
        let watches = watch_trials(&locks, &raw, &watcher, scenario.ns(), trials).await;
        watches.print("API create -> ERROR event at 1,000 watches through the kube proxy");
    });
}
