//! What a caller's AccessRoles let it reach through the database proxies,
//! against a real PostgreSQL with the real `psql` and a real MariaDB with the
//! real `mysql`: deny by default, the database user, the database and the
//! proxy's labels must each be allowed, deny wins, traits fill templates, and
//! startup settings cannot change the role behind the proxy's back.

use crate::support;

use std::process::Output;

use deadbolt_api::access::DATABASE_ACCESS_DENIED;
use deadbolt_api::credential::CertIdentity;
use deadbolt_api::protocol::RoleRecord;
use deadbolt_api::resources::{AccessRoleSpec, RoleConditions, UserSpec, UserTraits};
use deadbolt_testkit::postgres::Postgres;
use support::mariadb::Mariadb;
use support::operator::Operator;

/// Labels of every proxy in these tests.
const DEV: [(&str, &str); 1] = [("env", "dev")];

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| value.to_string()).collect()
}

/// A role for `group` allowing database users `users` and databases `names`
/// on proxies labelled `env` in `envs`.
fn role(name: &str, group: &str, users: &[&str], names: &[&str], envs: &[&str]) -> RoleRecord {
    RoleRecord {
        name: name.into(),
        spec: AccessRoleSpec {
            allow: RoleConditions {
                db_users: strings(users),
                db_names: strings(names),
                db_labels: [("env".to_string(), strings(envs))].into(),
                ..Default::default()
            },
            groups: vec![group.into()],
            ..Default::default()
        },
    }
}

/// The roles every test here uses.
fn roles(operator: &Operator) {
    // `app-team` may be `app` on database `app`, on dev proxies.
    operator.role(role("app-dev", "app-team", &["app"], &["app"], &["dev"]));
    // `admins` may be anyone anywhere, but never the superuser.
    operator.role(role("admin", "admins", &["*"], &["*"], &["*"]));
    operator.role(RoleRecord {
        name: "no-superuser".into(),
        spec: AccessRoleSpec {
            deny: RoleConditions {
                db_users: strings(&["postgres", "root"]),
                ..Default::default()
            },
            groups: vec!["admins".into()],
            ..Default::default()
        },
    });
    // `traited` may be whichever database users its User's traits name.
    operator.role(role(
        "own-db-users",
        "traited",
        &["{{internal.db_users}}"],
        &["*"],
        &["*"],
    ));
    operator.user(
        "tina",
        UserSpec {
            traits: UserTraits {
                db_users: strings(&["app"]),
                ..Default::default()
            },
            ..Default::default()
        },
    );
}

