//! Pointing a client's request at the API server: its base path prefixed,
//! an absolute URI for HTTP/2, the path and a `Host` header for HTTP/1.1.

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Uri, Version};

use super::{Upstream, UpstreamBody, UpstreamError};

impl Upstream {
    /// Points the request at the API server: an absolute URI for HTTP/2, the
    /// path and a `Host` header for HTTP/1.1.
    pub(super) fn target(
        &self,
        request: &mut Request<UpstreamBody>,
        version: Version,
    ) -> Result<(), UpstreamError> {
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", PathAndQuery::as_str);
        let path: PathAndQuery = format!("{}{path}", self.base_path)
            .parse()
            .map_err(|error| UpstreamError::Credentials(format!("invalid path: {error}")))?;
        let mut parts = http::uri::Parts::default();
        parts.path_and_query = Some(path);
        if version == Version::HTTP_2 {
            parts.scheme = Some(self.scheme.clone());
            parts.authority = Some(self.authority.clone());
            request.headers_mut().remove(header::HOST);
        } else if let Ok(host) = HeaderValue::from_str(self.authority.as_str()) {
            request.headers_mut().insert(header::HOST, host);
        }
        *request.uri_mut() = Uri::from_parts(parts)
            .map_err(|error| UpstreamError::Credentials(format!("invalid URI: {error}")))?;
        *request.version_mut() = version;
        Ok(())
    }
}
