//! Error replies as Kubernetes `Status` objects, so `kubectl`-style clients and
//! the proxies can show the server's message as is.

use http::{Response, StatusCode, header};
use serde::Serialize;

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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusBody<'a> {
    kind: &'static str,
    api_version: &'static str,
    status: &'static str,
    reason: &'a str,
    code: u16,
    message: &'a str,
}

impl Failure {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 401: no credentials, or credentials that do not check out.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }

    /// 403: authenticated, but not allowed to do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    /// 429: too many of something at once.
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", message)
    }

    /// 404: no such endpoint.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    /// 405: the endpoint exists but not for this method.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", message)
    }

    /// 503: try again later (not ready yet, or a dependency is down).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            message,
        )
    }

    /// The `Status` JSON body.
    pub fn body(&self) -> String {
        let body = StatusBody {
            kind: "Status",
            api_version: "v1",
            status: "Failure",
            reason: self.reason,
            code: self.code.as_u16(),
            message: &self.message,
        };
        serde_json::to_string(&body).unwrap_or_default()
    }

    /// The whole HTTP response.
    pub fn into_response(self) -> Response<ChannelBody> {
        let mut response = Response::new(ChannelBody::full(self.body()));
        *response.status_mut() = self.code;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_body_is_a_kubernetes_status() {
        let body = Failure::unauthorized("no credentials").body();
        assert_eq!(
            body,
            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Unauthorized","code":401,"message":"no credentials"}"#
        );
    }
}
