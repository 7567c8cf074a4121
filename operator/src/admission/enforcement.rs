//! Lock enforcement for direct API access: a write (CREATE, UPDATE, DELETE) or
//! a CONNECT (exec, attach, port-forward, proxy) by a locked identity is
//! refused with the lock's message, as a proxy would refuse it.
//!
//! The API server only sends those four operations to webhooks (reads never
//! reach admission), so every request that arrives here is checked.

use deadbolt_api::replica::ViewReplica;
use deadbolt_api::{Decision, Denial, LockingMode, evaluate};
use jiff::Timestamp;

use super::exempt::Exemptions;
use super::identity::{Requester, identity_for};
use super::review::Refusal;

/// What the webhook knows about its own view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewHealth {
    /// The source has loaded everything once. Before that the view is empty,
    /// which must not be mistaken for "no locks".
    pub loaded: bool,
    /// The view is up to date (the source is connected).
    pub reliable: bool,
}

/// Decides a request as the proxies decide a new interaction: exempt
/// requesters pass; otherwise a strict interaction on an unreliable view is
/// refused with the stale-view message, then any in-force lock on the user or
/// one of its roles refuses it. Before the view has loaded, everyone who is not
/// exempt is refused, whatever the mode (fail closed, like a proxy before its
/// first snapshot).
pub fn enforce_locks(
    requester: &Requester<'_>,
    view: &ViewReplica,
    exemptions: &Exemptions,
    health: ViewHealth,
    now: Timestamp,
) -> Decision {
    if exemptions.exemption(requester).is_some() {
        return Ok(());
    }
    let identity = identity_for(requester, view);
    let (mode, reliable) = if health.loaded {
        (view.locking_mode(&identity.roles), health.reliable)
    } else {
        (LockingMode::Strict, false)
    };
    evaluate(view.locks(), &identity.targets(None), mode, reliable, now)
}

/// The refusal the client sees: 403 with the exact lock (or stale-view) message.
pub(super) fn refusal(denial: Denial) -> Refusal {
    let mut refusal = Refusal::forbidden(denial.message());
    if let Denial::Locked { lock, .. } = denial {
        refusal.lock = Some(lock);
    }
    refusal
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadbolt_api::TargetKind;
    use deadbolt_api::engine::STALE_VIEW_MESSAGE;
    use deadbolt_api::protocol::{ClusterConfig, Snapshot, ViewEvent};
    use deadbolt_testkit::role::strict_role;
    use deadbolt_testkit::{lock_entry, target};

    fn view() -> ViewReplica {
        let lock = lock_entry(
            "sa-lock",
            target(TargetKind::User, "system:serviceaccount:shop:builder"),
        )
        .message("Compromised workload.")
        .build();
        let strict = strict_role("oncall", "sre");
        let mut view = ViewReplica::default();
        let snapshot = Snapshot {
            revision: 1,
            locks: vec![lock],
            roles: vec![strict],
            users: vec![],
            config: ClusterConfig::default(),
        };
        view.apply(ViewEvent::Snapshot(snapshot)).unwrap();
        view
    }

    const HEALTHY: ViewHealth = ViewHealth {
        loaded: true,
        reliable: true,
    };

    fn decide(username: &str, groups: &[String], health: ViewHealth) -> Decision {
        let requester = Requester { username, groups };
        let exemptions = Exemptions::new([], ["system:serviceaccounts:kube-system".into()]);
        enforce_locks(
            &requester,
            &view(),
            &exemptions,
            health,
            Timestamp::UNIX_EPOCH,
        )
    }

    #[test]
    fn a_lock_on_a_service_account_applies() {
        let denial = decide("system:serviceaccount:shop:builder", &[], HEALTHY).unwrap_err();
        assert_eq!(
            denial.message(),
            r#"lock targeting User:"system:serviceaccount:shop:builder" is in force: Compromised workload."#
        );
        assert_eq!(refusal(denial).lock.as_deref(), Some("sa-lock"));
    }

    #[test]
    fn strict_roles_on_an_unreliable_view_are_locked_out() {
        let unreliable = ViewHealth {
            loaded: true,
            reliable: false,
        };
        let sre = ["sre".to_string()];
        assert_eq!(
            decide("bob", &sre, unreliable).unwrap_err().message(),
            STALE_VIEW_MESSAGE
        );
        assert_eq!(decide("bob", &[], unreliable), Ok(()));
        assert_eq!(decide("bob", &sre, HEALTHY), Ok(()));
    }

    #[test]
    fn before_the_view_loads_only_exempt_requesters_pass() {
        let unloaded = ViewHealth {
            loaded: false,
            reliable: false,
        };
        assert_eq!(decide("bob", &[], unloaded), Err(Denial::StaleView));
        assert_eq!(decide("system:node:worker-1", &[], unloaded), Ok(()));
        let kube_system = ["system:serviceaccounts:kube-system".to_string()];
        assert_eq!(
            decide(
                "system:serviceaccount:kube-system:replicaset-controller",
                &kube_system,
                unloaded
            ),
            Ok(())
        );
    }
}
