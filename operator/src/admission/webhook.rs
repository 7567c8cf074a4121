//! The webhook: settings, the view it decides on, and one entry point per endpoint.

use std::collections::HashSet;
use std::fmt;

use http::StatusCode;
use jiff::Timestamp;
use kube::core::admission::AdmissionResponse;

use super::enforcement::{self, ViewHealth, enforce_locks};
use super::exempt::Exemptions;
use super::identity::Requester;
use super::inject::{INJECT_ANNOTATION, InjectSettings, asks_for_injection, inject};
use super::mutate::mutate_lock;
use super::replica::FollowingReplica;
use super::review::{Refusal, Request, Verdict, decode, encode, verdict_response};
use super::validate_locks_and_users::validate_deadbolt;
use crate::admin::Readiness;
use crate::failure::Failure;
use crate::view::ViewStore;

/// The group every kube-system service account is in. Exempt by default: the
/// controller manager runs its controllers as kube-system service accounts.
pub const DEFAULT_EXEMPT_GROUP: &str = "system:serviceaccounts:kube-system";

/// The webhook's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /validate/deadbolt`: checks on Deadbolt resources.
    ValidateDeadbolt,
    /// `POST /validate/locks-enforcement`: locks on direct API access.
    EnforceLocks,
    /// `POST /mutate/locks`: the created-by stamp.
    MutateLocks,
    /// `POST /mutate/pods`: database sidecar injection.
    MutatePods,
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Self; 4] = [
        Self::ValidateDeadbolt,
        Self::EnforceLocks,
        Self::MutateLocks,
        Self::MutatePods,
    ];

    /// The path the webhook configuration's `clientConfig.service.path` names.
    pub fn path(self) -> &'static str {
        match self {
            Self::ValidateDeadbolt => "/validate/deadbolt",
            Self::EnforceLocks => "/validate/locks-enforcement",
            Self::MutateLocks => "/mutate/locks",
            Self::MutatePods => "/mutate/pods",
        }
    }

    /// The endpoint at `path`, ignoring the query (the API server adds `?timeout=`).
    pub fn from_path(path: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|endpoint| endpoint.path() == path)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

/// Whether the operator's view is up to date right now. In strict mode an
/// unreliable view refuses every non-exempt request with the stale-view message.
pub trait ViewReliability: Send + Sync + 'static {
    /// True while the view can be trusted.
    fn reliable(&self) -> bool;
}

/// The default: the view is reliable once the source has loaded it and while
/// every watch is healthy.
impl ViewReliability for Readiness {
    fn reliable(&self) -> bool {
        self.is_reliable()
    }
}

/// Any `Fn() -> bool`, e.g. a source's "watch connected" flag.
impl<F: Fn() -> bool + Send + Sync + 'static> ViewReliability for F {
    fn reliable(&self) -> bool {
        self()
    }
}

/// Who the webhook treats specially; every list comes from a flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// The operator's own ServiceAccount user name
    /// (`system:serviceaccount:NAMESPACE:NAME`): exempt from locks, and allowed
    /// to edit SSO and synced users.
    pub operator_username: Option<String>,
    /// The identity-provider sync's user names: allowed to edit SSO and synced users.
    pub idp_sync_users: Vec<String>,
    /// More user names exempt from lock enforcement.
    pub exempt_users: Vec<String>,
    /// Groups whose members are exempt from lock enforcement.
    pub exempt_groups: Vec<String>,
    /// What injected sidecars run; `None` refuses Pods that ask for one.
    pub injection: Option<InjectSettings>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            operator_username: None,
            idp_sync_users: Vec::new(),
            exempt_users: Vec::new(),
            exempt_groups: vec![DEFAULT_EXEMPT_GROUP.to_string()],
            injection: None,
        }
    }
}

type Clock = Box<dyn Fn() -> Timestamp + Send + Sync>;

