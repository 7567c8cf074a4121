//! A request path and query as the API server will read them. The API server
//! routes on the percent-decoded path and reads query parameters after
//! decoding their keys and values (Go's `net/url`), so a proxy that looked at
//! the raw text could be told `/api/v1/namespaces/a/p%6Fds?%77atch=1` is
//! something other than the watch it is. Everything here is decoded the same
//! way, and every form whose reading could differ between readers is refused:
//! an encoded `/` inside a segment, `.` and `..` segments (encoded or not),
//! empty segments, NUL, invalid escapes or UTF-8, and `;` in the query (which
//! Go drops silently).

use std::fmt;

/// Why a request target is refused with 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ambiguous(pub String);

impl fmt::Display for Ambiguous {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A decoded request target.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    /// The path's segments, decoded; `/api/v1/pods` is `["api", "v1", "pods"]`.
    /// A single trailing slash is dropped, as the API server's request-info
    /// parsing trims it.
    pub segments: Vec<String>,
    /// Query parameters in order, keys and values decoded.
    pub query: Vec<(String, String)>,
}

impl Target {
    /// Parses a raw path and query.
    pub fn parse(path: &str, query: Option<&str>) -> Result<Self, Ambiguous> {
        Ok(Self {
            segments: segments(path)?,
            query: match query {
                Some(query) => parameters(query)?,
                None => Vec::new(),
            },
        })
    }

    /// The first value of a query parameter, as the API server's parameter
    /// decoding takes it.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// A boolean query parameter as the API server reads it: present, and
    /// its first value neither `0` nor `false` in any case (an empty value is true).
    pub fn flag(&self, name: &str) -> bool {
        self.parameter(name)
            .is_some_and(|value| value != "0" && !value.eq_ignore_ascii_case("false"))
    }

    /// The segments as string slices, for matching.
    pub fn parts(&self) -> Vec<&str> {
        self.segments.iter().map(String::as_str).collect()
    }
}

fn ambiguous(what: impl Into<String>) -> Ambiguous {
    Ambiguous(what.into())
}

/// Splits and decodes a path, refusing every form another reader could split
/// or resolve differently.
fn segments(path: &str) -> Result<Vec<String>, Ambiguous> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(ambiguous("the request path must start with /"));
    };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    rest.split('/')
        .map(|raw| {
            if raw.is_empty() {
                return Err(ambiguous(format!(
                    "the request path {path:?} has an empty segment"
                )));
            }
            let decoded = decode(raw, false)
                .map_err(|reason| ambiguous(format!("the request path {path:?} {reason}")))?;
            if decoded.contains('/') {
                return Err(ambiguous(format!(
                    "the request path {path:?} has an encoded / in a segment"
                )));
            }
            if decoded == "." || decoded == ".." {
                return Err(ambiguous(format!(
                    "the request path {path:?} has a {decoded:?} segment"
                )));
            }
            Ok(decoded)
        })
        .collect()
}

/// Splits and decodes a query as Go's `url.ParseQuery` does, refusing what it
/// would drop (`;` separators, invalid escapes) instead of guessing.
fn parameters(query: &str) -> Result<Vec<(String, String)>, Ambiguous> {
    let mut parameters = Vec::new();
    for pair in query.split('&') {
        if pair.contains(';') {
            return Err(ambiguous(
                "the query has a ';', which the API server ignores with its parameter; use '&'",
            ));
        }
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(key, true)
            .map_err(|reason| ambiguous(format!("the query parameter {pair:?} {reason}")))?;
        let value = decode(value, true)
            .map_err(|reason| ambiguous(format!("the query parameter {pair:?} {reason}")))?;
        parameters.push((key, value));
    }
    Ok(parameters)
}

/// Percent-decodes; in a query `+` is a space.
fn decode(text: &str, query: bool) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let digit = |at: usize| bytes.get(at).and_then(|byte| (*byte as char).to_digit(16));
                let (Some(high), Some(low)) = (digit(index + 1), digit(index + 2)) else {
                    return Err("has an invalid percent-escape".into());
                };
                decoded.push((high * 16 + low) as u8);
                index += 3;
            }
            b'+' if query => {
                decoded.push(b' ');
                index += 1;
            }
            byte => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    if decoded.contains(&0) {
        return Err("has a NUL byte".into());
    }
    String::from_utf8(decoded).map_err(|_| "is not UTF-8 once decoded".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(path: &str) -> Result<Vec<String>, Ambiguous> {
        Target::parse(path, None).map(|target| target.segments)
    }

    #[test]
    fn paths_decode_as_the_api_server_reads_them() {
        assert_eq!(
            parts("/api/v1/namespaces/a/p%6Fds").unwrap(),
            ["api", "v1", "namespaces", "a", "pods"]
        );
        assert_eq!(parts("/apis/apps/v1/").unwrap(), ["apis", "apps", "v1"]);
        assert_eq!(parts("/").unwrap(), Vec::<String>::new());
        assert_eq!(parts("/a+b").unwrap(), ["a+b"], "+ is literal in a path");
        assert_eq!(parts("/%41%e2%82%ac").unwrap(), ["A€"]);
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for path in [
            "api/v1",
            "/api/v1/namespaces/a/pods%2Fx",
            "/api/v1/namespaces/a/pods%2fx",
            "/api/v1/namespaces/a/../pods",
            "/api/v1/namespaces/a/%2e%2e/pods",
            "/api/v1/namespaces/a/%2E/pods",
            "/api/v1/./pods",
            "/api//v1/pods",
            "/api/v1/pods//",
            "//api/v1/pods",
            "/api/v1/pods%",
            "/api/v1/pods%2",
            "/api/v1/pods%zz",
            "/api/v1/pods%00",
            "/api/v1/pods%ff",
            "/api/v1/pods%+1",
        ] {
            assert!(parts(path).is_err(), "{path} passed");
        }
    }

    #[test]
    fn queries_decode_keys_and_values() {
        let target =
            Target::parse("/x", Some("%77atch=1&fol%6Cow=true&a=b+c&empty&=v&x=%3D")).unwrap();
        assert!(target.flag("watch"));
        assert!(target.flag("follow"));
        assert_eq!(target.parameter("a"), Some("b c"));
        assert!(target.flag("empty"), "an empty value is true");
        assert_eq!(target.parameter("x"), Some("="));
        assert!(!target.flag("missing"));
        let off = Target::parse("/x", Some("watch=0&watch=1")).unwrap();
        assert!(!off.flag("watch"), "the first value counts");
        let off = Target::parse("/x", Some("watch=FALSE")).unwrap();
        assert!(!off.flag("watch"));
        for query in ["watch=1;x=2", "a;watch=1", "%zz=1", "watch=%", "w%00atch=1"] {
            assert!(Target::parse("/x", Some(query)).is_err(), "{query} passed");
        }
    }
}
