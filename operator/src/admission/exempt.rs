//! Who lock enforcement leaves alone, so a lock (or strict mode on an
//! unreliable view) can never stop the cluster from running itself.
//!
//! The rule:
//!
//! - `system:` users that are not service accounts are exempt: nodes, the
//!   scheduler, the controller manager, the API server itself. They are the
//!   cluster, not people, and locking them out deadlocks it.
//! - Service accounts are ordinary identities: a lock on
//!   `system:serviceaccount:ns:name` works, so a locked user's workloads can be
//!   stopped from writing too. Exempting them all would make that impossible.
//! - Configured users and groups are exempt: the operator's own ServiceAccount,
//!   and by default the group `system:serviceaccounts:kube-system`, since the
//!   controller manager runs its controllers (ReplicaSet, garbage collector,
//!   namespace…) as kube-system service accounts.
//! - `system:masters` is not exempt by default: it is a credential like any
//!   other and may be stolen. The break-glass path stays open anyway, because
//!   the API server never sends webhook configurations to webhooks, so a
//!   cluster admin can always delete the ValidatingWebhookConfiguration.

use std::collections::HashSet;

use super::identity::Requester;

/// The prefix of every Kubernetes-internal user name.
const SYSTEM_PREFIX: &str = "system:";

/// The prefix of service account user names, which stay subject to locks.
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// Whether `username` is a Kubernetes component (node, scheduler, controller
/// manager, API server) rather than a person or a workload's service account.
pub fn is_control_plane_user(username: &str) -> bool {
    username.starts_with(SYSTEM_PREFIX) && !username.starts_with(SERVICE_ACCOUNT_PREFIX)
}

/// The user name the API server gives a ServiceAccount's tokens, e.g. for the
/// operator's own: `system:serviceaccount:deadbolt-system:deadbolt-operator`.
pub fn service_account_username(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}")
}

/// The users and groups lock enforcement skips, besides control-plane users.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exemptions {
    users: HashSet<String>,
    groups: HashSet<String>,
}

impl Exemptions {
    /// Exempts these user names and every member of these groups.
    pub fn new(
        users: impl IntoIterator<Item = String>,
        groups: impl IntoIterator<Item = String>,
    ) -> Self {
        let keep = |name: &String| !name.is_empty();
        Self {
            users: users.into_iter().filter(keep).collect(),
            groups: groups.into_iter().filter(keep).collect(),
        }
    }

    /// Why the requester is exempt, for the log; `None` when locks apply.
    pub fn exemption(&self, requester: &Requester<'_>) -> Option<&'static str> {
        if is_control_plane_user(requester.username) {
            Some("control-plane user")
        } else if self.users.contains(requester.username) {
            Some("exempt user")
        } else if requester.groups.iter().any(|g| self.groups.contains(g)) {
            Some("member of an exempt group")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requester<'a>(username: &'a str, groups: &'a [String]) -> Requester<'a> {
        Requester { username, groups }
    }

    #[test]
    fn control_plane_users_are_exempt_but_service_accounts_are_not() {
        let none = Exemptions::default();
        for user in [
            "system:node:worker-1",
            "system:kube-scheduler",
            "system:kube-controller-manager",
            "system:apiserver",
        ] {
            assert!(none.exemption(&requester(user, &[])).is_some(), "{user}");
        }
        for user in ["system:serviceaccount:shop:builder", "alice", "systemd", ""] {
            assert!(none.exemption(&requester(user, &[])).is_none(), "{user}");
        }
    }

    #[test]
    fn configured_users_and_groups_are_exempt() {
        let operator = service_account_username("deadbolt-system", "deadbolt-operator");
        assert_eq!(
            operator,
            "system:serviceaccount:deadbolt-system:deadbolt-operator"
        );
        let exemptions = Exemptions::new(
            [operator.clone(), String::new()],
            ["system:serviceaccounts:kube-system".to_string()],
        );
        assert_eq!(
            exemptions.exemption(&requester(&operator, &[])),
            Some("exempt user")
        );
        let kube_system = ["system:serviceaccounts:kube-system".to_string()];
        assert_eq!(
            exemptions.exemption(&requester(
                "system:serviceaccount:kube-system:replicaset-controller",
                &kube_system
            )),
            Some("member of an exempt group")
        );
        assert_eq!(exemptions.exemption(&requester("", &[])), None);
    }
}