/// Answers AdmissionReviews from the operator's view; every decision is an
/// in-memory lookup, so answers come back far inside the API server's timeout.
pub struct Webhook {
    view: FollowingReplica,
    readiness: Readiness,
    reliability: Box<dyn ViewReliability>,
    exemptions: Exemptions,
    editors: HashSet<String>,
    injection: Option<InjectSettings>,
    clock: Clock,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("exemptions", &self.exemptions)
            .field("editors", &self.editors)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// A webhook deciding on `store`'s view. `readiness` says when the view has
    /// loaded; it is also the default reliability hook.
    pub fn new(store: ViewStore, readiness: Readiness, settings: WebhookSettings) -> Self {
        let operator = settings.operator_username.into_iter();
        let editors = settings
            .idp_sync_users
            .into_iter()
            .chain(operator.clone())
            .filter(|name| !name.is_empty())
            .collect();
        let exemptions = Exemptions::new(
            settings.exempt_users.into_iter().chain(operator),
            settings.exempt_groups,
        );
        Self {
            view: FollowingReplica::new(store),
            reliability: Box::new(readiness.clone()),
            readiness,
            exemptions,
            editors,
            injection: settings.injection,
            clock: Box::new(Timestamp::now),
        }
    }

    /// Replaces the reliability hook, e.g. with one that turns false while the
    /// source's watch is down.
    pub fn with_reliability(mut self, reliability: impl ViewReliability) -> Self {
        self.reliability = Box::new(reliability);
        self
    }

    /// Replaces the clock, so tests can pin "now".
    pub fn with_clock(mut self, clock: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Answers one AdmissionReview body with the AdmissionReview JSON to send
    /// back, or the 400 a malformed body deserves.
    pub fn answer(&self, endpoint: Endpoint, body: &[u8]) -> Result<Vec<u8>, Failure> {
        let request = decode(body)?;
        encode(self.respond(endpoint, &request)?)
    }

    /// Decides one request.
    pub fn respond(
        &self,
        endpoint: Endpoint,
        request: &Request,
    ) -> Result<AdmissionResponse, Failure> {
        let response = match endpoint {
            Endpoint::ValidateDeadbolt => verdict_response(request, self.validate(request)),
            Endpoint::EnforceLocks => verdict_response(request, self.enforce(request)),
            Endpoint::MutateLocks => patch_response(request, Ok(mutate_lock(request)))?,
            Endpoint::MutatePods => patch_response(request, self.inject(request))?,
        };
        log(endpoint, request, &response);
        Ok(response)
    }

    fn validate(&self, request: &Request) -> Verdict {
        let now = (self.clock)();
        let loaded = self.readiness.is_ready();
        self.view
            .read(|view| validate_deadbolt(request, &self.editors, loaded.then_some(view), now))
    }

    fn enforce(&self, request: &Request) -> Verdict {
        let requester = Requester::of(&request.user_info);
        let health = ViewHealth {
            loaded: self.readiness.is_ready(),
            reliable: self.reliability.reliable(),
        };
        let now = (self.clock)();
        self.view
            .read(|view| enforce_locks(&requester, view, &self.exemptions, health, now))
            .map(|()| Vec::new())
            .map_err(enforcement::refusal)
    }

    fn inject(&self, request: &Request) -> Result<Option<json_patch::Patch>, Refusal> {
        match &self.injection {
            Some(settings) => inject(request, settings),
            None if asks_for_injection(request) => Err(Refusal::invalid(format!(
                "{INJECT_ANNOTATION}: this Deadbolt operator does not inject sidecars \
                 (it runs without --inject-image)"
            ))),
            None => Ok(None),
        }
    }
}

/// Allows `request`, with `patch` when there is one; a refusal denies it.
fn patch_response(
    request: &Request,
    patch: Result<Option<json_patch::Patch>, Refusal>,
) -> Result<AdmissionResponse, Failure> {
    let patch = match patch {
        Ok(patch) => patch,
        Err(refusal) => return Ok(verdict_response(request, Err(refusal))),
    };
    let response = AdmissionResponse::from(request);
    let Some(patch) = patch else {
        return Ok(response);
    };
    response.with_patch(patch).map_err(|error| Failure {
        code: StatusCode::INTERNAL_SERVER_ERROR,
        reason: "InternalError",
        message: error.to_string(),
    })
}

fn log(endpoint: Endpoint, request: &Request, response: &AdmissionResponse) {
    let user = request.user_info.username.as_deref().unwrap_or_default();
    let resource = &request.resource.resource;
    let subresource = request.sub_resource.as_deref().unwrap_or_default();
    if response.allowed {
        tracing::debug!(%endpoint, uid = %request.uid, user, operation = ?request.operation,
            resource, subresource, name = %request.name, "admission request allowed");
    } else {
        tracing::info!(%endpoint, uid = %request.uid, user, operation = ?request.operation,
            resource, subresource, name = %request.name, namespace = ?request.namespace,
            reason = %response.result.message, "admission request denied");
    }
}
