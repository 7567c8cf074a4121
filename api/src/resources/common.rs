use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a proxy does when its lock view can no longer be trusted (Teleport's `locking_mode`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum LockingMode {
    /// Keep enforcing the last view the proxy had.
    #[default]
    BestEffort,
    /// Refuse new interactions and cut live ones until the view is fresh again.
    Strict,
}

impl fmt::Display for LockingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BestEffort => "best_effort",
            Self::Strict => "strict",
        })
    }
}

/// How strongly a session must be backed by a fresh MFA check (Teleport's `require_session_mfa`).
///
/// Serialised as the strings `"false"`, `"true"`, `"hardware_key"` and `"hardware_key_touch"`;
/// a YAML boolean is accepted too, because that is how Teleport manifests spell it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequireSessionMfa {
    /// No per-session MFA.
    #[default]
    Off,
    /// Any registered MFA device.
    Session,
    /// A hardware key.
    HardwareKey,
    /// A hardware key, touched for every session.
    HardwareKeyTouch,
}

impl RequireSessionMfa {
    const VALUES: [&'static str; 4] = ["false", "true", "hardware_key", "hardware_key_touch"];

    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        Self::VALUES[self as usize]
    }

    /// Whether any MFA check is required at all.
    pub fn is_required(self) -> bool {
        self != Self::Off
    }
}

impl fmt::Display for RequireSessionMfa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RequireSessionMfa {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RequireSessionMfa {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Bool(false) => Ok(Self::Off),
            Raw::Bool(true) => Ok(Self::Session),
            Raw::Text(text) => match text.as_str() {
                "false" | "off" => Ok(Self::Off),
                "true" | "session" => Ok(Self::Session),
                "hardware_key" => Ok(Self::HardwareKey),
                "hardware_key_touch" => Ok(Self::HardwareKeyTouch),
                other => Err(serde::de::Error::custom(format!(
                    "unknown requireSessionMfa {other:?}, expected one of {:?}",
                    Self::VALUES
                ))),
            },
        }
    }
}

impl JsonSchema for RequireSessionMfa {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RequireSessionMfa".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "enum": Self::VALUES,
            "description": "Per-session MFA: \"false\", \"true\", \"hardware_key\" or \"hardware_key_touch\" (quote true and false in YAML)."
        })
    }
}

/// The status (`"True"`, `"False"`, `"Unknown"`) of the condition of the given type, if present.
pub fn condition_status<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a str> {
    conditions
        .iter()
        .find(|condition| condition.type_ == type_)
        .map(|condition| condition.status.as_str())
}
