//! Impersonation, both ways. Clients may never impersonate through the proxy:
//! a request with any `Impersonate-*` header is refused, as a [`Guard`]
//! (discovery excepted: it is served as the authenticated user, the header
//! stripped, because kubectl cannot show a refusal there). Upstream, the proxy
//! speaks with its own credentials and impersonates the authenticated user:
//! `Impersonate-User`, one `Impersonate-Group` per group its credential and
//! roles give it ([`deadbolt_api::access::kubernetes_groups`]), and
//! `Impersonate-Extra-*` for the Deadbolt attributes the API server's audit
//! log should carry.
//!
//! A ServiceAccount impersonated without any `Impersonate-Group` gets its two
//! groups from the API server itself. So when those are exactly its groups,
//! none is sent (each one is an authorization check in the API server's
//! impersonation filter), and when it has no group at all, `system:authenticated`
//! alone is, or the API server would add the two back.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use deadbolt_api::access::ALL_AUTHENTICATED;
use deadbolt_api::credential::CertIdentity;
use deadbolt_api::replica::ViewReplica;
use deadbolt_api::service_account::{group_names, split_username};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};

use super::body::ProxyBody;
use super::classify::RequestKind;
use super::guard::Guard;
use super::status;
use crate::audit::SessionFacts;
use crate::gate::Gate;

/// Every impersonation header starts with this (`Impersonate-User`, `-Group`, `-Uid`, `-Extra-*`).
const IMPERSONATE_PREFIX: &str = "impersonate-";

/// Extra key: the Deadbolt session id of the request.
pub const EXTRA_SESSION_ID: &str = "deadbolt.dev/session-id";
/// Extra key: the MFA device the credential was verified with.
pub const EXTRA_MFA_DEVICE: &str = "deadbolt.dev/mfa-device";
/// Extra key: the trusted device the credential was issued to.
pub const EXTRA_DEVICE: &str = "deadbolt.dev/device";
/// Extra key: the access requests the credential carries (one value each).
pub const EXTRA_ACCESS_REQUEST: &str = "deadbolt.dev/access-request";

/// The first `Impersonate-*` header of a client request, if it has any.
pub fn requested_impersonation(headers: &HeaderMap) -> Option<&HeaderName> {
    headers
        .keys()
        .find(|name| name.as_str().starts_with(IMPERSONATE_PREFIX))
}

/// The message a client gets for trying to impersonate.
pub fn refusal(header: &HeaderName) -> String {
    format!(
        "impersonation is not allowed through the Deadbolt proxy (the request has a {header} header): the proxy acts as the user it authenticated"
    )
}

/// Who the proxy asks the API server to act as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Impersonation {
    /// `Impersonate-User`.
    pub user: String,
    /// `Impersonate-Group` values, sorted.
    pub groups: Vec<String>,
    /// `Impersonate-Extra-<key>` values, in order.
    pub extra: Vec<(&'static str, String)>,
}

impl Impersonation {
    /// The impersonation of `principal`, whose AccessRoles are `roles`, with
    /// the groups the access rules give it at a proxy with `labels`. A
    /// registered session's `session_id` goes along as an extra, so the API
    /// server's audit log joins Deadbolt's; a short request has none, as
    /// Deadbolt does not audit it one by one when allowed, and every extra is
    /// one more authorization check in the API server's impersonation filter.
    pub fn new(
        principal: &CertIdentity,
        replica: &ViewReplica,
        roles: &[String],
        labels: &BTreeMap<String, String>,
        session_id: Option<&str>,
    ) -> Self {
        let groups = replica.kubernetes_groups(&principal.user, &principal.groups, roles, labels);

        let mut extra: Vec<_> = session_id
            .map(|id| (EXTRA_SESSION_ID, id.to_string()))
            .into_iter()
            .collect();
        extra.extend(
            principal
                .mfa_device
                .iter()
                .map(|device| (EXTRA_MFA_DEVICE, device.clone())),
        );
        extra.extend(
            principal
                .device
                .iter()
                .map(|device| (EXTRA_DEVICE, device.clone())),
        );
        extra.extend(
            principal
                .access_requests
                .iter()
                .map(|request| (EXTRA_ACCESS_REQUEST, request.clone())),
        );
        Self {
            user: principal.user.clone(),
            groups,
            extra,
        }
    }

