//! Which ServiceAccounts may subscribe to the lock view with a token, and
//! under which server ids. A token that the API server vouches for is not
//! enough: any pod's ServiceAccount can get one, and the lock view tells its
//! holder every lock, role and user. So only ServiceAccounts on the list
//! (`--subscriber NAMESPACE/NAME[=SERVER_ID_GLOB]`) may subscribe, and each
//! only as the proxy it is: the server id must match the entry's glob, or,
//! without one, be the name of the pod the token is bound to (a projected
//! token carries it), so one proxy cannot speak for another.

use std::fmt;
use std::str::FromStr;

use deadbolt_api::access::glob_match;

use super::TokenUser;

/// The extra a pod-bound ServiceAccount token carries: the pod's name.
pub const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";

/// One `--subscriber` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriberRule {
    namespace: String,
    service_account: String,
    server_ids: Option<String>,
}

impl FromStr for SubscriberRule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (account, server_ids) = match text.split_once('=') {
            Some((account, glob)) if !glob.is_empty() => (account, Some(glob.to_string())),
            Some(_) => {
                return Err(format!(
                    "subscriber {text:?} has an empty server id after '='"
                ));
            }
            None => (text, None),
        };
        let (namespace, service_account) = account
            .split_once('/')
            .filter(|(ns, sa)| !ns.is_empty() && !sa.is_empty() && !sa.contains('/'))
            .ok_or_else(|| {
                format!("subscriber {text:?} is not NAMESPACE/SERVICEACCOUNT[=SERVER_ID_GLOB]")
            })?;
        Ok(Self {
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
            server_ids,
        })
    }
}

impl fmt::Display for SubscriberRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.service_account)?;
        if let Some(glob) = &self.server_ids {
            write!(f, "={glob}")?;
        }
        Ok(())
    }
}

impl SubscriberRule {
    fn username(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }
}

/// Decides whether a token's owner may subscribe as `server_id`; the error
/// is what it is told (403).
pub fn authorize(
    rules: &[SubscriberRule],
    user: &TokenUser,
    server_id: &str,
) -> Result<(), String> {
    let matching: Vec<&SubscriberRule> = rules
        .iter()
        .filter(|rule| rule.username() == user.username)
        .collect();
    if matching.is_empty() {
        return Err(format!(
            "{:?} may not subscribe to the lock view: only the ServiceAccounts given with \
             --subscriber may (the Helm value `subscribers`)",
            user.username
        ));
    }
    let pod = user
        .extra
        .get(POD_NAME_EXTRA)
        .and_then(|names| names.first());
    let allowed = matching.iter().any(|rule| match &rule.server_ids {
        Some(glob) => glob_match(glob, server_id),
        None => pod.is_some_and(|pod| pod == server_id),
    });
    if allowed {
        return Ok(());
    }
    Err(match pod {
        Some(pod) => format!(
            "{:?} may not subscribe as server id {server_id:?}: its token is bound to pod {pod:?}, \
             and its --subscriber entry allows only that name",
            user.username
        ),
        None => format!(
            "{:?} may not subscribe as server id {server_id:?}: its --subscriber entry names no \
             server ids, and its token is not bound to a pod (use a projected token)",
            user.username
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(username: &str, pod: Option<&str>) -> TokenUser {
        TokenUser {
            username: username.into(),
            groups: vec![],
            extra: pod
                .map(|pod| (POD_NAME_EXTRA.to_string(), vec![pod.to_string()]))
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn rules_parse_and_print() {
        let rule: SubscriberRule = "shop/pg-proxy=pg-*".parse().unwrap();
        assert_eq!(rule.to_string(), "shop/pg-proxy=pg-*");
        assert_eq!(rule.username(), "system:serviceaccount:shop:pg-proxy");
        for bad in ["shop", "/sa", "shop/", "a/b/c", "shop/sa="] {
            assert!(bad.parse::<SubscriberRule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn only_listed_accounts_subscribe_and_only_as_themselves() {
        let rules: Vec<SubscriberRule> = ["shop/pg-proxy", "infra/kube-proxy=kube-proxy-*"]
            .iter()
            .map(|rule| rule.parse().unwrap())
            .collect();
        let pg = token("system:serviceaccount:shop:pg-proxy", Some("pg-0"));
        assert_eq!(authorize(&rules, &pg, "pg-0"), Ok(()));
        let other = authorize(&rules, &pg, "pg-1").unwrap_err();
        assert!(other.contains("bound to pod \"pg-0\""), "{other}");
        let unbound = token("system:serviceaccount:shop:pg-proxy", None);
        assert!(authorize(&rules, &unbound, "pg-0").is_err());
        let kube = token("system:serviceaccount:infra:kube-proxy", None);
        assert_eq!(authorize(&rules, &kube, "kube-proxy-a"), Ok(()));
        assert!(authorize(&rules, &kube, "pg-0").is_err());
        let stranger = token("system:serviceaccount:shop:default", Some("web-0"));
        let refused = authorize(&rules, &stranger, "web-0").unwrap_err();
        assert!(refused.contains("--subscriber"), "{refused}");
        assert!(authorize(&[], &pg, "pg-0").is_err(), "nobody by default");
    }
}
