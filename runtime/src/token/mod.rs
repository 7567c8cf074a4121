//! Bearer-token checking behind a trait, with a short-lived cache in front:
//! the operator checks proxies' tokens with it, the proxies check users'.

mod review;

pub use review::{DEFAULT_AUDIENCE, TokenReviewer};

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

/// Who a valid token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenUser {
    /// The username, e.g. `system:serviceaccount:shop:kube-proxy`.
    pub username: String,
    /// The user's groups.
    pub groups: Vec<String>,
}

/// Why a token was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token is invalid, expired, or for another audience.
    #[error("{0}")]
    Rejected(String),
    /// The token could not be checked (the API server is unreachable); not cached.
    #[error("{0}")]
    Unavailable(String),
}

/// Checks a bearer token. A trait so tests can use a fake and a cache can sit
/// in front of the real TokenReview.
pub trait TokenChecker: Send + Sync + 'static {
    /// Who the token belongs to, or why it is not accepted.
    fn check<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<TokenUser, TokenError>>;
}

/// How long answers are remembered: long enough to spare the API server a
/// TokenReview per reconnect, short enough that a revoked token stops working soon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheTtls {
    /// For accepted tokens.
    pub accepted: Duration,
    /// For rejected tokens.
    pub rejected: Duration,
}

impl Default for CacheTtls {
    fn default() -> Self {
        Self {
            accepted: Duration::from_secs(30),
            rejected: Duration::from_secs(5),
        }
    }
}

/// At most this many tokens are remembered; a flood of bogus tokens cannot grow memory.
const MAX_CACHED_TOKENS: usize = 4096;

type CachedAnswer = (Instant, Result<TokenUser, TokenError>);

/// A [`TokenChecker`] that remembers answers for [`CacheTtls`].
pub struct CachingTokenChecker<C> {
    inner: C,
    ttls: CacheTtls,
    cache: Mutex<HashMap<String, CachedAnswer>>,
}

impl<C: TokenChecker> CachingTokenChecker<C> {
    /// A cache in front of `inner`.
    pub fn new(inner: C, ttls: CacheTtls) -> Self {
        Self {
            inner,
            ttls,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, token: &str) -> Option<Result<TokenUser, TokenError>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let (expires, answer) = cache.get(token)?;
        (Instant::now() < *expires).then(|| answer.clone())
    }

    fn remember(&self, token: &str, answer: &Result<TokenUser, TokenError>) {
        let ttl = match answer {
            Ok(_) => self.ttls.accepted,
            Err(TokenError::Rejected(_)) => self.ttls.rejected,
            Err(TokenError::Unavailable(_)) => return,
        };
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED_TOKENS {
            cache.retain(|_, (expires, _)| now < *expires);
            if cache.len() >= MAX_CACHED_TOKENS {
                cache.clear();
            }
        }
        cache.insert(token.to_string(), (now + ttl, answer.clone()));
    }
}

impl<C: TokenChecker> TokenChecker for CachingTokenChecker<C> {
    fn check<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<TokenUser, TokenError>> {
        Box::pin(async move {
            if let Some(answer) = self.cached(token) {
                return answer;
            }
            let answer = self.inner.check(token).await;
            self.remember(token, &answer);
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Accepts `good`, rejects everything else, and counts calls.
    #[derive(Clone, Default)]
    struct Counting(Arc<AtomicUsize>);

    impl TokenChecker for Counting {
        fn check<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<TokenUser, TokenError>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                match token {
                    "good" => Ok(TokenUser {
                        username: "system:serviceaccount:a:b".into(),
                        groups: vec![],
                    }),
                    "down" => Err(TokenError::Unavailable("apiserver down".into())),
                    _ => Err(TokenError::Rejected("invalid".into())),
                }
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn answers_are_cached_for_their_ttl() {
        let calls = Counting::default();
        let checker = CachingTokenChecker::new(calls.clone(), CacheTtls::default());
        let count = || calls.0.load(Ordering::SeqCst);

        assert!(checker.check("good").await.is_ok());
        assert!(checker.check("good").await.is_ok());
        assert_eq!(count(), 1);
        assert!(checker.check("bad").await.is_err());
        assert!(checker.check("bad").await.is_err());
        assert_eq!(count(), 2);

        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(checker.check("bad").await.is_err());
        assert!(checker.check("good").await.is_ok());
        assert_eq!(count(), 3, "the rejection expired, the acceptance did not");

        tokio::time::advance(Duration::from_secs(25)).await;
        assert!(checker.check("good").await.is_ok());
        assert_eq!(count(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn unavailability_is_never_cached() {
        let calls = Counting::default();
        let checker = CachingTokenChecker::new(calls.clone(), CacheTtls::default());
        for _ in 0..3 {
            assert!(matches!(
                checker.check("down").await,
                Err(TokenError::Unavailable(_))
            ));
        }
        assert_eq!(calls.0.load(Ordering::SeqCst), 3);
    }
}