    /// Adds the impersonation headers. Fails on a value no header can carry
    /// (a control character in a user or group name).
    pub fn apply(&self, headers: &mut HeaderMap) -> Result<(), String> {
        let value = |text: &str| {
            HeaderValue::from_str(text)
                .map_err(|_| format!("{text:?} cannot be sent in an impersonation header"))
        };
        headers.insert(
            HeaderName::from_static("impersonate-user"),
            value(&self.user)?,
        );
        let group = HeaderName::from_static("impersonate-group");
        match split_username(&self.user) {
            Some((namespace, _)) if self.groups == group_names(namespace) => {}
            Some(_) if self.groups.is_empty() => {
                headers.append(group, HeaderValue::from_static(ALL_AUTHENTICATED));
            }
            _ => {
                for name in &self.groups {
                    headers.append(group.clone(), value(name)?);
                }
            }
        }
        for (key, extra) in &self.extra {
            let name = HeaderName::from_bytes(extra_header_name(key).as_bytes())
                .map_err(|_| format!("invalid extra key {key:?}"))?;
            headers.append(name, value(extra)?);
        }
        Ok(())
    }
}

/// `impersonate-extra-<key>` with the key percent-encoded as client-go does
/// (every byte that is not a header token character, and `%` itself), e.g.
/// `deadbolt.dev/session-id` → `impersonate-extra-deadbolt.dev%2Fsession-id`.
/// The API server lower-cases and percent-decodes the key.
pub fn extra_header_name(key: &str) -> String {
    let mut name = String::from("impersonate-extra-");
    for byte in key.bytes() {
        let token_char = byte.is_ascii_alphanumeric() || b"!#$&'*+-.^_`|~".contains(&byte);
        if token_char {
            name.push(byte.to_ascii_lowercase() as char);
        } else {
            name.push_str(&format!("%{byte:02X}"));
        }
    }
    name
}

/// Refuses, with 403, every request but discovery that asks to impersonate.
#[derive(Clone)]
pub struct RefuseImpersonation {
    gate: Gate,
}

impl RefuseImpersonation {
    /// Refusals are audited through `gate`.
    pub fn new(gate: Gate) -> Self {
        Self { gate }
    }
}

