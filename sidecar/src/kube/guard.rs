//! The one shape of the kube proxy's request checks, as a tower layer: a
//! [`Guard`] looks at a request (and may annotate or rewrite it), then either
//! answers it on the spot or lets the inner service have it. Each check lives
//! in a file of its own (`classify`, `impersonate`, `strip_header`) and says
//! only what it checks; the `Layer`/`Service` plumbing is written here once.

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use super::BoxResponse;
use super::body::ProxyBody;

/// A check every request passes before it is forwarded.
pub trait Guard: Clone {
    /// `Break(response)` answers the request with `response`; the inner
    /// service never sees it.
    fn check<B>(&self, request: &mut Request<B>) -> ControlFlow<Response<ProxyBody>>;
}

/// Puts a [`Guard`] in front of a service.
#[derive(Clone, Debug)]
pub struct GuardLayer<G>(G);

impl<G> GuardLayer<G> {
    /// A layer that runs `guard` on every request.
    pub fn new(guard: G) -> Self {
        Self(guard)
    }
}

impl<G: Clone, S> Layer<S> for GuardLayer<G> {
    type Service = Guarded<G, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guarded {
            guard: self.0.clone(),
            inner,
        }
    }
}

/// The service [`GuardLayer`] builds.
#[derive(Clone, Debug)]
pub struct Guarded<G, S> {
    guard: G,
    inner: S,
}

impl<G, S, B> Service<Request<B>> for Guarded<G, S>
where
    G: Guard,
    S: Service<Request<B>, Response = Response<ProxyBody>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = BoxResponse;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> BoxResponse {
        match self.guard.check(&mut request) {
            ControlFlow::Continue(()) => Box::pin(self.inner.call(request)),
            ControlFlow::Break(response) => Box::pin(async move { Ok(response) }),
        }
    }
}
