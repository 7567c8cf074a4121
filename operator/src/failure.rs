//! The operator's HTTP error replies (lock view, webhooks, MFA service): a
//! code, a reason and a message that says what to do, sent as a Kubernetes
//! `Status` ([`deadbolt_runtime::status`]) so clients show it as is.

use http::{Response, StatusCode};

use crate::body::ChannelBody;

/// A failed request: the HTTP status, the Kubernetes `reason`, and a message
/// that says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The HTTP status code.
    pub code: StatusCode,
    /// The Kubernetes `StatusReason`, e.g. `Unauthorized`.
    pub reason: &'static str,
    /// The human-readable explanation.
    pub message: String,
}

impl Failure {
    fn new(code: StatusCode, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: deadbolt_runtime::status::reason(code),
            message: message.into(),
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401: no credentials, or credentials that do not check out.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403: authenticated, but not allowed to do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 429: too many of something at once.
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, message)
    }

    /// 404: no such endpoint.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 405: the endpoint exists but not for this method.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, message)
    }

    /// 503: try again later (not ready yet, or a dependency is down).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// The `Status` JSON body.
    pub fn body(&self) -> String {
        deadbolt_runtime::status::failure_json(self.code, &self.message)
    }

    /// The whole HTTP response.
    pub fn into_response(self) -> Response<ChannelBody> {
        ChannelBody::response(self.code, "application/json", self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_body_is_a_kubernetes_status() {
        let body: serde_json::Value =
            serde_json::from_str(&Failure::unauthorized("no credentials").body()).unwrap();
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["reason"], "Unauthorized");
        assert_eq!(body["code"], 401);
        assert_eq!(body["message"], "no credentials");
    }
}