impl Guard for RefuseImpersonation {
    fn check<B>(&self, request: &mut Request<B>) -> ControlFlow<Response<ProxyBody>> {
        let discovery = matches!(
            request.extensions().get::<RequestKind>(),
            Some(RequestKind::Discovery)
        );
        if !discovery && let Some(header) = requested_impersonation(request.headers()) {
            let message = refusal(header);
            if let Some(facts) = request.extensions().get::<SessionFacts>() {
                self.gate.reject(facts, &message);
            }
            return ControlFlow::Break(status::response(StatusCode::FORBIDDEN, &message));
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadbolt_api::protocol::{RoleRecord, Snapshot, ViewEvent};
    use deadbolt_api::resources::{AccessRoleSpec, RoleConditions};

    fn replica() -> ViewReplica {
        let role = |name: &str, allow: &[&str], deny: &[&str]| RoleRecord {
            name: name.into(),
            spec: AccessRoleSpec {
                allow: RoleConditions {
                    kubernetes_groups: allow.iter().map(|g| g.to_string()).collect(),
                    ..Default::default()
                },
                deny: RoleConditions {
                    kubernetes_groups: deny.iter().map(|g| g.to_string()).collect(),
                    ..Default::default()
                },
                ..Default::default()
            },
        };
        let mut replica = ViewReplica::default();
        replica
            .apply(ViewEvent::Snapshot(Snapshot {
                revision: 1,
                roles: vec![
                    role("dev", &["developers", "viewers"], &[]),
                    role("no-admin", &[], &["cluster-admins"]),
                    role("lockdown", &[], &["*"]),
                ],
                ..Default::default()
            }))
            .unwrap();
        replica
    }

    fn alice() -> CertIdentity {
        CertIdentity {
            user: "alice".into(),
            groups: vec![
                "cluster-admins".into(),
                deadbolt_api::access::ALL_AUTHENTICATED.into(),
                "sre".into(),
            ],
            mfa_device: Some("d6c06a18-e147-4232-9dfe-6f83a28d5850".into()),
            access_requests: vec!["req-1".into(), "req-2".into()],
            ..Default::default()
        }
    }

    #[test]
    fn groups_are_authenticated_plus_allowed_minus_denied() {
        let replica = replica();
        let dev = Impersonation::new(&alice(), &replica, &["dev".into()], &BTreeMap::new(), None);
        assert_eq!(
            dev.groups,
            ["cluster-admins", "developers", "sre", "viewers"]
        );
        let denied = Impersonation::new(
            &alice(),
            &replica,
            &["dev".into(), "no-admin".into(), "unknown".into()],
            &BTreeMap::new(),
            None,
        );
        assert_eq!(denied.groups, ["developers", "sre", "viewers"]);
        let none = Impersonation::new(
            &alice(),
            &replica,
            &["dev".into(), "lockdown".into()],
            &BTreeMap::new(),
            None,
        );
        assert!(none.groups.is_empty());
    }

    #[test]
    fn headers_carry_user_groups_and_encoded_extras() {
        let replica = replica();
        let impersonation = Impersonation::new(
            &alice(),
            &replica,
            &["dev".into()],
            &BTreeMap::new(),
            Some("sid-1"),
        );
        let mut headers = HeaderMap::new();
        impersonation.apply(&mut headers).unwrap();
        assert_eq!(headers["impersonate-user"], "alice");
        let groups: Vec<_> = headers.get_all("impersonate-group").iter().collect();
        assert_eq!(groups.len(), 4);
        assert_eq!(
            headers["impersonate-extra-deadbolt.dev%2Fsession-id"],
            "sid-1"
        );
        assert_eq!(
            headers["impersonate-extra-deadbolt.dev%2Fmfa-device"],
            "d6c06a18-e147-4232-9dfe-6f83a28d5850"
        );
        let requests: Vec<_> = headers
            .get_all("impersonate-extra-deadbolt.dev%2Faccess-request")
            .iter()
            .collect();
        assert_eq!(requests, ["req-1", "req-2"]);

        // A short request, not a registered session, carries no session id.
        let short = Impersonation::new(&alice(), &replica, &["dev".into()], &BTreeMap::new(), None);
        let mut short_headers = HeaderMap::new();
        short.apply(&mut short_headers).unwrap();
        assert!(!short_headers.contains_key("impersonate-extra-deadbolt.dev%2Fsession-id"));
        assert_eq!(
            short_headers["impersonate-extra-deadbolt.dev%2Fmfa-device"],
            "d6c06a18-e147-4232-9dfe-6f83a28d5850"
        );

        let mut bad = impersonation.clone();
        bad.user = "new\nline".into();
        assert!(bad.apply(&mut HeaderMap::new()).is_err());
    }

    #[test]
    fn a_service_account_is_sent_exactly_the_groups_the_api_server_would_give_it() {
        let replica = replica();
        let headers = |user: &str, groups: &[&str], roles: &[&str]| {
            let principal = CertIdentity {
                user: user.into(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                ..Default::default()
            };
            let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
            let mut headers = HeaderMap::new();
            Impersonation::new(&principal, &replica, &roles, &BTreeMap::new(), None)
                .apply(&mut headers)
                .unwrap();
            let sent: Vec<String> = headers
                .get_all("impersonate-group")
                .iter()
                .map(|value| value.to_str().unwrap().to_string())
                .collect();
            sent
        };
        let robot = "system:serviceaccount:shop:robot";
        let own = [
            "system:serviceaccounts",
            "system:serviceaccounts:shop",
            ALL_AUTHENTICATED,
        ];
        // Its own two groups: none sent, the API server adds them.
        assert!(headers(robot, &own, &[]).is_empty());
        // More than those (a role's group), or fewer: all of them, named.
        assert_eq!(
            headers(robot, &own, &["dev"]),
            [
                "developers",
                "system:serviceaccounts",
                "system:serviceaccounts:shop",
                "viewers"
            ]
        );
        assert_eq!(
            headers(robot, &["system:serviceaccounts"], &[]),
            ["system:serviceaccounts"]
        );
        // Every group denied: naming none would give it its two back.
        assert_eq!(headers(robot, &own, &["lockdown"]), [ALL_AUTHENTICATED]);
        // The groups of another namespace are not its own.
        assert_eq!(
            headers(
                "system:serviceaccount:web:robot",
                &["system:serviceaccounts", "system:serviceaccounts:shop"],
                &[]
            ),
            ["system:serviceaccounts", "system:serviceaccounts:shop"]
        );
        // A name the API server reads as a plain user: its groups, named;
        // none when it has none (the API server adds none of its own).
        let plain = "system:serviceaccount:Shop:robot";
        assert_eq!(
            headers(plain, &["system:serviceaccounts"], &[]),
            ["system:serviceaccounts"]
        );
        assert!(headers(plain, &own, &["lockdown"]).is_empty());
        assert!(headers("alice", &[], &[]).is_empty());
    }

    #[test]
    fn extra_keys_are_escaped_like_client_go() {
        assert_eq!(
            extra_header_name("deadbolt.dev/session-id"),
            "impersonate-extra-deadbolt.dev%2Fsession-id"
        );
        assert_eq!(extra_header_name("a%b c"), "impersonate-extra-a%25b%20c");
    }

    #[test]
    fn any_impersonate_header_is_noticed() {
        let mut headers = HeaderMap::new();
        headers.insert("accept", HeaderValue::from_static("*/*"));
        assert!(requested_impersonation(&headers).is_none());
        headers.insert("impersonate-extra-x", HeaderValue::from_static("y"));
        assert_eq!(
            requested_impersonation(&headers).map(HeaderName::as_str),
            Some("impersonate-extra-x")
        );
    }
}
