//! A TokenReview stand-in for the suites that authenticate bearer tokens: a
//! table from token to the user it belongs to, or to the failure the real
//! reviewer would report. Any other token is rejected with one message the
//! suite chooses, so its assertions can name it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use deadbolt_runtime::token::{TokenChecker, TokenError, TokenUser};
use futures::future::BoxFuture;

/// The message an unknown token is rejected with unless the suite picks one.
pub const UNKNOWN_TOKEN: &str = "token not found";

/// Bearer tokens a fake TokenReview knows. Clones share one table, so a test
/// can add a token after handing the checker to a proxy.
#[derive(Clone)]
pub struct FakeTokens {
    answers: Arc<Mutex<HashMap<String, Result<TokenUser, TokenError>>>>,
    unknown: String,
}

impl Default for FakeTokens {
    fn default() -> Self {
        Self::rejecting_unknown_with(UNKNOWN_TOKEN)
    }
}

impl FakeTokens {
    /// An empty table whose unknown tokens are rejected with `message`.
    pub fn rejecting_unknown_with(message: &str) -> Self {
        Self {
            answers: Arc::default(),
            unknown: message.into(),
        }
    }

    /// Makes `token` belong to `user` with `groups`.
    pub fn add(&self, token: &str, user: &str, groups: &[&str]) {
        self.add_user(
            token,
            TokenUser {
                username: user.into(),
                groups: groups.iter().map(|group| group.to_string()).collect(),
                ..Default::default()
            },
        );
    }

    /// Makes `token` belong to `user` as given (extra fields included).
    pub fn add_user(&self, token: &str, user: TokenUser) {
        self.answer(token, Ok(user));
    }

    /// Makes the review of `token` fail with `error`.
    pub fn fail(&self, token: &str, error: TokenError) {
        self.answer(token, Err(error));
    }

    /// The checker, shared, as authenticators take it.
    pub fn checker(&self) -> Arc<dyn TokenChecker> {
        Arc::new(self.clone())
    }

    fn answer(&self, token: &str, answer: Result<TokenUser, TokenError>) {
        self.answers.lock().unwrap().insert(token.into(), answer);
    }
}

impl TokenChecker for FakeTokens {
    fn check<'a>(
        &'a self,
        token: &'a str,
        _source: Option<IpAddr>,
    ) -> BoxFuture<'a, Result<TokenUser, TokenError>> {
        let answer = self
            .answers
            .lock()
            .unwrap()
            .get(token)
            .cloned()
            .unwrap_or_else(|| Err(TokenError::Rejected(self.unknown.clone())));
        Box::pin(async move { answer })
    }
}