fn caller(user: &str, group: &str) -> CertIdentity {
    CertIdentity {
        user: user.into(),
        groups: vec![group.into()],
        ..Default::default()
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn assert_allowed(output: &Output, what: &str) {
    assert!(output.status.success(), "{what}: {}", text(output));
}

fn assert_denied(output: &Output, what: &str) {
    assert!(!output.status.success(), "{what} got in");
    assert!(
        text(output).contains(DATABASE_ACCESS_DENIED),
        "{what}: {}",
        text(output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_follows_the_callers_roles() {
    let postgres = Postgres::start();
    let operator = Operator::start().await;
    roles(&operator);
    let dev = support::proxy::Proxy::start_labelled(&operator, &postgres, "pg-dev", &DEV).await;
    let prod =
        support::proxy::Proxy::start_labelled(&operator, &postgres, "pg-prod", &[("env", "prod")])
            .await;
    dev.catch_up(&operator).await;
    prod.catch_up(&operator).await;

    let anna = caller("anna", "app-team");
    let select = "select current_user";
    let allowed = dev.psql_with(&dev.conninfo_for(&anna, "app", "app"), select);
    assert_allowed(&allowed, "app on app");
    assert_eq!(String::from_utf8_lossy(&allowed.stdout).trim(), "app");
    assert_denied(
        &dev.psql_with(&dev.conninfo_for(&anna, "reporting", "app"), select),
        "another database user",
    );
    assert_denied(
        &dev.psql_with(&dev.conninfo_for(&anna, "app", "reporting"), select),
        "another database",
    );
    assert_denied(
        &prod.psql_with(&prod.conninfo_for(&anna, "app", "app"), select),
        "a proxy whose labels no role matches",
    );
    assert_denied(
        &dev.psql_with(
            &dev.conninfo_for(&caller("nobody", "visitors"), "app", "app"),
            select,
        ),
        "a caller with no role",
    );

    let root = caller("rita", "admins");
    assert_allowed(
        &prod.psql_with(&prod.conninfo_for(&root, "reporting", "reporting"), select),
        "an admin as reporting",
    );
    assert_denied(
        &prod.psql_with(&prod.conninfo_for(&root, "postgres", "app"), select),
        "the superuser, denied by another role of the same caller",
    );

    let tina = caller("tina", "traited");
    assert_allowed(
        &dev.psql_with(&dev.conninfo_for(&tina, "app", "app"), select),
        "a database user from the traits",
    );
    assert_denied(
        &dev.psql_with(&dev.conninfo_for(&tina, "reporting", "reporting"), select),
        "a database user outside the traits",
    );

    let rejected: Vec<_> = dev
        .audit
        .json()
        .into_iter()
        .filter(|event| event["event"] == "session.rejected")
        .collect();
    assert!(
        rejected.iter().any(|event| event["user"] == "nobody"
            && event["reason"]
                .as_str()
                .is_some_and(|reason| reason.contains("no AccessRole"))),
        "{rejected:?}"
    );
    assert!(
        rejected.iter().any(|event| event["user"] == "anna"
            && event["login"] == "reporting"
            && event["reason"]
                .as_str()
                .is_some_and(|reason| reason.contains("no role allows"))),
        "{rejected:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_startup_settings_cannot_change_the_role() {
    let postgres = Postgres::start();
    let operator = Operator::start().await;
    roles(&operator);
    let proxy = support::proxy::Proxy::start_labelled(&operator, &postgres, "pg-opts", &DEV).await;
    proxy.catch_up(&operator).await;
    let anna = caller("anna", "app-team");
    let base = proxy.conninfo_for(&anna, "app", "app");
    let plain = proxy.psql_with(&base, "show search_path");
    assert_allowed(&plain, "a plain session");
    let harmless = proxy.psql_with(
        &format!("{base} options='-c search_path=public'"),
        "show search_path",
    );
    assert_allowed(&harmless, "an ordinary setting");
    assert_eq!(String::from_utf8_lossy(&harmless.stdout).trim(), "public");
    for (extra, what) in [
        ("options='-c role=postgres'", "-c role"),
        (
            "options='--session-authorization=postgres'",
            "--session-authorization",
        ),
        ("options='-crole=postgres'", "-crole"),
        ("replication=database", "a replication connection"),
    ] {
        let output = proxy.psql_with(&format!("{base} {extra}"), "select current_user");
        assert!(!output.status.success(), "{what} got in: {}", text(&output));
        assert!(
            text(&output).contains("not allowed through the Deadbolt proxy"),
            "{what}: {}",
            text(&output)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_follows_the_callers_roles() {
    let mariadb = Mariadb::start();
    let operator = Operator::start().await;
    roles(&operator);
    let dev =
        support::mysql_proxy::Proxy::start_labelled(&operator, &mariadb, "my-dev", &DEV).await;
    let prod = support::mysql_proxy::Proxy::start_labelled(
        &operator,
        &mariadb,
        "my-prod",
        &[("env", "prod")],
    )
    .await;
    dev.catch_up(&operator).await;
    prod.catch_up(&operator).await;

    let anna = caller("anna", "app-team");
    let select = "select current_user()";
    let allowed = dev.mysql_in(&anna, "app", "app", select);
    assert_allowed(&allowed, "app on app");
    assert!(String::from_utf8_lossy(&allowed.stdout).starts_with("app@"));
    assert_denied(
        &dev.mysql_in(&anna, "reporting", "reporting", select),
        "another database user",
    );
    assert_denied(
        &dev.mysql_in(&anna, "app", "reporting", select),
        "another database named at connect",
    );
    assert_denied(
        &prod.mysql_in(&anna, "app", "app", select),
        "a proxy whose labels no role matches",
    );
    assert_denied(
        &dev.mysql_in(&caller("nobody", "visitors"), "app", "app", select),
        "a caller with no role",
    );
    let root = caller("rita", "admins");
    assert_allowed(
        &prod.mysql_in(&root, "reporting", "reporting", select),
        "an admin as reporting",
    );
    assert_denied(
        &prod.mysql_in(&root, "root", "app", select),
        "root, denied by another role of the same caller",
    );
    let tina = caller("tina", "traited");
    assert_allowed(
        &dev.mysql_in(&tina, "app", "app", select),
        "a database user from the traits",
    );
    assert_denied(
        &dev.mysql_in(&tina, "reporting", "reporting", select),
        "a database user outside the traits",
    );
    let output = dev.mysql_in(&caller("nobody", "visitors"), "app", "app", select);
    assert!(
        text(&output).contains("ERROR 1045 (28000)"),
        "{}",
        text(&output)
    );
}
