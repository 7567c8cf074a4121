//! How a Deadbolt client certificate carries an identity, so the operator that
//! issues certificates and the proxies that read them agree without sharing code
//! beyond this file. Like Kubernetes client certificates, the subject's common
//! name is the user, and organizations are read as groups (a proxy's
//! certificate is marked so). Deadbolt writes a user's groups, and its other
//! attributes, as `deadbolt:` URI subject alternative names: a subject holds
//! one organization per certificate in the issuing library, and a user may
//! have many groups.

use crate::engine::Identity;

/// The organization of the certificates proxies subscribe to the lock view with.
pub const PROXY_GROUP: &str = "deadbolt:proxies";

/// The common name of a CA: `name` and a suffix from its public key, so two
/// CAs (two installations, or two test CAs) never share a subject and a
/// certificate from the other one fails as an unknown issuer, not as a bad
/// signature.
pub fn ca_common_name(name: &str, public_key: &[u8]) -> String {
    let id: String = public_key
        .iter()
        .skip(1)
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("{name} {id}")
}

const GROUP: &str = "deadbolt:group:";
const ROLE: &str = "deadbolt:role:";
const MFA_DEVICE: &str = "deadbolt:mfa-device:";
const DEVICE: &str = "deadbolt:device:";
const ACCESS_REQUEST: &str = "deadbolt:access-request:";
const MFA_VERIFIED: &str = "deadbolt:mfa-verified:";
const TARGET: &str = "deadbolt:target:";

/// An identity as read from, or written into, a Deadbolt client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertIdentity {
    /// Subject common name.
    pub user: String,
    /// Groups: subject organizations and `deadbolt:group:<name>` URIs.
    pub groups: Vec<String>,
    /// `deadbolt:role:<name>` URIs: roles granted by the certificate itself.
    pub roles: Vec<String>,
    /// `deadbolt:mfa-device:<uuid>`: the device the certificate's MFA check used.
    pub mfa_device: Option<String>,
    /// `deadbolt:device:<id>`: the trusted device the certificate was issued to.
    pub device: Option<String>,
    /// `deadbolt:access-request:<id>` URIs.
    pub access_requests: Vec<String>,
    /// `deadbolt:mfa-verified:<unix seconds>`: when the MFA service verified
    /// `mfa_device`. Only certificates from the MFA service carry it, and only
    /// they satisfy per-session MFA ([`crate::mfa`]).
    pub mfa_verified_at: Option<i64>,
    /// `deadbolt:target:<server id>`: the one proxy the certificate is good for.
    pub target: Option<String>,
}

impl CertIdentity {
    /// Reads the identity from a certificate's subject CN, organizations and URI SANs.
    /// URIs outside the `deadbolt:` scheme are ignored.
    pub fn from_parts<'a>(
        common_name: &str,
        organizations: impl IntoIterator<Item = &'a str>,
        uris: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut identity = Self {
            user: common_name.to_string(),
            groups: organizations.into_iter().map(str::to_string).collect(),
            ..Default::default()
        };
        for uri in uris {
            if let Some(group) = uri.strip_prefix(GROUP) {
                if !identity.groups.iter().any(|known| known == group) {
                    identity.groups.push(group.to_string());
                }
            } else if let Some(role) = uri.strip_prefix(ROLE) {
                identity.roles.push(role.to_string());
            } else if let Some(device) = uri.strip_prefix(MFA_DEVICE) {
                identity.mfa_device = Some(device.to_string());
            } else if let Some(device) = uri.strip_prefix(DEVICE) {
                identity.device = Some(device.to_string());
            } else if let Some(request) = uri.strip_prefix(ACCESS_REQUEST) {
                identity.access_requests.push(request.to_string());
            } else if let Some(at) = uri.strip_prefix(MFA_VERIFIED) {
                // Unreadable means unverified, never "verified at some time".
                identity.mfa_verified_at = at.parse().ok();
            } else if let Some(target) = uri.strip_prefix(TARGET) {
                identity.target = Some(target.to_string());
            }
        }
        identity
    }

    /// The URI SANs to write into a certificate for this identity, groups included.
    pub fn uris(&self) -> Vec<String> {
        let groups = self.groups.iter().map(|g| format!("{GROUP}{g}"));
        let roles = self.roles.iter().map(|r| format!("{ROLE}{r}"));
        let mfa = self.mfa_device.iter().map(|d| format!("{MFA_DEVICE}{d}"));
        let device = self.device.iter().map(|d| format!("{DEVICE}{d}"));
        let requests = self
            .access_requests
            .iter()
            .map(|r| format!("{ACCESS_REQUEST}{r}"));
        let verified = self
            .mfa_verified_at
            .iter()
            .map(|at| format!("{MFA_VERIFIED}{at}"));
        let target = self.target.iter().map(|t| format!("{TARGET}{t}"));
        groups
            .chain(roles)
            .chain(mfa)
            .chain(device)
            .chain(requests)
            .chain(verified)
            .chain(target)
            .collect()
    }

    /// Whether this is a proxy's certificate rather than a user's.
    pub fn is_proxy(&self) -> bool {
        self.groups.iter().any(|g| g == PROXY_GROUP)
    }

    /// The lock-engine identity, given the roles resolved from the view and the login in use.
    pub fn to_identity(&self, roles: Vec<String>, login: Option<String>) -> Identity {
        Identity {
            user: self.user.clone(),
            roles,
            login,
            mfa_device: self.mfa_device.clone(),
            device: self.device.clone(),
            access_requests: self.access_requests.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_certificate_parts() {
        let identity = CertIdentity {
            user: "alice".into(),
            groups: vec!["sre".into(), "oncall".into()],
            roles: vec!["dev".into()],
            mfa_device: Some("d6c06a18-e147-4232-9dfe-6f83a28d5850".into()),
            device: Some("laptop".into()),
            access_requests: vec!["req-1".into()],
            mfa_verified_at: Some(1_790_000_000),
            target: Some("db-prod".into()),
        };
        let uris = identity.uris();
        let mut with_foreign = uris.clone();
        with_foreign.push("spiffe://cluster/ns/x".into());
        let back = CertIdentity::from_parts("alice", [], with_foreign.iter().map(String::as_str));
        assert_eq!(back, identity);
        // Organizations count as groups too, once each.
        let both =
            CertIdentity::from_parts("alice", ["sre", "ops"], uris.iter().map(String::as_str));
        assert_eq!(both.groups, ["sre", "ops", "oncall"]);
        assert!(!back.is_proxy());
    }
}
