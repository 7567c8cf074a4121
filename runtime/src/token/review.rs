//! The real [`TokenChecker`]: a Kubernetes TokenReview, optionally scoped to an audience.

use std::net::IpAddr;

use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use kube::{Api, Client};

use super::{TokenChecker, TokenError, TokenUser};

/// The audience proxies' projected service-account tokens must be minted for.
pub const DEFAULT_AUDIENCE: &str = "deadbolt";

/// Asks the API server who a token belongs to. With an audience, only tokens
/// minted for it are accepted, so a token meant for another service cannot be
/// replayed here; without one, the API server's own audiences apply (users'
/// ordinary kubectl tokens).
#[derive(Clone)]
pub struct TokenReviewer {
    api: Api<TokenReview>,
    audience: Option<String>,
}

impl TokenReviewer {
    /// A reviewer for tokens of `audience`.
    pub fn new(client: Client, audience: impl Into<String>) -> Self {
        Self {
            api: Api::all(client),
            audience: Some(audience.into()),
        }
    }

    /// A reviewer for tokens the API server itself accepts.
    pub fn for_api_server(client: Client) -> Self {
        Self {
            api: Api::all(client),
            audience: None,
        }
    }

    async fn review(&self, token: &str) -> Result<TokenUser, TokenError> {
        let request = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: self.audience.clone().map(|audience| vec![audience]),
            },
            ..Default::default()
        };
        let response = self
            .api
            .create(&PostParams::default(), &request)
            .await
            .map_err(|error| TokenError::Unavailable(format!("TokenReview failed: {error}")))?;
        let status = response.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            let reason = status
                .error
                .filter(|error| !error.is_empty())
                .unwrap_or_else(|| "the token is invalid or expired".to_string());
            return Err(TokenError::Rejected(reason));
        }
        // An audience-unaware authenticator may accept a token minted for anyone.
        if let Some(wanted) = &self.audience
            && !status
                .audiences
                .unwrap_or_default()
                .iter()
                .any(|audience| audience == wanted)
        {
            return Err(TokenError::Rejected(format!(
                "the token is not for audience {wanted:?}"
            )));
        }
        let user = status.user.unwrap_or_default();
        let username = user
            .username
            .filter(|name| !name.is_empty())
            .ok_or_else(|| TokenError::Rejected("TokenReview returned no username".into()))?;
        Ok(TokenUser {
            username,
            groups: user.groups.unwrap_or_default(),
            extra: user.extra.unwrap_or_default(),
        })
    }
}

impl TokenChecker for TokenReviewer {
    fn check<'a>(
        &'a self,
        token: &'a str,
        _source: Option<IpAddr>,
    ) -> BoxFuture<'a, Result<TokenUser, TokenError>> {
        Box::pin(self.review(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Method, Request, Response};
    use http_body_util::BodyExt;
    use kube::client::Body;
    use serde_json::json;

    async fn review_with(
        answer: serde_json::Value,
    ) -> (Result<TokenUser, TokenError>, serde_json::Value) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let reviewer = TokenReviewer::new(Client::new(service, "default"), DEFAULT_AUDIENCE);
        let apiserver = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), Method::POST);
            assert_eq!(
                request.uri().path(),
                "/apis/authentication.k8s.io/v1/tokenreviews"
            );
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let response = Response::builder()
                .status(201)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap();
            send.send_response(response);
            body
        });
        let result = reviewer.check("the-token", None).await;
        (result, apiserver.await.unwrap())
    }

    fn answer(status: serde_json::Value) -> serde_json::Value {
        json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "metadata": {},
            "spec": {"token": "the-token", "audiences": ["deadbolt"]},
            "status": status,
        })
    }

    #[tokio::test]
    async fn sends_the_token_with_the_deadbolt_audience() {
        let (result, request) = review_with(answer(json!({
            "authenticated": true,
            "audiences": ["deadbolt"],
            "user": {"username": "system:serviceaccount:shop:proxy", "groups": ["system:serviceaccounts"],
                     "extra": {"authentication.kubernetes.io/pod-name": ["pg-0"]}},
        })))
        .await;
        assert_eq!(
            request,
            json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "metadata": {},
                "spec": {"token": "the-token", "audiences": ["deadbolt"]},
            })
        );
        let user = result.unwrap();
        assert_eq!(user.username, "system:serviceaccount:shop:proxy");
        assert_eq!(user.groups, vec!["system:serviceaccounts".to_string()]);
        assert_eq!(
            user.extra["authentication.kubernetes.io/pod-name"],
            vec!["pg-0".to_string()]
        );
    }

    #[tokio::test]
    async fn an_unauthenticated_token_is_rejected_with_the_reason() {
        let (result, _) = review_with(answer(json!({
            "authenticated": false,
            "error": "token has expired",
        })))
        .await;
        assert_eq!(
            result,
            Err(TokenError::Rejected("token has expired".into()))
        );
    }

    #[tokio::test]
    async fn a_token_for_another_audience_is_rejected() {
        let (result, _) = review_with(answer(json!({
            "authenticated": true,
            "user": {"username": "someone"},
        })))
        .await;
        assert!(
            matches!(result, Err(TokenError::Rejected(message)) if message.contains("audience"))
        );
    }
}
