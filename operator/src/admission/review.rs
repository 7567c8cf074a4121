//! Decoding the AdmissionReview the API server sends, and encoding the answer.

use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use http::StatusCode;
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, META_API_VERSION_V1, META_KIND,
};
use kube::core::{DynamicObject, Status};
use serde::Serialize;

use crate::failure::Failure;

/// An admission request: any resource, as the API server sent it.
pub type Request = AdmissionRequest<DynamicObject>;

/// The largest AdmissionReview read. An UPDATE carries `object` and `oldObject`,
/// each up to the API server's 3 MiB request limit, so 3 MiB would refuse real
/// updates of large objects; 8 MiB leaves room for both and the envelope.
pub const MAX_REVIEW_BYTES: usize = 8 * 1024 * 1024;

/// Why a request is refused: what the client reads, and the HTTP status and
/// Kubernetes reason the API server answers the client with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status the client gets (403 or 422).
    pub code: u16,
    /// The Kubernetes `StatusReason`.
    pub reason: &'static str,
    /// The message, shown after `admission webhook "…" denied the request: `.
    pub message: String,
    /// The lock behind the refusal, recorded as the audit annotation `lock`.
    pub lock: Option<String>,
}

impl Refusal {
    /// 403: this identity may not do this (a lock, a read-only user).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            code: 403,
            reason: "Forbidden",
            message: message.into(),
            lock: None,
        }
    }

    /// 422: the object itself is not acceptable (a field out of bounds).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: 422,
            reason: "Invalid",
            message: message.into(),
            lock: None,
        }
    }
}

/// What a validating endpoint decided: allowed (with warnings for the client), or refused.
pub type Verdict = Result<Vec<String>, Refusal>;

/// Reads an `admission.k8s.io/v1` AdmissionReview. Anything else is a 400
/// whose message says what is wrong, so a misconfigured webhook is easy to spot.
pub fn decode(body: &[u8]) -> Result<Request, Failure> {
    if body.len() > MAX_REVIEW_BYTES {
        return Err(too_large());
    }
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body).map_err(|error| {
        Failure::bad_request(format!(
            "the body is not a valid {META_API_VERSION_V1} AdmissionReview: {error}"
        ))
    })?;
    if review.types.api_version != META_API_VERSION_V1 || review.types.kind != META_KIND {
        return Err(Failure::bad_request(format!(
            "expected apiVersion {META_API_VERSION_V1:?} and kind {META_KIND:?}, got apiVersion {:?} \
             and kind {:?}; list only v1 in the webhook's admissionReviewVersions",
            review.types.api_version, review.types.kind
        )));
    }
    review
        .try_into()
        .map_err(|_| Failure::bad_request("the AdmissionReview has no request"))
}

/// The answer to a validating endpoint.
pub fn verdict_response(request: &Request, verdict: Verdict) -> AdmissionResponse {
    let mut response = AdmissionResponse::from(request);
    match verdict {
        Ok(warnings) => {
            if !warnings.is_empty() {
                response.warnings = Some(warnings);
            }
        }
        Err(refusal) => {
            response.allowed = false;
            response.result =
                Status::failure(&refusal.message, refusal.reason).with_code(refusal.code);
            if let Some(lock) = refusal.lock {
                response.audit_annotations.insert("lock".into(), lock);
            }
        }
    }
    response
}

/// The AdmissionReview JSON the API server expects back.
///
/// The patch goes out as a base64 string, which is how the API documents the
/// `[]byte` field; kube would write the bytes as an array of numbers.
pub fn encode(mut response: AdmissionResponse) -> Result<Vec<u8>, Failure> {
    let patch = response
        .patch
        .take()
        .map(|bytes| BASE64_STANDARD.encode(bytes));
    let review = WireReview {
        api_version: &response.types.api_version,
        kind: &response.types.kind,
        response: WireResponse {
            response: &response,
            patch,
        },
    };
    serde_json::to_vec(&review).map_err(|error| Failure {
        code: StatusCode::INTERNAL_SERVER_ERROR,
        reason: "InternalError",
        message: format!("cannot encode the AdmissionReview response: {error}"),
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireReview<'a> {
    api_version: &'a str,
    kind: &'a str,
    response: WireResponse<'a>,
}

#[derive(Serialize)]
struct WireResponse<'a> {
    #[serde(flatten)]
    response: &'a AdmissionResponse,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
}

/// The 400 for a body over [`MAX_REVIEW_BYTES`].
pub(super) fn too_large() -> Failure {
    Failure::bad_request(format!(
        "the AdmissionReview is larger than {} MiB",
        MAX_REVIEW_BYTES / (1024 * 1024)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{
        "uid":"u1","kind":{"group":"","version":"v1","kind":"ConfigMap"},
        "resource":{"group":"","version":"v1","resource":"configmaps"},
        "operation":"CREATE","userInfo":{"username":"alice"},"object":null,"oldObject":null}}"#;

    #[test]
    fn a_v1_review_decodes() {
        let request = decode(MINIMAL.as_bytes()).unwrap();
        assert_eq!(request.uid, "u1");
        assert_eq!(request.user_info.username.as_deref(), Some("alice"));
    }

    #[test]
    fn bad_bodies_are_clear_400s() {
        let garbage = decode(b"{not json").unwrap_err();
        assert_eq!(garbage.code, StatusCode::BAD_REQUEST);
        assert!(
            garbage
                .message
                .starts_with("the body is not a valid admission.k8s.io/v1 AdmissionReview: "),
            "{}",
            garbage.message
        );
        let old = MINIMAL.replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1");
        let message = decode(old.as_bytes()).unwrap_err().message;
        assert!(message.contains("admissionReviewVersions"), "{message}");
        let empty = decode(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#);
        assert_eq!(
            empty.unwrap_err().message,
            "the AdmissionReview has no request"
        );
    }

    #[test]
    fn patches_go_out_as_base64() {
        let request = decode(MINIMAL.as_bytes()).unwrap();
        let patch = json_patch::Patch(vec![]);
        let response = AdmissionResponse::from(&request).with_patch(patch).unwrap();
        assert_eq!(
            String::from_utf8(encode(response).unwrap()).unwrap(),
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u1","allowed":true,"status":{},"patchType":"JSONPatch","patch":"W10="}}"#
        );
    }

    #[test]
    fn refusals_carry_code_reason_message_and_lock() {
        let request = decode(MINIMAL.as_bytes()).unwrap();
        let mut refusal = Refusal::forbidden("no");
        refusal.lock = Some("l1".into());
        let response = verdict_response(&request, Err(refusal));
        let json: serde_json::Value = serde_json::from_slice(&encode(response).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {
                    "uid": "u1",
                    "allowed": false,
                    "status": {"status": "Failure", "code": 403, "reason": "Forbidden", "message": "no"},
                    "auditAnnotations": {"lock": "l1"}
                }
            })
        );
    }
}
