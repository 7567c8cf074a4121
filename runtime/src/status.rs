//! Kubernetes `Status` objects for refusals, built once for every process:
//! the operator's lock-view, webhook and MFA endpoints and the kube proxy all
//! answer `kubectl`-style clients with the same body, which they print as is
//! (`Error from server (Forbidden): …`).

use http::StatusCode;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;

/// The `StatusReason` Kubernetes uses for a code.
pub fn reason(code: StatusCode) -> &'static str {
    match code {
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::UNAUTHORIZED => "Unauthorized",
        StatusCode::FORBIDDEN => "Forbidden",
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
        StatusCode::CONFLICT => "Conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "RequestEntityTooLarge",
        StatusCode::TOO_MANY_REQUESTS => "TooManyRequests",
        StatusCode::GATEWAY_TIMEOUT => "Timeout",
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY => "ServiceUnavailable",
        _ => "InternalError",
    }
}

/// A failure `Status` with `code`, its reason and `message`.
pub fn failure(code: StatusCode, message: &str) -> Status {
    Status {
        code: Some(i32::from(code.as_u16())),
        message: Some(message.to_string()),
        reason: Some(reason(code).to_string()),
        status: Some("Failure".into()),
        ..Status::default()
    }
}

/// The same as JSON, `kind` and `apiVersion` included.
pub fn failure_json(code: StatusCode, message: &str) -> String {
    serde_json::to_string(&failure(code, message)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_a_kubernetes_status() {
        let body: serde_json::Value =
            serde_json::from_str(&failure_json(StatusCode::UNAUTHORIZED, "no credentials"))
                .unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "reason": "Unauthorized", "code": 401, "message": "no credentials",
            })
        );
        assert_eq!(reason(StatusCode::TOO_MANY_REQUESTS), "TooManyRequests");
    }
}
