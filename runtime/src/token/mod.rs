//! Bearer-token checking behind a trait, with a cache in front: the operator
//! checks proxies' tokens with it, the proxies check users'.
//!
//! The cache is built to hold under a flood of bad tokens: answers are kept
//! by the token's SHA-256 (never the token itself), in two least-recently-used
//! caches so rejections can only ever evict rejections; concurrent checks of
//! one token share one review; and a source address whose tokens keep failing
//! is refused without asking the API server until its window passes.

mod review;

pub use review::{DEFAULT_AUDIENCE, TokenReviewer};

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use lru::LruCache;
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// Who a valid token belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenUser {
    /// The username, e.g. `system:serviceaccount:shop:kube-proxy`.
    pub username: String,
    /// The user's groups.
    pub groups: Vec<String>,
    /// Extra attributes, e.g. `authentication.kubernetes.io/pod-name` for a
    /// token bound to a pod.
    pub extra: BTreeMap<String, Vec<String>>,
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
    /// Too many tokens from this source failed lately; not checked, not cached.
    #[error("{0}")]
    Throttled(String),
}

/// Checks a bearer token. A trait so tests can use a fake and a cache can sit
/// in front of the real TokenReview.
pub trait TokenChecker: Send + Sync + 'static {
    /// Who the token belongs to, or why it is not accepted. `source` is the
    /// client's address, for rate limits.
    fn check<'a>(
        &'a self,
        token: &'a str,
        source: Option<IpAddr>,
    ) -> BoxFuture<'a, Result<TokenUser, TokenError>>;
}

/// How answers are remembered and failures limited: long enough to spare the
/// API server a TokenReview per connection, short enough that a revoked token
/// stops working soon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachePolicy {
    /// How long an accepted token is remembered.
    pub accepted: Duration,
    /// How long a rejected token is remembered.
    pub rejected: Duration,
    /// Accepted tokens remembered at most.
    pub max_accepted: NonZeroUsize,
    /// Rejected tokens remembered at most.
    pub max_rejected: NonZeroUsize,
    /// Rejected tokens one source address may send per `failure_window`
    /// before it is refused without a review.
    pub max_failures: u32,
    /// The window `max_failures` counts over.
    pub failure_window: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            accepted: Duration::from_secs(30),
            rejected: Duration::from_secs(5),
            max_accepted: NonZeroUsize::new(4096).expect("non-zero"),
            max_rejected: NonZeroUsize::new(1024).expect("non-zero"),
            max_failures: 20,
            failure_window: Duration::from_secs(60),
        }
    }
}

/// Source addresses tracked at most; the least recently failing are forgotten first.
const MAX_TRACKED_SOURCES: usize = 4096;

/// A token's cache key: its SHA-256, so the cache never holds a credential.
type Key = [u8; 32];

type Answer = Result<TokenUser, TokenError>;

struct Failures {
    since: Instant,
    count: u32,
}

struct State {
    accepted: LruCache<Key, (Instant, TokenUser)>,
    rejected: LruCache<Key, (Instant, String)>,
    failures: LruCache<IpAddr, Failures>,
    in_flight: HashMap<Key, Arc<OnceCell<Answer>>>,
}

/// A [`TokenChecker`] that remembers answers, shares concurrent reviews of
/// one token, and limits failures per source, by [`CachePolicy`].
pub struct CachingTokenChecker<C> {
    inner: C,
    policy: CachePolicy,
    state: Mutex<State>,
}

