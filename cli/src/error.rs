//! The plugin's errors and how they are printed. Local mistakes read like
//! tctl's (`error: at least one of the target fields must be set`), API
//! errors like kubectl's (`Error from server (Forbidden): ...`), so the
//! plugin feels like both tools it stands in for.

use deadbolt_api::resources::LockTargetSpec;
use kube::core::Status;

/// The reason kube puts on a `Status` it made up because the body was not one.
const UNPARSED_REASON: &str = "Failed to parse error data";

/// What the API server says for a path it does not serve, e.g. when the CRD is not installed.
const UNKNOWN_RESOURCE: &str = "the server could not find the requested resource";

/// Everything that can make `kubectl deadbolt` fail. Each variant maps to one
/// clear line on stderr and exit code 1.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No target flag was given (tctl's wording).
    #[error("at least one of the target fields must be set")]
    NoTarget,
    /// Both `--ttl` and `--expires` were given (tctl's wording).
    #[error("use only one of --ttl and --expires")]
    TtlAndExpires,
    /// `--ttl` is not a positive Go duration.
    #[error("invalid --ttl {value:?}: {reason}")]
    InvalidTtl {
        /// What the user typed.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// `--expires` is not an RFC 3339 time.
    #[error("invalid --expires {value:?}: {reason}")]
    InvalidExpires {
        /// What the user typed.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// `rm` was given something that cannot be a lock name.
    #[error("invalid lock name {name:?}: {reason}")]
    InvalidName {
        /// What the user typed.
        name: String,
        /// Why it cannot be a Kubernetes object name.
        reason: String,
    },
    /// `rm` named a lock that does not exist.
    #[error("lock {0:?} not found")]
    NotFound(String),
    /// `unlock` found no lock with exactly the given target.
    #[error("{}", no_match_message(target, others))]
    NoMatch {
        /// The target asked for (boxed: it is large and this variant is rare).
        target: Box<LockTargetSpec>,
        /// Locks whose target includes the asked-for fields plus others; they were left alone.
        others: Vec<String>,
    },
    /// The kubeconfig could not be read or does not name a usable cluster.
    #[error("{0}")]
    Kubeconfig(String),
    /// A client could not be built from the kubeconfig (TLS material, auth settings).
    #[error("{}", chain(.0))]
    Client(#[source] kube::Error),
    /// A request failed; API errors are rendered the way kubectl renders them.
    #[error("{}", chain(.0))]
    Kube(#[from] kube::Error),
    /// The API server could not be reached at all.
    #[error("Unable to connect to the server {server}: {}", connection_chain(.source))]
    Unreachable {
        /// The cluster URL from the kubeconfig.
        server: String,
        /// The transport error.
        #[source]
        source: kube::Error,
    },
    /// An MFA command's flags are unusable (checked before any I/O), or no caller credential was found.
    #[error("{0}")]
    MfaUsage(String),
    /// Talking to the MFA service, the security key or the credential files failed.
    #[error("{0}")]
    Mfa(#[from] crate::mfa::MfaError),
    /// Writing to stdout failed (e.g. a closed pipe).
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

impl Error {
    /// The line printed on stderr: `Error from server (Reason): ...` for API errors,
    /// `Unable to connect to the server ...` for transport errors, `error: ...` otherwise.
    pub fn render(&self) -> String {
        match self {
            Error::Kube(kube::Error::Api(status)) => render_status(status),
            Error::Kube(error @ (kube::Error::HyperError(_) | kube::Error::Service(_))) => {
                format!(
                    "Unable to connect to the server: {}",
                    connection_chain(error)
                )
            }
            Error::Unreachable { .. } => self.to_string(),
            _ => format!("error: {self}"),
        }
    }

    /// Names the server in transport errors, which kube's client cannot do itself.
    pub fn with_server(self, server: &str) -> Self {
        match self {
            Error::Kube(source @ (kube::Error::HyperError(_) | kube::Error::Service(_))) => {
                Error::Unreachable {
                    server: server.to_string(),
                    source,
                }
            }
            other => other,
        }
    }

    /// Whether this is the API server saying an object (not the whole resource type) does not exist.
    pub fn is_missing_object(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(status))
            if status.code == 404 && status.message != UNKNOWN_RESOURCE && status.reason != UNPARSED_REASON)
    }
}

/// `Error from server (Forbidden): locks.deadbolt.dev is forbidden: ...`, as kubectl prints a `Status`.
pub fn render_status(status: &Status) -> String {
    let message = if status.message.is_empty() {
        "an unknown error occurred"
    } else {
        status.message.as_str()
    };
    if status.code == 401 {
        return format!("error: You must be logged in to the server ({message})");
    }
    let reason = if status.reason.is_empty() || status.reason == UNPARSED_REASON {
        reason_for_code(status.code)
    } else {
        Some(status.reason.as_str())
    };
    let mut text = match reason {
        Some(reason) => format!("Error from server ({reason}): {message}"),
        None => format!("Error from server: {message}"),
    };
    if status.code == 404
        && (message == UNKNOWN_RESOURCE || message.starts_with("404 page not found"))
    {
        text.push_str(
            " (is Deadbolt installed? the locks.deadbolt.dev CustomResourceDefinition was not found)",
        );
    }
    text
}

/// The `metav1.StatusReason` an HTTP code stands for, for bodies that were not a `Status`.
fn reason_for_code(code: u16) -> Option<&'static str> {
    Some(match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Gone",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => return None,
    })
}

fn no_match_message(target: &LockTargetSpec, others: &[String]) -> String {
    let mut text = format!("no lock targets exactly {target}");
    if !others.is_empty() {
        text.push_str(&format!(
            "; these locks target it together with other fields and were left alone (remove them with `kubectl deadbolt rm NAME`): {}",
            others.join(", ")
        ));
    }
    text
}

/// An error and its sources joined with `: `, skipping a source whose text its parent already shows.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The transport error behind a failed request, without kube's `ServiceError:` wrapper.
fn connection_chain(error: &kube::Error) -> String {
    match std::error::Error::source(error) {
        Some(inner) => chain(inner),
        None => error.to_string(),
    }
}
