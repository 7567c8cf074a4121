//! kubectl's exec credential plugin protocol: with `kubectl deadbolt login
//! --mfa` as a kubeconfig user's `exec` command, kubectl gets a fresh MFA
//! client certificate whenever it needs one. kubectl reads one
//! `ExecCredential` JSON object from stdout and caches it until its
//! `expirationTimestamp`; the plugin's own [`super::cache`] saves a security
//! key touch per kubectl process within the credential's five minutes.

use serde_json::{Value, json};

use super::IssuedLogin;

/// The ExecCredential API version kubectl v1.22+ speaks.
pub const EXEC_API_VERSION: &str = "client.authentication.k8s.io/v1";

/// The previous version, still configured in older kubeconfigs; its `status` is the same.
pub const EXEC_API_VERSION_V1BETA1: &str = "client.authentication.k8s.io/v1beta1";

/// The environment variable kubectl sets when it runs a credential plugin.
pub const EXEC_INFO_ENV: &str = "KUBERNETES_EXEC_INFO";

/// The `ExecCredential` for `login`, in `api_version`.
pub fn exec_credential(login: &IssuedLogin, api_version: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": "ExecCredential",
        "status": {
            // Whole seconds, UTC (Go's time.RFC3339); rounded down, so kubectl
            // never holds on to the certificate past its end.
            "expirationTimestamp": login.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "clientCertificateData": login.cert_pem,
            "clientKeyData": login.key_pem,
        }
    })
}

/// The ExecCredential as printed: one JSON document and a newline.
pub fn render_exec_credential(login: &IssuedLogin, api_version: &str) -> String {
    let mut text = exec_credential(login, api_version).to_string();
    text.push('\n');
    text
}

/// The API version to answer in: the one kubectl announces in
/// `KUBERNETES_EXEC_INFO` when it is one of ours, else v1. kubectl rejects an
/// answer in another version than the kubeconfig's `exec.apiVersion`.
pub fn api_version_for(exec_info: Option<&str>) -> &'static str {
    let announced = exec_info
        .and_then(|info| serde_json::from_str::<Value>(info).ok())
        .and_then(|info| info.get("apiVersion")?.as_str().map(str::to_string));
    match announced.as_deref() {
        Some(EXEC_API_VERSION_V1BETA1) => EXEC_API_VERSION_V1BETA1,
        _ => EXEC_API_VERSION,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    fn login() -> IssuedLogin {
        IssuedLogin {
            cert_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
            key_pem: "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n".into(),
            ca_pem: "ca".into(),
            expires_at: "2030-01-02T03:04:05.678Z".parse::<Timestamp>().unwrap(),
            mfa_device: "d6c06a18-e147-4232-9dfe-6f83a28d5850".into(),
        }
    }

    #[test]
    fn the_exec_credential_is_what_kubectl_v1_reads() {
        let value = exec_credential(&login(), EXEC_API_VERSION);
        assert_eq!(
            value,
            json!({
                "apiVersion": "client.authentication.k8s.io/v1",
                "kind": "ExecCredential",
                "status": {
                    "expirationTimestamp": "2030-01-02T03:04:05Z",
                    "clientCertificateData": login().cert_pem,
                    "clientKeyData": login().key_pem,
                }
            })
        );
        // No token, and no `spec` (that is kubectl's input, not the plugin's output).
        assert!(value.get("spec").is_none());
        assert!(value["status"].get("token").is_none());
        let text = render_exec_credential(&login(), EXEC_API_VERSION);
        assert!(text.ends_with("}\n") && text.lines().count() == 1, "{text}");
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, value);
    }

    #[test]
    fn the_version_follows_what_kubectl_announces() {
        assert_eq!(api_version_for(None), EXEC_API_VERSION);
        assert_eq!(api_version_for(Some("garbage")), EXEC_API_VERSION);
        let v1beta1 = r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","spec":{"interactive":true}}"#;
        assert_eq!(api_version_for(Some(v1beta1)), EXEC_API_VERSION_V1BETA1);
        let v1 = r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false}}"#;
        assert_eq!(api_version_for(Some(v1)), EXEC_API_VERSION);
        let other = r#"{"apiVersion":"client.authentication.k8s.io/v1alpha1"}"#;
        assert_eq!(api_version_for(Some(other)), EXEC_API_VERSION);
    }
}
