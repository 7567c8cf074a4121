//! One subscriber's stream: the view out (snapshot, deltas, heartbeats), acks in.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use deadbolt_api::protocol::{Ack, ViewEvent, encode_line};
use hyper::body::{Bytes, Incoming};
use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use super::StreamContext;
use super::acks::{AckError, AckReader};
use crate::admin::{Metrics, Readiness};
use crate::body::{BodyAborted, BodyChunk};
use crate::shutdown::Shutdown;
use crate::subscribers::Subscriber;
use crate::view::{ViewFeed, ViewStore};

/// How long to wait for room to queue the reset of a stream whose reader stalled.
const ABORT_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a session ended.
#[derive(Debug)]
enum End {
    Shutdown,
    ClientGone,
    StoreClosed,
    AckBodyFailed(hyper::Error),
    BadAck(String),
}

pub(super) struct Session {
    feed: ViewFeed,
    store: ViewStore,
    /// When the stream started: changes produced before it reach this proxy
    /// in its first snapshot, which is not what the propagation time measures.
    since: std::time::Instant,
    subscriber: Subscriber,
    acks: AckReader,
    outgoing: mpsc::Sender<BodyChunk>,
    heartbeat: Duration,
    /// Heartbeats go out only while this says the operator's view is reliable.
    readiness: Readiness,
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
    remote: SocketAddr,
}

impl Session {
    pub(super) fn new(
        context: &StreamContext,
        subscriber: Subscriber,
        body: Incoming,
        outgoing: mpsc::Sender<BodyChunk>,
        shutdown: Shutdown,
        remote: SocketAddr,
    ) -> Self {
        let since = std::time::Instant::now();
        Self {
            feed: ViewFeed::new(context.store.clone()),
            store: context.store.clone(),
            since,
            subscriber,
            acks: AckReader::new(body),
            outgoing,
            heartbeat: context.heartbeat_interval,
            readiness: context.readiness.clone(),
            shutdown,
            metrics: context.metrics.clone(),
            remote,
        }
    }

    /// Streams until the client leaves, sends a bad ack, or the operator stops.
    pub(super) async fn run(mut self) {
        let end = self.stream().await;
        let server_id = self.subscriber.server_id().to_string();
        let remote = self.remote;
        match &end {
            End::BadAck(message) => {
                self.metrics.ack_errors.inc();
                tracing::error!(%remote, %server_id, error = %message, "disconnecting lock-view subscriber: malformed ack");
                // Reset the stream rather than end it cleanly, so the proxy knows it was cut.
                let abort = Err(BodyAborted(format!("malformed ack: {message}")));
                let _ = tokio::time::timeout(ABORT_TIMEOUT, self.outgoing.send(abort)).await;
            }
            End::AckBodyFailed(error) => {
                tracing::info!(%remote, %server_id, %error, "lock-view subscriber's ack stream failed");
            }
            End::Shutdown | End::ClientGone | End::StoreClosed => {
                tracing::info!(%remote, %server_id, reason = ?end, "lock-view subscriber disconnected");
            }
        }
        // Dropping the subscriber removes it from the registry.
    }

    async fn stream(&mut self) -> End {
        let mut ticker = tokio::time::interval_at(Instant::now() + self.heartbeat, self.heartbeat);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut acks_open = true;
        let mut resyncs = 0;
        loop {
            let event = tokio::select! {
                biased;
                _ = self.shutdown.wait() => return End::Shutdown,
                _ = self.outgoing.closed() => return End::ClientGone,
                ack = self.acks.next(), if acks_open => {
                    match ack {
                        Ok(Some(ack)) => match self.apply(ack) {
                            Ok(()) => continue,
                            Err(message) => return End::BadAck(message),
                        },
                        Ok(None) => {
                            // The proxy closed its side; keep streaming to it.
                            acks_open = false;
                            continue;
                        }
                        Err(AckError::Malformed(message)) => return End::BadAck(message),
                        Err(AckError::Body(error)) => return End::AckBodyFailed(error),
                    }
                }
                event = self.feed.next() => match event {
                    Some(event) => event,
                    None => return End::StoreClosed,
                },
                _ = ticker.tick() => {
                    // A blind operator (its watches failing) vouches for nothing:
                    // proxies must go stale, and strict ones fail closed.
                    if !self.readiness.is_reliable() {
                        continue;
                    }
                    ViewEvent::Heartbeat {
                        revision: self.feed.position(),
                        sent_at: Timestamp::now(),
                    }
                }
            };
            if self.feed.resyncs() != resyncs {
                resyncs = self.feed.resyncs();
                self.metrics.resyncs.inc();
                tracing::warn!(
                    server_id = self.subscriber.server_id(),
                    "lock-view subscriber fell behind; resyncing it with a snapshot"
                );
            }
            let line = Bytes::from(encode_line(&event));
            tokio::select! {
                sent = self.outgoing.send(Ok(line)) => if sent.is_err() {
                    return End::ClientGone;
                },
                _ = self.shutdown.wait() => return End::Shutdown,
            }
        }
    }

    /// Records an ack, refusing one that names another proxy or a revision
    /// this stream never sent (which would inflate `enforcedBy`).
    fn apply(&self, ack: Ack) -> Result<(), String> {
        let Ack::Applied {
            revision,
            server_id,
        } = ack;
        if server_id != self.subscriber.server_id() {
            return Err(format!(
                "the ack names server id {server_id:?}, but this stream is for {:?}",
                self.subscriber.server_id()
            ));
        }
        if revision > self.feed.position() {
            return Err(format!(
                "the ack is for revision {revision}, but only revisions up to {} were sent",
                self.feed.position()
            ));
        }
        if self.subscriber.ack(revision) {
            let arrived = std::time::Instant::now();
            let produced = self.store.produced_at(revision);
            if let Some(elapsed) = propagation(produced, self.since, arrived) {
                self.metrics.observe_propagation(elapsed);
            }
        }
        Ok(())
    }
}

/// How long a change produced at `produced` took to be acked at `arrived`, by
/// a stream open since `since`. `None` for a revision too old for the store to
/// remember, or produced before the stream started: the first snapshot brings
/// those to a (re)connecting proxy, and the wait was not propagation.
fn propagation(
    produced: Option<std::time::Instant>,
    since: std::time::Instant,
    arrived: std::time::Instant,
) -> Option<Duration> {
    let produced = produced.filter(|&produced| produced >= since)?;
    Some(arrived.saturating_duration_since(produced))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn propagation_counts_only_changes_made_while_the_stream_was_open() {
        let long_ago = std::time::Instant::now();
        let since = long_ago + Duration::from_secs(60);
        let produced = since + Duration::from_millis(5);
        let arrived = produced + Duration::from_millis(20);
        assert_eq!(
            propagation(Some(produced), since, arrived),
            Some(Duration::from_millis(20))
        );
        assert_eq!(propagation(Some(since), since, since), Some(Duration::ZERO));
        // Forgotten by the store, or old news that the first snapshot delivered.
        assert_eq!(propagation(None, since, arrived), None);
        assert_eq!(propagation(Some(long_ago), since, arrived), None);
    }
}
