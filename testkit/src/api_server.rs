//! A mocked Kubernetes API server for exact request checks (kube-rs's
//! `ApiServerVerifier` pattern, on `tower_test::mock`): a test holds the
//! server end of a [`kube::Client`], asserts every request it receives
//! (method, URI, body) in order, and answers each one. Both the operator's
//! controller tests and `kubectl deadbolt`'s plugin tests script it; failure
//! injection (a 403, a 404, a Status) is just another answer.

use std::future::Future;

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tower_test::mock::{self, Handle, SendResponse};

use crate::PATIENCE;

/// Where a request's answer goes.
pub type Responder = SendResponse<Response<Body>>;

/// The server end of a mocked [`kube::Client`].
pub struct ApiServer(Handle<Request<Body>, Response<Body>>);

impl ApiServer {
    /// A client whose every request arrives at the returned server, and the server.
    pub fn pair() -> (kube::Client, ApiServer) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        (kube::Client::new(service, "default"), ApiServer(handle))
    }

    /// The next request, or `None` once every client is gone. Waits without limit.
    pub async fn next_or_gone(&mut self) -> Option<(Request<Body>, Responder)> {
        self.0.next_request().await
    }

    /// The next request; fails the test when none arrives within [`PATIENCE`].
    pub async fn next(&mut self) -> (Request<Body>, Responder) {
        tokio::time::timeout(PATIENCE, self.0.next_request())
            .await
            .expect("no request arrived")
            .expect("the client went away before the expected request")
    }

    /// The next request, which must be `method` on exactly `uri` (path and query).
    pub async fn expect(&mut self, method: Method, uri: &str) -> (Request<Body>, Responder) {
        let (request, send) = self.next().await;
        assert_eq!(
            (request.method(), request.uri().to_string().as_str()),
            (&method, uri),
            "the request"
        );
        (request, send)
    }

    /// A request's JSON body.
    pub async fn body(request: Request<Body>) -> Value {
        let bytes = request.into_body().collect_bytes().await.unwrap();
        serde_json::from_slice(&bytes).expect("a JSON body")
    }

    /// Answers with `status` and `body` as JSON.
    pub fn reply(send: Responder, status: u16, body: &Value) {
        send.send_response(
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(body).unwrap()))
                .unwrap(),
        );
    }

    /// A GET of exactly `uri`, answered with `reply`.
    pub async fn expect_get(&mut self, uri: &str, reply: Value) {
        let (_, send) = self.expect(Method::GET, uri).await;
        Self::reply(send, 200, &reply);
    }

    /// A server-side apply to exactly `uri`, with exactly `expected`, answered with `reply`.
    pub async fn expect_apply(&mut self, uri: &str, expected: Value, reply: Value) {
        let (request, send) = self.expect(Method::PATCH, uri).await;
        assert_eq!(
            request.headers()["content-type"],
            "application/apply-patch+yaml"
        );
        assert_eq!(Self::body(request).await, expected);
        Self::reply(send, 200, &reply);
    }

    /// A status apply; answers with `object` carrying the applied status.
    pub async fn expect_status(
        &mut self,
        uri: &str,
        object: &impl serde::Serialize,
        expected: Value,
    ) {
        let mut reply = serde_json::to_value(object).unwrap();
        reply["status"] = expected["status"].clone();
        self.expect_apply(uri, expected, reply).await;
    }

    /// A POST to exactly `uri`; answers with `reply(body)` and returns the body.
    pub async fn expect_create(&mut self, uri: &str, reply: impl FnOnce(&Value) -> Value) -> Value {
        let (request, send) = self.expect(Method::POST, uri).await;
        let body = Self::body(request).await;
        Self::reply(send, 201, &reply(&body));
        body
    }

    /// A DELETE of exactly `uri`; answers with `reply` and returns the request's body.
    pub async fn expect_delete(&mut self, uri: &str, reply: Value) -> Value {
        let (request, send) = self.expect(Method::DELETE, uri).await;
        let body = Self::body(request).await;
        Self::reply(send, 200, &reply);
        body
    }

    /// No further request: the clients are gone without making one.
    pub async fn finish(mut self) {
        if let Some((request, _)) = self.0.next_request().await {
            panic!("unexpected request: {} {}", request.method(), request.uri());
        }
    }

    /// Plays `script`, then fails on any further request until the clients are dropped.
    pub fn spawn<F>(self, script: impl FnOnce(Self) -> F) -> JoinHandle<()>
    where
        F: Future<Output = Self> + Send + 'static,
    {
        let script = script(self);
        tokio::spawn(async move { script.await.finish().await })
    }
}

/// A `Status` of success, as a DELETE returns it.
pub fn success_status() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}})
}
