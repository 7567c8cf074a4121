//! Two operator replicas against a real API server: proxies stream from both,
//! `status.enforcedBy` counts every proxy over both replicas, and when the
//! leader dies the other takes over, no lock is lost, and best-effort sessions
//! carry on.

use std::process::Command;
use std::time::{Duration, Instant};

use deadbolt_e2e::postgres::Postgres;
use deadbolt_e2e::process::Sidecar;
use deadbolt_e2e::scenario::{DatabaseAccess, Scenario, lock_manifest};
use deadbolt_e2e::{PATIENCE, apply, kubectl, success};

fn enforced_by(lock: &str) -> String {
    success(kubectl(&[
        "get",
        "lock",
        lock,
        "-o",
        "jsonpath={.status.enforcedBy}",
    ]))
}

fn wait_enforced_by(lock: &str, wanted: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = enforced_by(lock);
        if now == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Lock {lock}: enforcedBy stayed {now:?}, never {wanted:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn psql(conninfo: &str, sql: &str) -> std::process::Output {
    Command::new("psql")
        .arg(conninfo)
        .args(["-XAtc", sql])
        .output()
        .unwrap()
}

#[test]
#[ignore = "needs a real cluster named by KUBECONFIG"]
fn two_replicas_count_every_proxy_and_lose_no_lock_when_the_leader_dies() {
    let mut scenario = Scenario::new("ha");
    let postgres = Postgres::start();
    let mut first = scenario.operator("replica-a", &[]);
    let pki = scenario.pki();
    let mut second = scenario.operator("replica-b", &[]);
    let deadline = Instant::now() + PATIENCE;
    while !(first.is_leader() || second.is_leader()) {
        assert!(Instant::now() < deadline, "no replica became the leader");
        std::thread::sleep(Duration::from_millis(200));
    }
    let DatabaseAccess {
        passwords, group, ..
    } = scenario.database_access(&pki);
    // Two proxies stream from each replica.
    let mut proxies = Vec::new();
    for (index, operator) in [&first, &first, &second, &second].into_iter().enumerate() {
        proxies.push(Sidecar::postgres(
            &pki,
            &operator.view_url(),
            &scenario.name(&format!("pg-{index}")),
            &postgres.address(),
            &passwords,
            scenario.logs(),
        ));
    }

    let before = scenario.name("lock-before");
    let locked = scenario.name("mallory");
    scenario.cleanup.add("locks.deadbolt.dev", &before);
    apply(&lock_manifest(
        &before,
        &format!("user: {locked}"),
        "Before the failover.",
        "",
    ));
    wait_enforced_by(&before, "4/4");

    // A best-effort session through a proxy of the replica that survives.
    let (leader, follower, survivors) = if first.is_leader() {
        (&mut first, &mut second, &proxies[2..])
    } else {
        (&mut second, &mut first, &proxies[..2])
    };
    let alice = pki.user(&scenario.name("alice"), &[&group]);
    let conninfo = |proxy: &Sidecar, user: &deadbolt_e2e::pki::Issued| {
        format!(
            "host=localhost port={} user=app dbname=app sslmode=verify-full sslrootcert={} sslcert={} sslkey={}",
            proxy.listen.port(),
            pki.ca_crt().display(),
            user.cert.display(),
            user.key.display()
        )
    };
    let live = Command::new("psql")
        .arg(conninfo(&survivors[0], &alice))
        .args([
            "-XAt",
            "-c",
            "select pg_sleep(40)",
            "-c",
            "select 'survived'",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));

    leader.process.kill();
    let deadline = Instant::now() + PATIENCE;
    while !follower.is_leader() {
        assert!(Instant::now() < deadline, "the follower never took over");
        std::thread::sleep(Duration::from_millis(250));
    }

    // No lock is lost: the one from before still refuses, everywhere.
    let mallory = pki.user(&locked, &[&group]);
    for proxy in &proxies {
        let refused = psql(&conninfo(proxy, &mallory), "select 1");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("Before the failover."),
            "{}",
            String::from_utf8_lossy(&refused.stderr)
        );
    }
    // A new lock is counted by the new leader over the proxies still connected.
    let after = scenario.name("lock-after");
    scenario.cleanup.add("locks.deadbolt.dev", &after);
    apply(&lock_manifest(
        &after,
        &format!("user: {locked}-2"),
        "After the failover.",
        "",
    ));
    wait_enforced_by(&after, "2/2");
    wait_enforced_by(&before, "2/2");

    // `pg_sleep(40)` ends by itself; the session must have outlived the failover.
    let finished = live.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&finished.stdout).contains("survived"),
        "the best-effort session did not survive the failover: {}{}",
        String::from_utf8_lossy(&finished.stdout),
        String::from_utf8_lossy(&finished.stderr)
    );
}