impl<C: TokenChecker> CachingTokenChecker<C> {
    /// A cache in front of `inner`.
    pub fn new(inner: C, policy: CachePolicy) -> Self {
        Self {
            inner,
            policy,
            state: Mutex::new(State {
                accepted: LruCache::new(policy.max_accepted),
                rejected: LruCache::new(policy.max_rejected),
                failures: LruCache::new(NonZeroUsize::new(MAX_TRACKED_SOURCES).expect("non-zero")),
                in_flight: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cached(state: &mut State, key: &Key) -> Option<Answer> {
        let now = Instant::now();
        if let Some((expires, user)) = state.accepted.get(key) {
            if now < *expires {
                return Some(Ok(user.clone()));
            }
            state.accepted.pop(key);
        }
        if let Some((expires, reason)) = state.rejected.get(key) {
            if now < *expires {
                return Some(Err(TokenError::Rejected(reason.clone())));
            }
            state.rejected.pop(key);
        }
        None
    }

    fn remember(&self, state: &mut State, key: Key, answer: &Answer) {
        let now = Instant::now();
        match answer {
            Ok(user) => {
                state.rejected.pop(&key);
                state
                    .accepted
                    .put(key, (now + self.policy.accepted, user.clone()));
            }
            Err(TokenError::Rejected(reason)) => {
                state
                    .rejected
                    .put(key, (now + self.policy.rejected, reason.clone()));
            }
            Err(TokenError::Unavailable(_) | TokenError::Throttled(_)) => {}
        }
    }

    /// Whether `source` has used up its failures for the current window.
    fn throttled(&self, state: &mut State, source: Option<IpAddr>) -> bool {
        let Some(source) = source else {
            return false;
        };
        match state.failures.get(&source) {
            Some(failures) if failures.since.elapsed() < self.policy.failure_window => {
                failures.count >= self.policy.max_failures
            }
            Some(_) => {
                state.failures.pop(&source);
                false
            }
            None => false,
        }
    }

    fn count_failure(&self, state: &mut State, source: Option<IpAddr>) {
        let Some(source) = source else {
            return;
        };
        let now = Instant::now();
        let window = self.policy.failure_window;
        let failures = state.failures.get_or_insert_mut(source, || Failures {
            since: now,
            count: 0,
        });
        if now.duration_since(failures.since) >= window {
            *failures = Failures {
                since: now,
                count: 0,
            };
        }
        failures.count = failures.count.saturating_add(1);
    }

    async fn check_token(&self, token: &str, source: Option<IpAddr>) -> Answer {
        let key = digest(token);
        let cell = {
            let mut state = self.lock();
            if self.throttled(&mut state, source) {
                return Err(TokenError::Throttled(
                    "too many rejected tokens from this address; retry later".into(),
                ));
            }
            if let Some(answer) = Self::cached(&mut state, &key) {
                if answer.is_err() {
                    self.count_failure(&mut state, source);
                }
                return answer;
            }
            state.in_flight.entry(key).or_default().clone()
        };
        let answer = cell
            .get_or_init(|| self.inner.check(token, source))
            .await
            .clone();
        let mut state = self.lock();
        if state
            .in_flight
            .get(&key)
            .is_some_and(|current| Arc::ptr_eq(current, &cell))
        {
            state.in_flight.remove(&key);
            self.remember(&mut state, key, &answer);
        }
        if matches!(answer, Err(TokenError::Rejected(_))) {
            self.count_failure(&mut state, source);
        }
        answer
    }
}

impl<C: TokenChecker> TokenChecker for CachingTokenChecker<C> {
    fn check<'a>(
        &'a self,
        token: &'a str,
        source: Option<IpAddr>,
    ) -> BoxFuture<'a, Result<TokenUser, TokenError>> {
        Box::pin(self.check_token(token, source))
    }
}

fn digest(token: &str) -> Key {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Accepts `good`, rejects everything else, and counts calls; `slow`
    /// answers after a second.
    #[derive(Clone, Default)]
    struct Counting(Arc<AtomicUsize>);

    impl TokenChecker for Counting {
        fn check<'a>(
            &'a self,
            token: &'a str,
            _source: Option<IpAddr>,
        ) -> BoxFuture<'a, Result<TokenUser, TokenError>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                match token {
                    "good" => Ok(TokenUser {
                        username: "system:serviceaccount:a:b".into(),
                        ..Default::default()
                    }),
                    "slow" => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        Ok(TokenUser {
                            username: "slow".into(),
                            ..Default::default()
                        })
                    }
                    "down" => Err(TokenError::Unavailable("apiserver down".into())),
                    _ => Err(TokenError::Rejected("invalid".into())),
                }
            })
        }
    }

    impl Counting {
        fn calls(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn address(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, last]))
    }

    #[tokio::test(start_paused = true)]
    async fn answers_are_cached_for_their_ttl() {
        let calls = Counting::default();
        let checker = CachingTokenChecker::new(calls.clone(), CachePolicy::default());

        assert!(checker.check("good", None).await.is_ok());
        assert!(checker.check("good", None).await.is_ok());
        assert_eq!(calls.calls(), 1);
        assert!(checker.check("bad", None).await.is_err());
        assert!(checker.check("bad", None).await.is_err());
        assert_eq!(calls.calls(), 2);

        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(checker.check("bad", None).await.is_err());
        assert!(checker.check("good", None).await.is_ok());
        assert_eq!(
            calls.calls(),
            3,
            "the rejection expired, the acceptance did not"
        );

        tokio::time::advance(Duration::from_secs(25)).await;
        assert!(checker.check("good", None).await.is_ok());
        assert_eq!(calls.calls(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn unavailability_is_never_cached() {
        let calls = Counting::default();
        let checker = CachingTokenChecker::new(calls.clone(), CachePolicy::default());
        for _ in 0..3 {
            assert!(matches!(
                checker.check("down", None).await,
                Err(TokenError::Unavailable(_))
            ));
        }
        assert_eq!(calls.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_bad_tokens_never_evicts_good_ones() {
        let calls = Counting::default();
        let policy = CachePolicy {
            max_accepted: NonZeroUsize::new(2).unwrap(),
            max_rejected: NonZeroUsize::new(8).unwrap(),
            ..CachePolicy::default()
        };
        let checker = CachingTokenChecker::new(calls.clone(), policy);
        assert!(checker.check("good", None).await.is_ok());
        for n in 0..1000 {
            let bogus = format!("bogus-{n}");
            assert!(checker.check(&bogus, None).await.is_err());
        }
        let before = calls.calls();
        assert!(checker.check("good", None).await.is_ok());
        assert_eq!(calls.calls(), before, "still cached");
        assert!(checker.lock().rejected.len() <= 8);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_checks_of_one_token_share_one_review() {
        let calls = Counting::default();
        let checker = Arc::new(CachingTokenChecker::new(
            calls.clone(),
            CachePolicy::default(),
        ));
        let checks: Vec<_> = (0..10)
            .map(|_| {
                let checker = checker.clone();
                tokio::spawn(async move { checker.check("slow", None).await })
            })
            .collect();
        for check in checks {
            assert_eq!(check.await.unwrap().unwrap().username, "slow");
        }
        assert_eq!(calls.calls(), 1);
        assert!(checker.lock().in_flight.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_source_whose_tokens_keep_failing_is_throttled_for_a_window() {
        let calls = Counting::default();
        let policy = CachePolicy {
            max_failures: 3,
            ..CachePolicy::default()
        };
        let checker = CachingTokenChecker::new(calls.clone(), policy);
        for n in 0..3 {
            let bogus = format!("bogus-{n}");
            assert!(matches!(
                checker.check(&bogus, address(1)).await,
                Err(TokenError::Rejected(_))
            ));
        }
        let before = calls.calls();
        assert!(matches!(
            checker.check("good", address(1)).await,
            Err(TokenError::Throttled(_))
        ));
        assert_eq!(calls.calls(), before, "a throttled source costs no review");
        assert!(
            checker.check("good", address(2)).await.is_ok(),
            "other sources are unaffected"
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(checker.check("good", address(1)).await.is_ok());
    }

    #[test]
    fn keys_are_digests_not_tokens() {
        let key = digest("secret-token");
        assert_ne!(&key[..12], b"secret-token");
        assert_eq!(key, digest("secret-token"));
        assert_ne!(key, digest("secret-tokem"));
    }
}
