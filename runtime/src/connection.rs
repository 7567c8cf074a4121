//! Limits every HTTP listener applies to its connections, so a client that
//! opens connections and says nothing, or keeps them open and idle, cannot
//! tie up the process: how long a new connection may take to send its first
//! request (an HTTP/2 preface included), how long one may sit with no request
//! and no response in progress, and how many requests it may have open at once.
//! (How many connections a listener takes at once is [`crate::listener`]'s.)

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The limits of one listener's connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long after the TLS handshake the first request must have arrived.
    pub first_request: Duration,
    /// How long a connection may have no request and no response in progress.
    pub idle: Duration,
    /// HTTP/2 streams a client may have open at once on one connection.
    pub max_concurrent_streams: u32,
}

impl ConnectionLimits {
    /// Limits for a listener of API clients (the kube proxy, the webhooks).
    pub const API: Self = Self {
        first_request: Duration::from_secs(10),
        idle: Duration::from_secs(90),
        max_concurrent_streams: 250,
    };
}

#[derive(Default)]
struct Counters {
    in_flight: AtomicUsize,
    requests: AtomicU64,
    changed: Notify,
    last_change: Mutex<Option<Instant>>,
}

/// What is going on on one connection: requests and response bodies in
/// progress. Cheap to clone; clones share the count.
#[derive(Clone, Default)]
pub struct Activity {
    counters: Arc<Counters>,
}

/// Counts one request (and then its response body) as in progress until dropped.
pub struct InProgress {
    counters: Arc<Counters>,
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
        *self
            .counters
            .last_change
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.counters.changed.notify_waiters();
    }
}

impl Activity {
    /// A connection with nothing in progress yet, accepted now.
    pub fn new() -> Self {
        let activity = Self::default();
        *activity.last_change() = Some(Instant::now());
        activity
    }

    fn last_change(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.counters
            .last_change
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Marks a request as started.
    pub fn begin(&self) -> InProgress {
        self.counters.in_flight.fetch_add(1, Ordering::AcqRel);
        self.counters.requests.fetch_add(1, Ordering::AcqRel);
        self.counters.changed.notify_waiters();
        InProgress {
            counters: self.counters.clone(),
        }
    }

    /// Requests started so far.
    pub fn requests(&self) -> u64 {
        self.counters.requests.load(Ordering::Acquire)
    }

    /// Resolves once the connection has been idle for its limit: no first
    /// request within `first_request`, or nothing in progress for `idle`.
    pub async fn until_idle(&self, limits: &ConnectionLimits) {
        loop {
            let changed = self.counters.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.counters.in_flight.load(Ordering::Acquire) > 0 {
                changed.await;
                continue;
            }
            let since = self.last_change().unwrap_or_else(Instant::now);
            let limit = if self.requests() == 0 {
                limits.first_request
            } else {
                limits.idle
            };
            tokio::select! {
                () = tokio::time::sleep_until(since + limit) => {
                    if self.counters.in_flight.load(Ordering::Acquire) == 0
                        && *self.last_change() == Some(since)
                    {
                        return;
                    }
                }
                () = changed => {}
            }
        }
    }

    /// Wraps a service so each request, and its response body until it ends,
    /// counts as in progress.
    pub fn track<S>(&self, service: S) -> Tracked<S> {
        Tracked {
            activity: self.clone(),
            service,
        }
    }
}

/// Drives `connection` until it ends, or drops it once `activity` has been
/// idle for its limit.
pub async fn close_when_idle<F, E>(
    connection: F,
    activity: Activity,
    limits: ConnectionLimits,
) -> Result<(), E>
where
    F: Future<Output = Result<(), E>>,
{
    tokio::select! {
        result = connection => result,
        () = activity.until_idle(&limits) => {
            tracing::debug!(requests = activity.requests(), "closing an idle connection");
            Ok(())
        }
    }
}

/// A service whose requests and response bodies count as activity.
#[derive(Clone)]
pub struct Tracked<S> {
    activity: Activity,
    service: S,
}

impl<S, B, R> hyper::service::Service<Request<B>> for Tracked<S>
where
    S: hyper::service::Service<Request<B>, Response = Response<R>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<TrackedBody<R>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<B>) -> Self::Future {
        let in_progress = self.activity.begin();
        let response = self.service.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| TrackedBody {
                body,
                _in_progress: in_progress,
            }))
        })
    }
}

/// A response body that counts as activity until it ends or is dropped.
pub struct TrackedBody<B> {
    body: B,
    _in_progress: InProgress,
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnectionLimits = ConnectionLimits {
        first_request: Duration::from_secs(10),
        idle: Duration::from_secs(90),
        max_concurrent_streams: 10,
    };

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_idle_after_the_first_request_limit() {
        let activity = Activity::new();
        let started = Instant::now();
        activity.until_idle(&LIMITS).await;
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn work_in_progress_keeps_a_connection_busy() {
        let activity = Activity::new();
        let started = Instant::now();
        let request = activity.begin();
        let waiting = {
            let activity = activity.clone();
            tokio::spawn(async move { activity.until_idle(&LIMITS).await })
        };
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert!(
            !waiting.is_finished(),
            "a request in progress is never idle"
        );
        drop(request);
        waiting.await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(390));
    }
}
