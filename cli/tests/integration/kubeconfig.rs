//! Cluster selection (`--kubeconfig`, `--context`, `--cluster`, `KUBECONFIG`,
//! `~/.kube/config`) and the whole `run` entry point, without a cluster:
//! configs are inspected, and the only connection made is to a closed local port.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use kubectl_deadbolt::{Environment, KubeArgs, kubeconfig, run};

/// A fresh, empty directory under cargo's per-target temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("kubeconfig-tests-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Context<'a> {
    name: &'a str,
    cluster: &'a str,
    server: &'a str,
    namespace: Option<&'a str>,
}

fn kubeconfig_yaml(current: Option<&str>, contexts: &[Context]) -> String {
    let mut yaml = String::from("apiVersion: v1\nkind: Config\n");
    if let Some(current) = current {
        yaml.push_str(&format!("current-context: {current}\n"));
    }
    yaml.push_str("clusters:\n");
    for context in contexts {
        yaml.push_str(&format!(
            "- name: {}\n  cluster:\n    server: {}\n",
            context.cluster, context.server
        ));
    }
    yaml.push_str("contexts:\n");
    for context in contexts {
        yaml.push_str(&format!(
            "- name: {}\n  context:\n    cluster: {}\n    user: {}-admin\n",
            context.name, context.cluster, context.name
        ));
        if let Some(namespace) = context.namespace {
            yaml.push_str(&format!("    namespace: {namespace}\n"));
        }
    }
    yaml.push_str("users:\n");
    for context in contexts {
        yaml.push_str(&format!(
            "- name: {}-admin\n  user:\n    token: token-{}\n",
            context.name, context.name
        ));
    }
    yaml
}

const BLUE: Context = Context {
    name: "blue",
    cluster: "blue-cluster",
    server: "https://blue.example.test:6443",
    namespace: None,
};
const GREEN: Context = Context {
    name: "green",
    cluster: "green-cluster",
    server: "https://green.example.test:7443",
    namespace: Some("team-green"),
};

/// One file with the blue and green contexts, blue current.
fn two_context_file(dir: &Path) -> PathBuf {
    let path = dir.join("config");
    std::fs::write(&path, kubeconfig_yaml(Some("blue"), &[BLUE, GREEN])).unwrap();
    path
}

fn args(kubeconfig: Option<&Path>, context: Option<&str>) -> KubeArgs {
    KubeArgs {
        kubeconfig: kubeconfig.map(Path::to_path_buf),
        context: context.map(str::to_string),
        cluster: None,
    }
}

fn env_with(kubeconfig: Option<OsString>, home: Option<&Path>) -> Environment {
    Environment {
        kubeconfig,
        home: home.map(Path::to_path_buf),
        ..Environment::default()
    }
}

async fn server_of(args: &KubeArgs, env: &Environment) -> (String, String) {
    let config = kubeconfig::load_config(args, env)
        .await
        .expect("config loads");
    (config.cluster_url.to_string(), config.default_namespace)
}

async fn error_of(args: &KubeArgs, env: &Environment) -> String {
    kubeconfig::load_config(args, env)
        .await
        .expect_err("config should not load")
        .render()
}

#[tokio::test]
async fn kubeconfig_flag_uses_the_current_context() {
    let dir = temp_dir("current");
    let file = two_context_file(&dir);
    let (server, namespace) = server_of(&args(Some(&file), None), &Environment::default()).await;
    assert_eq!(server, "https://blue.example.test:6443/");
    assert_eq!(namespace, "default");
}

#[tokio::test]
async fn context_flag_selects_another_context() {
    let dir = temp_dir("context");
    let file = two_context_file(&dir);
    let config =
        kubeconfig::load_config(&args(Some(&file), Some("green")), &Environment::default())
            .await
            .unwrap();
    assert_eq!(
        config.cluster_url.to_string(),
        "https://green.example.test:7443/"
    );
    assert_eq!(config.default_namespace, "team-green");
    assert_eq!(
        config.auth_info.token.as_ref().map(|_| "set"),
        Some("set"),
        "the context's user is used"
    );
}

#[tokio::test]
async fn cluster_flag_overrides_the_contexts_cluster() {
    let dir = temp_dir("cluster");
    let file = two_context_file(&dir);
    let mut selection = args(Some(&file), Some("blue"));
    selection.cluster = Some("green-cluster".to_string());
    let (server, _) = server_of(&selection, &Environment::default()).await;
    assert_eq!(server, "https://green.example.test:7443/");
}

#[tokio::test]
async fn kubeconfig_env_merges_files_first_wins_and_skips_missing_ones() {
    let dir = temp_dir("merge");
    let first = dir.join("first");
    let second = dir.join("second");
    std::fs::write(&first, kubeconfig_yaml(Some("blue"), &[BLUE])).unwrap();
    std::fs::write(&second, kubeconfig_yaml(Some("green"), &[GREEN])).unwrap();
    let missing = dir.join("does-not-exist");
    let value = std::env::join_paths([&missing, &first, &second]).unwrap();
    let env = env_with(Some(value), None);

    let (server, _) = server_of(&args(None, None), &env).await;
    assert_eq!(
        server, "https://blue.example.test:6443/",
        "first file's current-context wins"
    );
    let (server, namespace) = server_of(&args(None, Some("green")), &env).await;
    assert_eq!(
        server, "https://green.example.test:7443/",
        "contexts of later files are merged in"
    );
    assert_eq!(namespace, "team-green");
}

