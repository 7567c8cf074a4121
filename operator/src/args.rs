//! Command-line flags. Every flag can also be set with a `DEADBOLT_*`
//! environment variable, which is how the Helm chart configures the operator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::source::SourceSpec;

pub use deadbolt_runtime::logging::LogFormat;
pub use deadbolt_runtime::output::OutputArgs;

/// The operator's flags.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "deadbolt-operator",
    version,
    about = "Serves the Deadbolt lock view to proxies, from Kubernetes or a directory of manifests."
)]
pub struct Args {
    /// Where objects come from: `kube` (watch the cluster) or `dir:PATH` (a
    /// directory of *.yaml manifests, reloaded on change).
    #[arg(long, env = "DEADBOLT_SOURCE", default_value = "kube")]
    pub source: SourceSpec,

    /// Address of the lock-view stream (HTTPS, HTTP/2).
    #[arg(long, env = "DEADBOLT_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,

    /// Serving certificate (PEM). Without it, one is issued from the Deadbolt CA.
    #[arg(long, env = "DEADBOLT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key of --tls-cert (PEM).
    #[arg(long, env = "DEADBOLT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Extra names for the issued serving certificate (comma-separated DNS names or IPs).
    #[arg(
        long,
        env = "DEADBOLT_TLS_SANS",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1"
    )]
    pub tls_sans: Vec<String>,

    /// The operator's Service name; its in-cluster DNS names go into the issued serving certificate.
    #[arg(
        long,
        env = "DEADBOLT_SERVICE_NAME",
        default_value = "deadbolt-operator"
    )]
    pub service_name: String,

    /// Directory holding the Deadbolt CA (ca.crt, ca.key) with --source dir:PATH;
    /// created when missing.
    #[arg(long, env = "DEADBOLT_CA_DIR")]
    pub ca_dir: Option<PathBuf>,

    /// The operator's namespace: where the `deadbolt-ca` Secret and the leader
    /// Lease live. Defaults to $POD_NAMESPACE, then the service account's namespace.
    #[arg(long, env = "DEADBOLT_NAMESPACE")]
    pub namespace: Option<String>,

    /// Audience that bearer tokens must be minted for.
    #[arg(long, env = "DEADBOLT_TOKEN_AUDIENCE", default_value = "deadbolt")]
    pub token_audience: String,

    /// A ServiceAccount allowed to subscribe to the lock view with a token,
    /// `NAMESPACE/NAME`, as the server id its token's pod is named, or
    /// `NAMESPACE/NAME=GLOB` for server ids matching GLOB. Repeatable; without
    /// any, only proxy certificates may subscribe.
    #[arg(
        long = "subscriber",
        env = "DEADBOLT_SUBSCRIBERS",
        value_delimiter = ','
    )]
    pub subscribers: Vec<crate::auth::SubscriberRule>,

    /// Lock-view streams one subscriber identity may have open at once.
    #[arg(long, env = "DEADBOLT_MAX_STREAMS_PER_SUBSCRIBER",
          default_value_t = crate::stream::DEFAULT_MAX_STREAMS_PER_SUBSCRIBER)]
    pub max_streams_per_subscriber: usize,

    /// Address of /metrics, /healthz and /readyz (plain HTTP).
    #[arg(long, env = "DEADBOLT_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,

    /// Logs and the audit log (lock.created, lock.expired, lock.deleted,
    /// mfa.device.add, mfa.device.delete, mfa.auth).
    #[command(flatten)]
    pub output: OutputArgs,

    /// Heartbeat interval of the lock-view stream (Go duration). Proxies expect 1s;
    /// keep it well under the cluster's maxLockStaleness.
    #[arg(long, env = "DEADBOLT_HEARTBEAT_INTERVAL", default_value = "1s",
          value_parser = parse_duration, hide = true)]
    pub heartbeat_interval: Duration,

    /// Delete Locks that have been expired for longer than this (Go duration,
    /// e.g. 168h). Without it, expired Locks stay until someone deletes them.
    #[arg(long, env = "DEADBOLT_EXPIRED_LOCK_RETENTION", value_parser = parse_duration)]
    pub expired_lock_retention: Option<Duration>,

    /// Take part in leader election (Lease `deadbolt-operator` in --namespace);
    /// only the leader writes status. Set to false only with a single replica.
    #[arg(long, env = "DEADBOLT_LEADER_ELECTION", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// This replica's identity in leader election and in Events it records.
    /// Defaults to $HOSTNAME (the pod name in Kubernetes).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,

    /// A ValidatingWebhookConfiguration whose `caBundle` the leader sets to
    /// the Deadbolt CA, which issues the webhooks' serving certificate
    /// (without cert-manager). Repeatable.
    #[arg(
        long = "validating-webhook-configuration",
        env = "DEADBOLT_VALIDATING_WEBHOOK_CONFIGURATIONS",
        value_delimiter = ','
    )]
    pub validating_webhook_configurations: Vec<String>,

    /// The same for a MutatingWebhookConfiguration. Repeatable.
    #[arg(
        long = "mutating-webhook-configuration",
        env = "DEADBOLT_MUTATING_WEBHOOK_CONFIGURATIONS",
        value_delimiter = ','
    )]
    pub mutating_webhook_configurations: Vec<String>,

    /// Audience the MFA service's callers' bearer tokens must be minted for.
    /// Without it, the API server's own audiences: the MFA service accepts
    /// the token kubectl sends the API server (a user's OIDC token, say), and
    /// the security key is the second factor.
    #[arg(long, env = "DEADBOLT_MFA_TOKEN_AUDIENCE")]
    pub mfa_token_audience: Option<String>,

    /// Address of the MFA service (HTTPS, HTTP/2): WebAuthn registration and
    /// per-session MFA checks that issue short-lived session credentials.
    #[arg(long, env = "DEADBOLT_MFA_LISTEN", default_value = "0.0.0.0:8444")]
    pub mfa_listen: SocketAddr,

    /// Address of the admission webhooks (HTTPS; Kubernetes source only).
    #[arg(long, env = "DEADBOLT_WEBHOOK_LISTEN", default_value = "0.0.0.0:9443")]
    pub webhook_listen: std::net::SocketAddr,

    /// The operator's ServiceAccount name: exempt from lock enforcement, and
    /// allowed to edit SSO and synced users.
    #[arg(
        long,
        env = "DEADBOLT_SERVICE_ACCOUNT",
        default_value = "deadbolt-operator"
    )]
    pub service_account: String,

    /// Identities of the identity-provider sync, allowed to edit SSO and synced users.
    #[arg(
        long = "idp-sync-user",
        env = "DEADBOLT_IDP_SYNC_USERS",
        value_delimiter = ','
    )]
    pub idp_sync_users: Vec<String>,

    /// Users never refused by lock enforcement on direct API access.
    #[arg(
        long = "lock-exempt-user",
        env = "DEADBOLT_LOCK_EXEMPT_USERS",
        value_delimiter = ','
    )]
    pub lock_exempt_users: Vec<String>,

    /// Groups never refused by lock enforcement on direct API access.
    #[arg(long = "lock-exempt-group", env = "DEADBOLT_LOCK_EXEMPT_GROUPS", value_delimiter = ',',
          default_value = crate::admission::DEFAULT_EXEMPT_GROUP)]
    pub lock_exempt_groups: Vec<String>,

    /// The image injected database sidecars run (`POST /mutate/pods`, for
    /// Pods annotated `deadbolt.dev/inject`). Without it the endpoint injects
    /// nothing and refuses Pods that ask.
    #[arg(long, env = "DEADBOLT_INJECT_IMAGE", requires = "inject_view_url")]
    pub inject_image: Option<String>,

    /// The lock-view URL injected sidecars subscribe to, e.g.
    /// `https://deadbolt-operator.deadbolt-system.svc:8443`.
    #[arg(long, env = "DEADBOLT_INJECT_VIEW_URL", requires = "inject_image",
          value_parser = parse_view_url)]
    pub inject_view_url: Option<String>,
}

