//! The plain-HTTP listener for probes and scrapes.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Response, StatusCode, header};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::{Metrics, Readiness};
use crate::body::ChannelBody;
use crate::shutdown::Shutdown;
use crate::subscribers::Subscribers;
use crate::view::ViewStore;

/// What the endpoints report on.
#[derive(Clone, Debug)]
pub struct AdminState {
    /// The metrics to render.
    pub metrics: Arc<Metrics>,
    /// The view, for state gauges.
    pub store: ViewStore,
    /// The subscribers, for state gauges.
    pub subscribers: Subscribers,
    /// Whether the source has loaded.
    pub readiness: Readiness,
}

/// Serves `/metrics`, `/healthz` and `/readyz` until shutdown.
pub async fn serve(listener: TcpListener, state: AdminState, shutdown: Shutdown) {
    let state = Arc::new(state);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, remote) = tokio::select! {
            _ = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "admin listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let service = service_fn(move |request| {
            let state = state.clone();
            async move {
                let response = route(&state, request.method(), request.uri().path());
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%remote, %error, "admin connection ended with an error");
            }
        });
    }
    // Scrapes are short; do not hold shutdown up for a stuck one.
    let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
}

fn route(state: &AdminState, method: &Method, path: &str) -> Response<ChannelBody> {
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported\n");
    }
    match path {
        "/metrics" => {
            let body = state.metrics.render(&state.store, &state.subscribers);
            let mut response = text(StatusCode::OK, body);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if state.readiness.is_ready() => text(StatusCode::OK, "ok\n"),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the source has not finished loading\n",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n",
        ),
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<ChannelBody> {
    let mut response = Response::new(ChannelBody::full(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn state() -> AdminState {
        AdminState {
            metrics: Arc::new(Metrics::new()),
            store: ViewStore::default(),
            subscribers: Subscribers::new(),
            readiness: Readiness::new(),
        }
    }

    async fn body(response: Response<ChannelBody>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn readyz_follows_readiness_and_healthz_is_always_ok() {
        let state = state();
        assert_eq!(
            route(&state, &Method::GET, "/healthz").status(),
            StatusCode::OK
        );
        let not_ready = route(&state, &Method::GET, "/readyz");
        assert_eq!(not_ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(body(not_ready).await.contains("not finished loading"));
        state.readiness.set_ready();
        assert_eq!(
            route(&state, &Method::GET, "/readyz").status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn metrics_are_openmetrics_text() {
        let response = route(&state(), &Method::GET, "/metrics");
        assert_eq!(response.status(), StatusCode::OK);
        let text = body(response).await;
        assert!(text.contains("deadbolt_view_revision 0"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn other_paths_and_methods_are_refused() {
        let state = state();
        assert_eq!(
            route(&state, &Method::GET, "/").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            route(&state, &Method::POST, "/metrics").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
