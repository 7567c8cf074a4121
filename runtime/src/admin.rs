//! The plain-HTTP operations listener every Deadbolt process runs:
//! `/metrics` (OpenMetrics text), `/healthz` and `/readyz`.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Response, StatusCode};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::body::ChannelBody;
use crate::connection::{Activity, ConnectionLimits, close_when_idle};
use crate::listener::accept_until;
use crate::shutdown::Shutdown;

/// Scrapers and probes: a handful at a time, each quick.
const MAX_CONNECTIONS: usize = 64;
const LIMITS: ConnectionLimits = ConnectionLimits {
    first_request: Duration::from_secs(5),
    idle: Duration::from_secs(30),
    max_concurrent_streams: 1,
};

/// What a process reports on its operations listener.
pub trait AdminEndpoints: Send + Sync + 'static {
    /// The metrics in OpenMetrics text, refreshed at scrape time.
    fn render_metrics(&self) -> String;
    /// `Ok` when ready for traffic, or why not (shown by `/readyz`).
    fn readiness(&self) -> Result<(), String>;
}

/// Serves `/metrics`, `/healthz` and `/readyz` until shutdown.
pub async fn serve(listener: TcpListener, endpoints: Arc<dyn AdminEndpoints>, shutdown: Shutdown) {
    let graceful = GracefulShutdown::new();
    accept_until(
        &listener,
        &shutdown,
        "admin",
        MAX_CONNECTIONS,
        |stream, remote| {
            let endpoints = endpoints.clone();
            let service = service_fn(move |request| {
                let response = route(endpoints.as_ref(), request.method(), request.uri().path());
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let activity = Activity::new();
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(LIMITS.first_request)
                .serve_connection(TokioIo::new(stream), activity.track(service));
            let connection = graceful.watch(connection);
            async move {
                if let Err(error) = close_when_idle(connection, activity, LIMITS).await {
                    tracing::debug!(%remote, %error, "admin connection ended with an error");
                }
            }
        },
    )
    .await;
    // Scrapes are short; do not hold shutdown up for a stuck one.
    let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
}

/// The response to one operations request.
pub fn route(endpoints: &dyn AdminEndpoints, method: &Method, path: &str) -> Response<ChannelBody> {
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported\n");
    }
    match path {
        "/metrics" => ChannelBody::response(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            endpoints.render_metrics(),
        ),
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => match endpoints.readiness() {
            Ok(()) => text(StatusCode::OK, "ok\n"),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}\n"),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n",
        ),
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<ChannelBody> {
    ChannelBody::response(status, "text/plain; charset=utf-8", body.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Default)]
    struct Fake(AtomicBool);

    impl AdminEndpoints for Fake {
        fn render_metrics(&self) -> String {
            "deadbolt_up 1\n# EOF\n".into()
        }
        fn readiness(&self) -> Result<(), String> {
            if self.0.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("the view has not loaded".into())
            }
        }
    }

    async fn body(response: Response<ChannelBody>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn readyz_follows_readiness_and_healthz_is_always_ok() {
        let fake = Fake::default();
        assert_eq!(
            route(&fake, &Method::GET, "/healthz").status(),
            StatusCode::OK
        );
        let not_ready = route(&fake, &Method::GET, "/readyz");
        assert_eq!(not_ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body(not_ready).await,
            "not ready: the view has not loaded\n"
        );
        fake.0.store(true, Ordering::SeqCst);
        assert_eq!(
            route(&fake, &Method::GET, "/readyz").status(),
            StatusCode::OK
        );
        let metrics = route(&fake, &Method::GET, "/metrics");
        assert!(body(metrics).await.ends_with("# EOF\n"));
    }

    #[test]
    fn other_paths_and_methods_are_refused() {
        let fake = Fake::default();
        assert_eq!(
            route(&fake, &Method::GET, "/").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            route(&fake, &Method::POST, "/metrics").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