/// A lock-view URL sidecars can use: `https://host[:port]`, nothing more.
fn parse_view_url(text: &str) -> Result<String, String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|error| format!("not a URL: {error}"))?;
    if uri.scheme_str() != Some("https") || uri.host().is_none() {
        return Err("must be https://HOST[:PORT]".into());
    }
    if uri
        .path_and_query()
        .is_some_and(|path| path.as_str() != "/")
    {
        return Err("must be https://HOST[:PORT], without a path".into());
    }
    Ok(text.trim_end_matches('/').to_string())
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    match deadbolt_api::duration::parse(text) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        Ok(_) => Err("must be greater than zero".into()),
        Err(error) => Err(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let args = Args::try_parse_from(["deadbolt-operator"]).unwrap();
        assert_eq!(args.source, SourceSpec::Kube);
        assert_eq!(args.listen.to_string(), "0.0.0.0:8443");
        assert_eq!(args.metrics_listen.to_string(), "0.0.0.0:9090");
        assert_eq!(args.output.log_format, LogFormat::Text);
        assert_eq!(args.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(args.output.audit_log, None);
        assert_eq!(args.expired_lock_retention, None);
        assert!(args.leader_election);
        assert!(args.subscribers.is_empty());
        assert_eq!(args.max_streams_per_subscriber, 4);
    }

    #[test]
    fn subscribers_are_parsed_and_checked() {
        let args = Args::try_parse_from([
            "deadbolt-operator",
            "--subscriber",
            "shop/pg-proxy",
            "--subscriber",
            "infra/kube-proxy=kube-*",
        ])
        .unwrap();
        assert_eq!(args.subscribers.len(), 2);
        assert_eq!(args.subscribers[1].to_string(), "infra/kube-proxy=kube-*");
        assert!(
            Args::try_parse_from(["deadbolt-operator", "--subscriber", "no-namespace"]).is_err()
        );
    }

    #[test]
    fn controller_flags() {
        let args = Args::try_parse_from([
            "deadbolt-operator",
            "--audit-log",
            "/var/log/deadbolt/audit.log",
            "--expired-lock-retention",
            "168h",
            "--leader-election=false",
            "--pod-name",
            "deadbolt-operator-0",
        ])
        .unwrap();
        assert_eq!(
            args.output.audit_log,
            Some("/var/log/deadbolt/audit.log".into())
        );
        assert_eq!(
            args.expired_lock_retention,
            Some(Duration::from_secs(168 * 3600))
        );
        assert!(!args.leader_election);
        assert_eq!(args.pod_name.as_deref(), Some("deadbolt-operator-0"));
        assert!(
            Args::try_parse_from(["deadbolt-operator", "--expired-lock-retention", "7d"]).is_err()
        );
    }

    #[test]
    fn tls_cert_needs_its_key() {
        assert!(Args::try_parse_from(["deadbolt-operator", "--tls-cert", "c.pem"]).is_err());
        let args = Args::try_parse_from([
            "deadbolt-operator",
            "--source",
            "dir:/m",
            "--ca-dir",
            "/ca",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(args.source, SourceSpec::Dir("/m".into()));
        assert_eq!(args.output.log_format, LogFormat::Json);
    }

    #[test]
    fn injection_needs_an_image_and_an_https_view_url() {
        let parse = |url: &str| {
            Args::try_parse_from([
                "deadbolt-operator",
                "--inject-image=localhost/deadbolt:1",
                &format!("--inject-view-url={url}"),
            ])
        };
        let args = parse("https://deadbolt-operator.deadbolt-system.svc:8443/").unwrap();
        assert_eq!(
            args.inject_view_url.as_deref(),
            Some("https://deadbolt-operator.deadbolt-system.svc:8443")
        );
        for bad in [
            "http://operator:8443",
            "operator:8443",
            "https://operator/x",
            "https://",
        ] {
            let error = parse(bad).unwrap_err().to_string();
            assert!(error.contains("--inject-view-url"), "{bad}: {error}");
        }
        assert!(Args::try_parse_from(["deadbolt-operator", "--inject-image=x:1"]).is_err());
    }
}
