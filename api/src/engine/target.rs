use std::fmt;

use serde::{Deserialize, Serialize};

use crate::resources::LockTargetSpec;

/// One lockable attribute. The order is Teleport's `LockTarget` field order,
/// which is also the order fields appear in a lock message.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub enum TargetKind {
    /// A user name.
    User,
    /// An AccessRole name.
    Role,
    /// A login (OS or database user).
    Login,
    /// An MFA device UUID.
    MfaDevice,
    /// A Windows desktop name.
    WindowsDesktop,
    /// An access request id.
    AccessRequest,
    /// A trusted device id.
    Device,
    /// A proxy's server id.
    ServerId,
}

impl TargetKind {
    /// Every kind, in message order.
    pub const ALL: [TargetKind; 8] = [
        Self::User,
        Self::Role,
        Self::Login,
        Self::MfaDevice,
        Self::WindowsDesktop,
        Self::AccessRequest,
        Self::Device,
        Self::ServerId,
    ];

    /// The label a lock message uses, matching Teleport's (`User`, `MFADevice`, `ServerID`, ...).
    pub fn label(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Role => "Role",
            Self::Login => "Login",
            Self::MfaDevice => "MFADevice",
            Self::WindowsDesktop => "WindowsDesktop",
            Self::AccessRequest => "AccessRequest",
            Self::Device => "Device",
            Self::ServerId => "ServerID",
        }
    }

    /// The field name in `Lock.spec.target` and the kubectl plugin flag stem.
    pub fn field(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Role => "role",
            Self::Login => "login",
            Self::MfaDevice => "mfaDevice",
            Self::WindowsDesktop => "windowsDesktop",
            Self::AccessRequest => "accessRequest",
            Self::Device => "device",
            Self::ServerId => "serverId",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A single-attribute target of an interaction, e.g. `User:"alice"`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// Which attribute.
    pub kind: TargetKind,
    /// Its value.
    pub value: String,
}

impl Target {
    /// A target of the given kind.
    pub fn new(kind: TargetKind, value: impl Into<String>) -> Self {
        Self {
            kind,
            value: value.into(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.label(), proto_text_quote(&self.value))
    }
}

impl LockTargetSpec {
    /// The value of one field.
    pub fn get(&self, kind: TargetKind) -> Option<&str> {
        match kind {
            TargetKind::User => self.user.as_deref(),
            TargetKind::Role => self.role.as_deref(),
            TargetKind::Login => self.login.as_deref(),
            TargetKind::MfaDevice => self.mfa_device.as_deref(),
            TargetKind::WindowsDesktop => self.windows_desktop.as_deref(),
            TargetKind::AccessRequest => self.access_request.as_deref(),
            TargetKind::Device => self.device.as_deref(),
            TargetKind::ServerId => self.server_id.as_deref(),
        }
    }

    /// A mutable handle on one field, so callers can fill a target kind by kind.
    pub fn field_mut(&mut self, kind: TargetKind) -> &mut Option<String> {
        match kind {
            TargetKind::User => &mut self.user,
            TargetKind::Role => &mut self.role,
            TargetKind::Login => &mut self.login,
            TargetKind::MfaDevice => &mut self.mfa_device,
            TargetKind::WindowsDesktop => &mut self.windows_desktop,
            TargetKind::AccessRequest => &mut self.access_request,
            TargetKind::Device => &mut self.device,
            TargetKind::ServerId => &mut self.server_id,
        }
    }

    /// The fields that are set and non-empty, in message order.
    pub fn fields(&self) -> impl Iterator<Item = (TargetKind, &str)> {
        TargetKind::ALL.into_iter().filter_map(|kind| {
            self.get(kind)
                .filter(|value| !value.is_empty())
                .map(|value| (kind, value))
        })
    }

    /// Whether no field is set; such a target matches nothing and is rejected by the schema.
    pub fn is_empty(&self) -> bool {
        self.fields().next().is_none()
    }
}

impl fmt::Display for LockTargetSpec {
    /// `User:"alice" Role:"dev"`: the form lock messages use, byte for byte
    /// Teleport's `strings.TrimSpace(proto.CompactTextString(&target))`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, (kind, value)) in self.fields().enumerate() {
            if position > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}:{}", kind.label(), proto_text_quote(value))?;
        }
        Ok(())
    }
}

/// Quotes a string as the protobuf text format does (`proto.CompactTextString`,
/// which Teleport's lock messages use): `\n`, `\r`, `\t`, `\"` and `\\` are
/// escaped, other printable ASCII is kept, and every other byte (UTF-8 included)
/// becomes a three-digit octal escape.
fn proto_text_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for byte in value.bytes() {
        match byte {
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(byte as char),
            other => out.push_str(&format!("\\{other:03o}")),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_the_protobuf_text_format() {
        assert_eq!(proto_text_quote("alice"), r#""alice""#);
        assert_eq!(proto_text_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(proto_text_quote("tab\there\x01"), r#""tab\there\001""#);
        assert_eq!(proto_text_quote("jürgen"), r#""j\303\274rgen""#);
        assert_eq!(proto_text_quote("it's"), r#""it's""#);
    }

    #[test]
    fn target_lists_fields_in_teleport_order() {
        let target = LockTargetSpec {
            server_id: Some("proxy-1".into()),
            role: Some("dev".into()),
            user: Some("alice".into()),
            ..Default::default()
        };
        assert_eq!(
            target.to_string(),
            r#"User:"alice" Role:"dev" ServerID:"proxy-1""#
        );
    }
}