#[tokio::test]
async fn kubeconfig_flag_beats_the_env_and_home() {
    let dir = temp_dir("flag-wins");
    let flag_file = dir.join("flag");
    let env_file = dir.join("env");
    std::fs::write(&flag_file, kubeconfig_yaml(Some("green"), &[GREEN])).unwrap();
    std::fs::write(&env_file, kubeconfig_yaml(Some("blue"), &[BLUE])).unwrap();
    let env = env_with(Some(env_file.clone().into_os_string()), Some(&dir));
    let (server, _) = server_of(&args(Some(&flag_file), None), &env).await;
    assert_eq!(server, "https://green.example.test:7443/");
    // The flag names one file; the env's contexts are not merged in.
    let error = error_of(&args(Some(&flag_file), Some("blue")), &env).await;
    assert_eq!(
        error,
        "error: context was not found for specified context: blue"
    );
}

#[tokio::test]
async fn home_kube_config_is_the_fallback() {
    let home = temp_dir("home");
    std::fs::create_dir_all(home.join(".kube")).unwrap();
    std::fs::write(
        home.join(".kube").join("config"),
        kubeconfig_yaml(Some("green"), &[BLUE, GREEN]),
    )
    .unwrap();
    let (server, _) = server_of(&args(None, None), &env_with(None, Some(&home))).await;
    assert_eq!(server, "https://green.example.test:7443/");
    // An empty KUBECONFIG counts as unset, as with kubectl.
    let (server, _) = server_of(
        &args(None, None),
        &env_with(Some(OsString::new()), Some(&home)),
    )
    .await;
    assert_eq!(server, "https://green.example.test:7443/");
}

#[tokio::test]
async fn unknown_context_is_reported_like_kubectl() {
    let dir = temp_dir("unknown-context");
    let file = two_context_file(&dir);
    let error = error_of(&args(Some(&file), Some("purple")), &Environment::default()).await;
    assert_eq!(
        error,
        "error: context was not found for specified context: purple"
    );
}

#[tokio::test]
async fn missing_kubeconfig_file_is_reported() {
    let dir = temp_dir("missing-file");
    let error = error_of(
        &args(Some(&dir.join("nope")), None),
        &Environment::default(),
    )
    .await;
    assert!(
        error.starts_with("error: loading kubeconfig: failed to read kubeconfig from"),
        "{error}"
    );
    assert!(error.contains("nope"), "{error}");
}

#[tokio::test]
async fn no_kubeconfig_anywhere_is_reported() {
    let dir = temp_dir("nothing");
    let env = env_with(Some(dir.join("absent").into_os_string()), Some(&dir));
    // With --context there is no in-cluster fallback, so this does not depend on where the test runs.
    let error = error_of(&args(None, Some("blue")), &env).await;
    assert_eq!(
        error,
        "error: no kubeconfig found (checked --kubeconfig, KUBECONFIG and ~/.kube/config) and not running inside a cluster"
    );
}

/// What `run` did: exit code, stdout, stderr.
async fn run_plugin(args: &[&str], env: &Environment) -> (u8, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = run(
        std::iter::once("kubectl-deadbolt").chain(args.iter().copied()),
        env,
        &mut out,
        &mut err,
    )
    .await;
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[tokio::test]
async fn bad_flags_fail_before_the_kubeconfig_is_read() {
    let dir = temp_dir("validate-first");
    let env = env_with(Some(dir.join("absent").into_os_string()), None);
    let (code, out, err) = run_plugin(
        &[
            "--kubeconfig",
            "/nonexistent/config",
            "lock",
            "--user=a",
            "--ttl=1h",
            "--expires=2030-01-01T00:00:00Z",
        ],
        &env,
    )
    .await;
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (1, "", "error: use only one of --ttl and --expires\n")
    );
    let (code, _, err) = run_plugin(&["lock", "--context=x"], &env).await;
    assert_eq!(
        (code, err.as_str()),
        (1, "error: at least one of the target fields must be set\n")
    );
}

#[tokio::test]
async fn usage_errors_exit_1_and_help_exits_0() {
    let env = Environment::default();
    let (code, out, err) = run_plugin(&["lock", "--bogus"], &env).await;
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert!(
        err.starts_with("error: unexpected argument '--bogus'"),
        "{err}"
    );
    let (code, out, err) = run_plugin(&["lock", "--help"], &env).await;
    assert_eq!(code, 0);
    assert_eq!(err, "");
    for flag in [
        "--user",
        "--role",
        "--login",
        "--mfa-device",
        "--device",
        "--server-id",
        "--windows-desktop",
        "--access-request",
        "--message",
        "--ttl",
        "--expires",
        "--kubeconfig",
        "--context",
    ] {
        assert!(out.contains(flag), "help lists {flag}:\n{out}");
    }
}

#[tokio::test]
async fn context_from_kubeconfig_env_is_used_for_requests() {
    // A port that was just free: nothing listens there, so the request is refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = temp_dir("unreachable");
    let first = dir.join("first");
    let second = dir.join("second");
    std::fs::write(&first, kubeconfig_yaml(Some("blue"), &[BLUE])).unwrap();
    let local_server = format!("https://127.0.0.1:{port}");
    let local = Context {
        name: "local",
        cluster: "local-cluster",
        server: &local_server,
        namespace: None,
    };
    std::fs::write(&second, kubeconfig_yaml(None, &[local])).unwrap();
    let env = env_with(Some(std::env::join_paths([&first, &second]).unwrap()), None);
    // The global flag works after the subcommand too, as kubectl's do.
    let (code, out, err) = run_plugin(&["ls", "--context", "local"], &env).await;
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert!(
        err.starts_with(&format!(
            "Unable to connect to the server https://127.0.0.1:{port}/: "
        )),
        "{err}"
    );
}
