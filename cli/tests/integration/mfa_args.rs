//! Parsing and checking the flags of `mfa add/ls/rm`, `login` and `status`:
//! every mistake here is caught before a file is read or a connection opened.

use std::path::PathBuf;

use clap::Parser;
use kubectl_deadbolt::mfa::command::{
    CallerSource, KeyArgs, MFA_FLAG_REQUIRED, MfaAction, NO_OUTPUT, Operation,
};
use kubectl_deadbolt::{Action, Cli, Environment, Error, run};

const URL: &str = "https://mfa.deadbolt.test:8443";

/// The service flags every MFA command needs, so tests do not depend on DEADBOLT_* variables.
fn with_service(args: &[&str]) -> Vec<String> {
    std::iter::once("kubectl-deadbolt")
        .chain(args.iter().copied())
        .chain(["--mfa-url", URL, "--mfa-ca", "/nonexistent/ca.crt"])
        .map(str::to_string)
        .collect()
}

fn prepare(args: &[&str]) -> Result<MfaAction, Error> {
    let cli = Cli::try_parse_from(with_service(args)).expect("arguments parse");
    match cli.command.prepare()? {
        Action::Mfa(action) => Ok(*action),
        other => panic!("not an MFA action: {other:?}"),
    }
}

fn usage_error(args: &[&str]) -> String {
    prepare(args).expect_err("a usage error").render()
}

fn clap_error(args: &[&str]) -> String {
    Cli::try_parse_from(with_service(args))
        .expect_err("clap refuses it")
        .to_string()
}

#[test]
fn mfa_add_takes_a_name_and_a_key() {
    let action = prepare(&[
        "mfa",
        "add",
        "--name",
        "yubikey",
        "--soft-token",
        "/tmp/alice.token",
        "--origin",
        "https://mfa.example.com",
        "--token-file",
        "/tmp/token",
    ])
    .unwrap();
    assert_eq!(action.service.url, URL);
    assert_eq!(action.service.ca_file, PathBuf::from("/nonexistent/ca.crt"));
    assert_eq!(
        action.service.caller,
        CallerSource::TokenFile("/tmp/token".into())
    );
    assert_eq!(
        action.operation,
        Operation::AddDevice {
            name: "yubikey".into(),
            key: KeyArgs {
                soft_token: Some("/tmp/alice.token".into()),
                origin: Some("https://mfa.example.com".parse().unwrap()),
            },
        }
    );
    assert!(clap_error(&["mfa", "add"]).contains("--name"));
    assert!(usage_error(&["mfa", "add", "--name", ""]).contains("1 to 64 characters"));
    let long = "x".repeat(65);
    assert!(usage_error(&["mfa", "add", "--name", &long]).contains("1 to 64 characters"));
    assert!(
        clap_error(&["mfa", "add", "--name", "k", "--origin", "not a url"]).contains("--origin")
    );
}

#[test]
fn mfa_ls_and_rm() {
    let ls = prepare(&["mfa", "ls"]).unwrap();
    assert_eq!(ls.operation, Operation::ListDevices);
    assert_eq!(ls.service.caller, CallerSource::Kubeconfig);
    assert_eq!(
        prepare(&["mfa", "list"]).unwrap().operation,
        Operation::ListDevices
    );

    let rm = prepare(&["mfa", "rm", "D6C06A18-E147-4232-9DFE-6F83A28D5850"]).unwrap();
    assert_eq!(
        rm.operation,
        Operation::RemoveDevice {
            uuid: "d6c06a18-e147-4232-9dfe-6f83a28d5850".into()
        }
    );
    assert!(usage_error(&["mfa", "rm", "../../whoami"]).contains("invalid MFA device UUID"));
    assert!(clap_error(&["mfa", "rm"]).contains("UUID"));
}

