//! The PostgreSQL proxy with its locks and roles coming from a real API
//! server: a live `psql` is cut when a Lock is created with `kubectl apply`; a
//! Lock with a `ttl` expires on the server and access comes back; in strict
//! mode, an operator that stops answering makes the proxy cut its sessions
//! once `maxLockStaleness` has passed.

use std::time::{Duration, Instant};

use deadbolt_e2e::pki::{Issued, Pki};
use deadbolt_e2e::postgres::Postgres;
use deadbolt_e2e::process::Sidecar;
use deadbolt_e2e::psql::{LivePsql, psql_once, text};
use deadbolt_e2e::scenario::{DatabaseAccess, Scenario, lock_manifest};
use deadbolt_e2e::{PATIENCE, apply, kubectl, success};

fn conninfo(proxy: &Sidecar, pki: &Pki, user: &Issued) -> String {
    format!(
        "host=localhost port={} user=app dbname=app sslmode=verify-full sslrootcert={} sslcert={} sslkey={} connect_timeout=10",
        proxy.listen.port(),
        pki.ca_crt().display(),
        user.cert.display(),
        user.key.display()
    )
}

/// A PostgreSQL, an operator, its CA, a Postgres proxy in front, a role
/// letting `group` in as `app`.
struct Databases {
    scenario: Scenario,
    _postgres: Postgres,
    _operator: deadbolt_e2e::process::Operator,
    pki: Pki,
    proxy: Sidecar,
    group: String,
}

fn databases(stem: &str) -> Databases {
    let mut scenario = Scenario::new(stem);
    let postgres = Postgres::start();
    let operator = scenario.operator("operator-0", &[]);
    let pki = scenario.pki();
    let DatabaseAccess {
        passwords, group, ..
    } = scenario.database_access(&pki);
    let proxy = Sidecar::postgres(
        &pki,
        &operator.view_url(),
        &scenario.name("pg-proxy"),
        &postgres.address(),
        &passwords,
        scenario.logs(),
    );
    Databases {
        scenario,
        _postgres: postgres,
        _operator: operator,
        pki,
        proxy,
        group,
    }
}

fn until_allowed(conninfo: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let output = psql_once(conninfo);
        if output.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "access did not return: {}",
            text(&output)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "needs a real cluster named by KUBECONFIG"]
fn a_live_psql_is_cut_when_a_lock_is_applied() {
    let mut world = databases("psql");
    let alice = world.scenario.name("alice");
    let bob = world.scenario.name("bob");
    let alice_cert = world.pki.user(&alice, &[&world.group]);
    let bob_cert = world.pki.user(&bob, &[&world.group]);
    let alice_info = conninfo(&world.proxy, &world.pki, &alice_cert);
    until_allowed(&alice_info);
    let mut alice_psql = LivePsql::open(&alice_info);
    let mut bob_psql = LivePsql::open(&conninfo(&world.proxy, &world.pki, &bob_cert));

    let name = world.scenario.name("lock-alice");
    world.scenario.cleanup.add("locks.deadbolt.dev", &name);
    apply(&lock_manifest(
        &name,
        &format!("user: {alice}"),
        "Suspicious activity.",
        "",
    ));
    let message =
        format!(r#"FATAL:  lock targeting User:"{alice}" is in force: Suspicious activity."#);
    let server_id = world.scenario.name("pg-proxy");
    let seen = alice_psql.expect_cut(
        || {
            world
                .proxy
                .audit(world.scenario.logs(), &server_id)
                .contains("session.terminated")
        },
        "is in force",
    );
    assert!(seen.iter().any(|line| line.contains(&message)), "{seen:?}");
    bob_psql.query("select 'bob carries on'");
    bob_psql.expect("bob carries on");
    let refused = psql_once(&alice_info);
    assert!(!refused.status.success());
    assert!(text(&refused).contains(&message[8..]), "{}", text(&refused));
    success(kubectl(&["delete", "lock", &name]));
    until_allowed(&alice_info);
}

#[test]
#[ignore = "needs a real cluster named by KUBECONFIG"]
fn a_ttl_lock_expires_on_the_server_and_access_returns() {
    let mut world = databases("ttl");
    let carol = world.scenario.name("carol");
    let info = conninfo(
        &world.proxy,
        &world.pki,
        &world.pki.user(&carol, &[&world.group]),
    );
    until_allowed(&info);
    let name = world.scenario.name("lock-carol");
    world.scenario.cleanup.add("locks.deadbolt.dev", &name);
    apply(&lock_manifest(
        &name,
        &format!("user: {carol}"),
        "A short break.",
        "  ttl: 5s\n",
    ));
    let deadline = Instant::now() + PATIENCE;
    loop {
        let output = psql_once(&info);
        if text(&output).contains("A short break.") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lock never applied: {}",
            text(&output)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The operator reports the expiry on the Lock, and the proxy lets carol in.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let in_force = success(kubectl(&[
            "get",
            "lock",
            &name,
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="InForce")].status}"#,
        ]));
        if in_force == "False" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lock's status never showed the expiry"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    until_allowed(&info);
}

#[test]
#[ignore = "needs a real cluster named by KUBECONFIG"]
fn strict_mode_with_the_operator_stopped_cuts_sessions_after_max_lock_staleness() {
    let mut world = databases("strict");
    world.scenario.apply_cluster(
        "clusterauthpreferences.deadbolt.dev",
        "cluster-auth-preference",
        "apiVersion: deadbolt.dev/v1\nkind: ClusterAuthPreference\nmetadata:\n  name: cluster-auth-preference\nspec:\n  lockingMode: strict\n  maxLockStaleness: 3s\n",
    );
    let dave = world.scenario.name("dave");
    let info = conninfo(
        &world.proxy,
        &world.pki,
        &world.pki.user(&dave, &[&world.group]),
    );
    until_allowed(&info);
    // The operator has seen the setting once it reports on it; the proxy a moment later.
    success(kubectl(&[
        "wait",
        "--for=condition=Ready",
        "clusterauthpreference/cluster-auth-preference",
        "--timeout=60s",
    ]));
    std::thread::sleep(Duration::from_secs(1));
    let mut live = LivePsql::open(&info);
    let stopped = Instant::now();
    world._operator.process.kill();
    let server_id = world.scenario.name("pg-proxy");
    let seen = live.expect_cut(
        || {
            world
                .proxy
                .audit(world.scenario.logs(), &server_id)
                .contains("session.terminated")
        },
        "preventive lock-out",
    );
    let waited = stopped.elapsed();
    assert!(
        seen.iter().any(|line| line
            .contains("FATAL:  preventive lock-out due to local lock view becoming unreliable")),
        "{seen:?}"
    );
    eprintln!(
        "strict session cut within {waited:?} of the operator stopping (maxLockStaleness 3s)"
    );
    let refused = psql_once(&info);
    assert!(
        text(&refused).contains("preventive lock-out"),
        "{}",
        text(&refused)
    );
}
