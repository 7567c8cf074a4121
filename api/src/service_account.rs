//! ServiceAccount user names as the API server reads them
//! (`k8s.io/apiserver/pkg/authentication/serviceaccount`): which user names
//! are ServiceAccounts, and the groups every ServiceAccount has. The kube
//! proxy needs both to impersonate a ServiceAccount exactly: the API server
//! gives one impersonated without `Impersonate-Group` its two groups on its
//! own, and anything it does not read as a ServiceAccount is a plain user.

/// What every ServiceAccount user name starts with.
const USERNAME_PREFIX: &str = "system:serviceaccount:";
/// The group of every ServiceAccount.
pub const ALL_SERVICE_ACCOUNTS: &str = "system:serviceaccounts";

/// The namespace and name of `user` when the API server reads it as a
/// ServiceAccount: `system:serviceaccount:<namespace>:<name>`, the namespace
/// a DNS label and the name a DNS subdomain (`SplitUsername`). Anything else
/// is a plain user name to it.
pub fn split_username(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix(USERNAME_PREFIX)?;
    let (namespace, name) = rest.split_once(':')?;
    (is_dns_label(namespace) && is_dns_subdomain(name)).then_some((namespace, name))
}

/// The groups of every ServiceAccount in `namespace`, sorted:
/// `system:serviceaccounts` and `system:serviceaccounts:<namespace>`.
pub fn group_names(namespace: &str) -> [String; 2] {
    [
        ALL_SERVICE_ACCOUNTS.to_string(),
        format!("{ALL_SERVICE_ACCOUNTS}:{namespace}"),
    ]
}

/// RFC 1123 label: at most 63 lower-case alphanumerics or `-`, starting and
/// ending with an alphanumeric.
fn is_dns_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// RFC 1123 subdomain: at most 253 characters, labels joined by `.`.
fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_names_are_read_as_the_api_server_reads_them() {
        assert_eq!(
            split_username("system:serviceaccount:shop:kube-proxy"),
            Some(("shop", "kube-proxy"))
        );
        assert_eq!(
            split_username("system:serviceaccount:shop:bot.v2"),
            Some(("shop", "bot.v2"))
        );
        for plain in [
            "alice",
            "system:serviceaccount:shop",
            "system:serviceaccount:shop:a:b",
            "system:serviceaccount:Shop:bot",
            "system:serviceaccount:shop:Bot",
            "system:serviceaccount:shop:bot_1",
            "system:serviceaccount:-shop:bot",
            "system:serviceaccount::bot",
            "system:serviceaccount:shop:",
            "system:serviceaccount:shop:a..b",
            "system:serviceaccounts:shop:bot",
            "System:serviceaccount:shop:bot",
        ] {
            assert_eq!(split_username(plain), None, "{plain}");
        }
        let long_namespace = "n".repeat(64);
        assert_eq!(
            split_username(&format!("system:serviceaccount:{long_namespace}:bot")),
            None
        );
        assert_eq!(
            group_names("shop"),
            ["system:serviceaccounts", "system:serviceaccounts:shop"]
        );
    }
}