#[test]
fn login_requires_mfa_and_takes_target_out_and_exec_credential() {
    assert_eq!(
        usage_error(&["login"]),
        format!("error: {MFA_FLAG_REQUIRED}")
    );
    assert!(MFA_FLAG_REQUIRED.contains("--mfa"));
    let action = prepare(&[
        "login",
        "--mfa",
        "--target",
        "db-prod",
        "--out",
        "/tmp/db",
        "--exec-credential",
        "--cert",
        "/tmp/alice.crt",
        "--key",
        "/tmp/alice.key",
    ])
    .unwrap();
    assert_eq!(
        action.operation,
        Operation::Login {
            target: Some("db-prod".into()),
            out: Some("/tmp/db".into()),
            exec_credential: true,
            key: KeyArgs::default(),
        }
    );
    assert_eq!(
        action.service.caller,
        CallerSource::Certificate {
            cert: "/tmp/alice.crt".into(),
            key: "/tmp/alice.key".into()
        }
    );
    assert!(usage_error(&["login", "--mfa", "--target", ""]).contains("--target"));
}

#[test]
fn status_needs_only_the_service() {
    assert_eq!(prepare(&["status"]).unwrap().operation, Operation::Status);
}

#[test]
fn caller_flags_are_one_of_token_file_or_cert_and_key() {
    assert_eq!(
        usage_error(&["status", "--cert", "c"]),
        "error: --cert needs --key"
    );
    assert_eq!(
        usage_error(&["status", "--key", "k"]),
        "error: --key needs --cert"
    );
    assert!(
        usage_error(&["status", "--token-file", "t", "--cert", "c", "--key", "k"])
            .contains("not both")
    );
}

#[test]
fn the_service_url_must_be_https() {
    let argv = [
        "kubectl-deadbolt",
        "status",
        "--mfa-url",
        "http://mfa.example",
        "--mfa-ca",
        "ca.crt",
    ];
    let cli = Cli::try_parse_from(argv).unwrap();
    let error = cli.command.prepare().unwrap_err().render();
    assert!(error.contains("must start with https://"), "{error}");
}

#[test]
fn the_service_url_and_ca_are_required() {
    if std::env::var_os("DEADBOLT_MFA_URL").is_some()
        || std::env::var_os("DEADBOLT_MFA_CA").is_some()
    {
        return;
    }
    let cli = Cli::try_parse_from(["kubectl-deadbolt", "mfa", "ls", "--mfa-ca", "ca.crt"]).unwrap();
    let error = cli.command.prepare().unwrap_err().render();
    assert!(
        error.contains("--mfa-url") && error.contains("DEADBOLT_MFA_URL"),
        "{error}"
    );
    let cli = Cli::try_parse_from(["kubectl-deadbolt", "mfa", "ls", "--mfa-url", URL]).unwrap();
    let error = cli.command.prepare().unwrap_err().render();
    assert!(
        error.contains("--mfa-ca") && error.contains("DEADBOLT_MFA_CA"),
        "{error}"
    );
}

#[test]
fn cluster_flags_still_work_after_an_mfa_subcommand() {
    let cli = Cli::try_parse_from(with_service(&["mfa", "ls", "--context", "prod"])).unwrap();
    assert_eq!(cli.kube.context.as_deref(), Some("prod"));
}

async fn run_plugin(args: Vec<String>, env: &Environment) -> (u8, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = run(args, env, &mut out, &mut err).await;
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[tokio::test]
async fn mistakes_exit_1_before_any_file_is_read() {
    let env = Environment::default();
    // The CA file does not exist: these fail before anyone notices.
    let (code, out, err) = run_plugin(with_service(&["login"]), &env).await;
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err, format!("error: {MFA_FLAG_REQUIRED}\n"));
    let (code, _, err) =
        run_plugin(with_service(&["login", "--mfa", "--token-file", "t"]), &env).await;
    assert_eq!(code, 1);
    assert_eq!(err, format!("error: {NO_OUTPUT}\n"));
    // Then the CA is the first file read.
    let (code, _, err) = run_plugin(
        with_service(&["login", "--mfa", "--exec-credential", "--token-file", "t"]),
        &env,
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: cannot read the MFA service CA /nonexistent/ca.crt"),
        "{err}"
    );
}
