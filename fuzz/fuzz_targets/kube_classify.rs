#![no_main]
//! `deadbolt_sidecar::kube::classify` (the kube proxy's decision of what a
//! request is, on the path and query as the API server decodes them) and
//! `kube::canonical::Target` on any request target. The first byte picks the
//! method and whether the request asks for a WebSocket upgrade; the rest is
//! the request target, as a client could send it.
//!
//! It checks that nothing panics, and that the decision depends only on what
//! the API server will read:
//! - a target `Target::parse` refuses is classified `BadRequest`;
//! - a target it accepts decodes exactly as a plain percent-decode of the
//!   whole path split on `/` (no encoded `/` can move a boundary), with no
//!   `.`/`..` or empty segment;
//! - re-encoding the decoded target differently (every byte escaped, or none
//!   that need not be) gives the same decision;
//! - `Discovery` is only ever a `GET`/`HEAD` of one of the exact discovery
//!   paths.

use deadbolt_sidecar::kube::canonical::Target;
use deadbolt_sidecar::kube::classify::{RequestKind, classify};
use http::{HeaderMap, HeaderValue, Method, Uri, header};
use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode;

const METHODS: [Method; 6] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
];

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let method = METHODS[usize::from(control) % METHODS.len()].clone();
    let mut headers = HeaderMap::new();
    if control & 0x80 != 0 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let Ok(uri) = text.parse::<Uri>() else {
        return;
    };
    if uri.scheme().is_some() || uri.authority().is_some() {
        return;
    }
    let kind = classify(&method, &uri, &headers);
    let parsed = Target::parse(uri.path(), uri.query());
    let Ok(target) = parsed else {
        assert!(
            matches!(kind, RequestKind::BadRequest(_)),
            "{text:?} is ambiguous but classified {kind:?}"
        );
        return;
    };

    // The segments are what a naive decode of the whole path gives (the
    // percent-encoding crate's, an independent decoder).
    let naive: Vec<u8> = percent_decode(uri.path().as_bytes()).collect();
    let naive = String::from_utf8(naive).expect("accepted paths decode to UTF-8");
    let trimmed = naive.strip_prefix('/').unwrap_or(&naive);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let naive_segments: Vec<&str> = if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    };
    assert_eq!(target.parts(), naive_segments, "{text:?}");
    for segment in &target.segments {
        assert!(!segment.is_empty() && segment != "." && segment != "..", "{text:?}");
    }

    // The same target spelled two other ways is decided the same way.
    for escape_all in [true, false] {
        let respelled = respell(&target, escape_all);
        let respelled_uri: Uri = respelled
            .parse()
            .unwrap_or_else(|error| panic!("{respelled:?} from {text:?}: {error}"));
        let again = classify(&method, &respelled_uri, &headers);
        assert_eq!(again, kind, "{text:?} respelled as {respelled:?}");
    }

    if kind == RequestKind::Discovery {
        assert!(method == Method::GET || method == Method::HEAD, "{text:?}");
        assert!(is_discovery(&target.parts()), "{text:?} is not a discovery path");
    }
});

fn is_discovery(parts: &[&str]) -> bool {
    matches!(
        parts,
        ["api"]
            | ["api", _]
            | ["apis"]
            | ["apis", _]
            | ["apis", _, _]
            | ["version"]
            | ["openapi", "v2"]
            | ["openapi", "v3"]
            | ["openapi", "v3", "api", _]
            | ["openapi", "v3", "apis", _]
            | ["openapi", "v3", "apis", _, _]
    )
}

/// The decoded target written out again, escaping every byte or only those
/// that must be escaped.
fn respell(target: &Target, escape_all: bool) -> String {
    let escape = |text: &str, query: bool| -> String {
        text.bytes()
            .map(|byte| {
                let plain = byte.is_ascii_alphanumeric() || b"-._~".contains(&byte);
                let plain = plain || (!query && b"!$&'()*+,;=:@".contains(&byte));
                if plain && !escape_all {
                    (byte as char).to_string()
                } else {
                    format!("%{byte:02X}")
                }
            })
            .collect()
    };
    let mut out = String::new();
    for segment in &target.segments {
        out.push('/');
        out.push_str(&escape(segment, false));
    }
    if out.is_empty() {
        out.push('/');
    }
    if !target.query.is_empty() {
        out.push('?');
        let pairs: Vec<String> = target
            .query
            .iter()
            .map(|(key, value)| format!("{}={}", escape(key, true), escape(value, true)))
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}
