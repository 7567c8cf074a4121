//! Routing and admission of one lock-view request: the endpoint, credentials,
//! the server id, and readiness. Everything refused gets a `Status` body.

use http::{HeaderMap, Method, Request, Response, header};
use hyper::body::Incoming;
use tracing::Instrument;

use super::session::Session;
use super::{Connection, LOCKVIEW_PATH, NDJSON, SERVER_ID_HEADER, StreamContext};
use crate::body::ChannelBody;
use crate::failure::Failure;
use crate::shutdown::Shutdown;

/// Lines that may wait for a slow reader before the session blocks (and
/// eventually resyncs it with a snapshot).
const OUTGOING_BUFFER: usize = 64;

/// Answers one request; never fails, since refusals are responses too.
pub(super) async fn handle(
    context: &StreamContext,
    connection: &Connection,
    shutdown: &Shutdown,
    request: Request<Incoming>,
) -> Response<ChannelBody> {
    match subscribe(context, connection, shutdown, request).await {
        Ok(response) => response,
        Err(failure) => {
            tracing::info!(
                remote = %connection.remote,
                code = failure.code.as_u16(),
                error = %failure.message,
                "lock-view request refused"
            );
            failure.into_response()
        }
    }
}

async fn subscribe(
    context: &StreamContext,
    connection: &Connection,
    shutdown: &Shutdown,
    request: Request<Incoming>,
) -> Result<Response<ChannelBody>, Failure> {
    if request.uri().path() != LOCKVIEW_PATH {
        return Err(Failure::not_found(format!(
            "no endpoint {:?}: the lock view is served at POST {LOCKVIEW_PATH}",
            request.uri().path()
        )));
    }
    if request.method() != Method::POST {
        return Err(Failure::method_not_allowed(format!(
            "{LOCKVIEW_PATH} takes POST, not {}",
            request.method()
        )));
    }
    let principal = context
        .authenticator
        .authenticate(
            connection.peer.as_ref(),
            request.headers().get(header::AUTHORIZATION),
            Some(connection.remote),
        )
        .await?;
    let server_id = server_id(request.headers())?;
    context.authenticator.authorize(&principal, &server_id)?;
    if !context.readiness.is_ready() {
        return Err(Failure::unavailable(
            "the operator is still loading its view; retry shortly",
        ));
    }

    let subscriber = context
        .subscribers
        .connect_as(
            server_id,
            principal.key(),
            context.max_streams_per_subscriber,
        )
        .map_err(|open| {
            Failure::too_many_requests(format!(
                "{principal} already has {open} lock-view streams open, the most allowed; \
                 close one first"
            ))
        })?;
    let (outgoing, body) = ChannelBody::channel(OUTGOING_BUFFER);
    tracing::info!(
        remote = %connection.remote,
        server_id = subscriber.server_id(),
        %principal,
        "lock-view subscriber connected"
    );
    // Every line the subscriber's session logs names the proxy and the peer.
    let span = tracing::info_span!(
        "lockview_subscriber",
        server_id = subscriber.server_id(),
        remote = %connection.remote,
        %principal,
    );
    let session = Session::new(
        context,
        subscriber,
        request.into_body(),
        outgoing,
        shutdown.clone(),
        connection.remote,
    );
    tokio::spawn(session.run().instrument(span));

    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(NDJSON),
    );
    Ok(response)
}

/// The `Deadbolt-Server-Id` header: required, printable, no spaces, at most 253 bytes.
fn server_id(headers: &HeaderMap) -> Result<String, Failure> {
    let value = headers.get(SERVER_ID_HEADER).ok_or_else(|| {
        Failure::bad_request(format!(
            "missing the {SERVER_ID_HEADER} header naming the proxy"
        ))
    })?;
    let text = value
        .to_str()
        .ok()
        .filter(|text| {
            !text.is_empty()
                && text.len() <= 253
                && text.bytes().all(|byte| byte.is_ascii_graphic())
        })
        .ok_or_else(|| {
            Failure::bad_request(format!(
                "the {SERVER_ID_HEADER} header must be 1 to 253 printable ASCII characters without spaces"
            ))
        })?;
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn server_id_must_be_present_and_printable() {
        let mut headers = HeaderMap::new();
        assert!(server_id(&headers).is_err());
        headers.insert(SERVER_ID_HEADER, HeaderValue::from_static("a b"));
        assert!(server_id(&headers).is_err());
        headers.insert(SERVER_ID_HEADER, HeaderValue::from_static(""));
        assert!(server_id(&headers).is_err());
        headers.insert(SERVER_ID_HEADER, HeaderValue::from_static("kube-proxy-0"));
        assert_eq!(server_id(&headers).unwrap(), "kube-proxy-0");
    }
}
