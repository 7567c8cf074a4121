//! What the kube proxy sends as a Kubernetes `Status`
//! ([`deadbolt_runtime::status`]): the body of every refusal, and the event a
//! cut watch ends with (JSON or protobuf), so kubectl prints the reason as it
//! is (`Error from server (Forbidden): lock targeting User:"alice" is in force: …`).

use bytes::Bytes;
use deadbolt_runtime::status;
use http::{Response, StatusCode, header};

use super::body::{ProxyBody, full};

/// The `Status` as bytes.
pub fn failure_bytes(code: StatusCode, message: &str) -> Bytes {
    Bytes::from(status::failure_json(code, message))
}

/// A refusal: the HTTP status and a `Status` body with `message`.
pub fn response(code: StatusCode, message: &str) -> Response<ProxyBody> {
    let mut response = Response::new(full(failure_bytes(code, message)));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// A watch `ERROR` event carrying a Forbidden `Status`, newline-terminated
/// like every event of a JSON watch stream.
pub fn watch_error_event(message: &str) -> Bytes {
    // `type` first, as the API server writes events.
    let status = status::failure_json(StatusCode::FORBIDDEN, message);
    Bytes::from(format!("{{\"type\":\"ERROR\",\"object\":{status}}}\n"))
}

/// The same event for a protobuf watch stream: a length-prefixed
/// `meta.v1.WatchEvent` whose object is a `runtime.Unknown`-wrapped
/// `meta.v1.Status` (the `k8s\0` envelope), as the API server frames them.
pub fn protobuf_watch_error_event(message: &str) -> Bytes {
    let code = StatusCode::FORBIDDEN;
    let mut status = Vec::new();
    proto_bytes(&mut status, 1, &[]); // metadata: an empty ListMeta
    proto_bytes(&mut status, 2, b"Failure");
    proto_bytes(&mut status, 3, message.as_bytes());
    proto_bytes(&mut status, 4, status::reason(code).as_bytes());
    proto_varint_field(&mut status, 6, u64::from(code.as_u16()));

    let mut type_meta = Vec::new();
    proto_bytes(&mut type_meta, 1, b"v1");
    proto_bytes(&mut type_meta, 2, b"Status");
    let mut unknown = b"k8s\0".to_vec();
    proto_bytes(&mut unknown, 1, &type_meta);
    proto_bytes(&mut unknown, 2, &status);
    proto_bytes(&mut unknown, 3, b"");
    proto_bytes(&mut unknown, 4, b"");

    let mut raw_extension = Vec::new();
    proto_bytes(&mut raw_extension, 1, &unknown);
    let mut event = Vec::new();
    proto_bytes(&mut event, 1, b"ERROR");
    proto_bytes(&mut event, 2, &raw_extension);

    let mut framed = (event.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&event);
    Bytes::from(framed)
}

fn proto_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn proto_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    proto_varint(out, field << 3 | 2);
    proto_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn proto_varint_field(out: &mut Vec<u8>, field: u64, value: u64) {
    proto_varint(out, field << 3);
    proto_varint(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_a_forbidden_status_with_the_exact_message() {
        let message = r#"lock targeting User:"alice" is in force: Suspicious activity."#;
        let value: serde_json::Value =
            serde_json::from_slice(&failure_bytes(StatusCode::FORBIDDEN, message)).unwrap();
        assert_eq!(value["reason"], "Forbidden");
        assert_eq!(value["code"], 403);
        assert_eq!(value["message"], message);
        let event = watch_error_event(message);
        assert!(event.starts_with(br#"{"type":"ERROR","object":{"#));
        assert!(event.ends_with(b"}\n"));
        let parsed: serde_json::Value = serde_json::from_slice(&event).unwrap();
        assert_eq!(parsed["type"], "ERROR");
        assert_eq!(parsed["object"]["message"], message);
    }

    #[test]
    fn the_protobuf_event_is_length_prefixed_and_carries_the_message() {
        let event = protobuf_watch_error_event("locked");
        let length = u32::from_be_bytes([event[0], event[1], event[2], event[3]]) as usize;
        assert_eq!(length, event.len() - 4);
        // WatchEvent.type = "ERROR"
        assert_eq!(&event[4..11], b"\x0a\x05ERROR");
        let text = String::from_utf8_lossy(&event);
        assert!(text.contains("k8s\0"));
        assert!(text.contains("locked"));
        assert!(text.contains("Forbidden"));
    }
}
