//! Long-running responses — watches, followed logs, proxied and unrecognised
//! responses — relayed chunk by chunk while their session is registered, and
//! cut at a unit boundary with a notice the client understands: a watch
//! `ERROR` event carrying the `Status`, or the lock message as the last log
//! line. The relay never lets a notice land inside an event. A response the
//! proxy cannot frame is reset, so the client sees it broken off rather than
//! complete.

use bytes::Bytes;
use deadbolt_api::engine::Denial;
use deadbolt_runtime::body::{BodyAborted, BodyChunk, ChannelBody};
use http::{Response, header};
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::body::{ProxyBody, boxed};
use super::status;
use super::strip_header::returned_headers;
use super::upstream::Guarded;
use crate::framing::{Framing, LengthPrefixed, Lines};
use crate::gate::{Ending, LiveSession};
use crate::io::CUT_GRACE;

/// Chunks that may wait between the upstream and a slow client.
const CHUNKS_IN_FLIGHT: usize = 8;

/// What kind of stream is relayed, which decides its units and its notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// A watch: a cut sends an `ERROR` event with the `Status`.
    Watch,
    /// `kubectl logs -f`: a cut appends the message as a last line.
    FollowLogs,
    /// A `*/proxy/*` response or one the proxy does not recognise: a cut resets it.
    Raw,
}

/// How a cut ends the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Notice {
    JsonWatchEvent,
    ProtobufWatchEvent,
    LogLine,
    /// A format the proxy cannot frame (CBOR): the stream just ends.
    Silent,
}

impl Notice {
    fn bytes(self, message: &str) -> Option<Bytes> {
        match self {
            Self::JsonWatchEvent => Some(status::watch_error_event(message)),
            Self::ProtobufWatchEvent => Some(status::protobuf_watch_error_event(message)),
            Self::LogLine => Some(Bytes::from(format!("{message}\n"))),
            Self::Silent => None,
        }
    }
}

/// The units of a response, from its kind and `Content-Type`.
fn framing_for(kind: StreamKind, content_type: &str) -> (Option<Box<dyn Framing>>, Notice) {
    let content_type = content_type.to_ascii_lowercase();
    match kind {
        StreamKind::FollowLogs => (Some(Box::new(Lines::default())), Notice::LogLine),
        StreamKind::Watch if content_type.starts_with("application/vnd.kubernetes.protobuf") => (
            Some(Box::new(LengthPrefixed::protobuf_watch())),
            Notice::ProtobufWatchEvent,
        ),
        StreamKind::Watch if content_type.contains("json") || content_type.is_empty() => {
            (Some(Box::new(Lines::default())), Notice::JsonWatchEvent)
        }
        StreamKind::Watch | StreamKind::Raw => (None, Notice::Silent),
    }
}

/// Relays a successful streaming response to the client, cutting it when the
/// session is cut; finishes the session when the stream ends.
pub fn relay(
    upstream: Response<Guarded>,
    kind: StreamKind,
    session: LiveSession,
) -> Response<ProxyBody> {
    let (parts, body) = upstream.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let (framing, notice) = framing_for(kind, content_type);
    let (sender, client_body) = ChannelBody::channel(CHUNKS_IN_FLIGHT);
    let span = session.span().clone();
    tokio::spawn(pump(body, sender, framing, notice, session).instrument(span));
    let mut response = Response::new(boxed(client_body));
    *response.status_mut() = parts.status;
    *response.headers_mut() = returned_headers(&parts.headers, false);
    // The length of what the client receives is no longer the upstream's.
    response.headers_mut().remove(header::CONTENT_LENGTH);
    response
}

async fn pump(
    mut body: Guarded,
    sender: mpsc::Sender<BodyChunk>,
    mut framing: Option<Box<dyn Framing>>,
    notice: Notice,
    mut session: LiveSession,
) {
    let ending = loop {
        tokio::select! {
            biased;
            denial = session.cut() => {
                break cut(&mut body, &sender, framing.as_deref_mut(), notice, denial).await;
            }
            () = sender.closed() => break Ending::Normal,
            frame = body.frame() => {
                let data = match frame {
                    None => break Ending::Normal,
                    Some(Err(error)) => {
                        let _ = sender.try_send(Err(BodyAborted(error.to_string())));
                        break Ending::Failed(format!("upstream: {error}"));
                    }
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => data,
                        Err(_trailers) => continue,
                    },
                };
                if let Some(tracker) = framing.as_mut()
                    && let Err(error) = tracker.advance(&data)
                {
                    tracing::warn!(%error, "cannot frame a streamed response; a cut will close it");
                    framing = None;
                }
                let send = sender.send(Ok(data));
                tokio::pin!(send);
                tokio::select! {
                    biased;
                    sent = &mut send => if sent.is_err() {
                        break Ending::Normal;
                    },
                    denial = session.cut() => match tokio::time::timeout(CUT_GRACE, send).await {
                        // Sent after all; the loop sees the cut next and ends cleanly.
                        Ok(Ok(())) => {}
                        _ => break Ending::Cut(denial),
                    },
                }
            }
        }
    };
    session.finish(ending);
}

/// Finishes the unit in flight, sends the notice, and ends the stream (the
/// sender is dropped by the caller).
async fn cut(
    body: &mut Guarded,
    sender: &mpsc::Sender<BodyChunk>,
    framing: Option<&mut (dyn Framing + 'static)>,
    notice: Notice,
    denial: Denial,
) -> Ending {
    let Some(framing) = framing else {
        let reset = Err(BodyAborted(denial.message().to_string()));
        let _ = tokio::time::timeout(CUT_GRACE, sender.send(reset)).await;
        return Ending::Cut(denial);
    };
    let finished = tokio::time::timeout(CUT_GRACE, finish_unit(body, sender, framing))
        .await
        .unwrap_or(false);
    let notice = match (finished, notice) {
        (true, notice) => notice.bytes(denial.message()),
        // A log line that never ended: end it, then say why.
        (false, Notice::LogLine) => Some(Bytes::from(format!("\n{}\n", denial.message()))),
        (false, _) => None,
    };
    if let Some(notice) = notice {
        let _ = tokio::time::timeout(CUT_GRACE, sender.send(Ok(notice))).await;
    }
    Ending::Cut(denial)
}

/// Relays the rest of the unit in flight and nothing after it. Returns
/// whether the stream now stands at a boundary.
async fn finish_unit(
    body: &mut Guarded,
    sender: &mpsc::Sender<BodyChunk>,
    framing: &mut dyn Framing,
) -> bool {
    while !framing.at_boundary() {
        let data = match body.frame().await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_trailers) => continue,
            },
            _ => return false,
        };
        let take = framing.bytes_to_boundary(&data).unwrap_or(data.len());
        if framing.advance(&data[..take]).is_err()
            || sender.send(Ok(data.slice(..take))).await.is_err()
        {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_gets_its_framing() {
        let (framing, notice) = framing_for(StreamKind::Watch, "application/json;stream=watch");
        assert!(framing.is_some());
        assert_eq!(notice, Notice::JsonWatchEvent);
        let (_, notice) = framing_for(
            StreamKind::Watch,
            "application/vnd.kubernetes.protobuf;stream=watch",
        );
        assert_eq!(notice, Notice::ProtobufWatchEvent);
        let (framing, notice) = framing_for(StreamKind::Watch, "application/cbor-seq");
        assert!(framing.is_none());
        assert_eq!(notice, Notice::Silent);
        let (_, notice) = framing_for(StreamKind::FollowLogs, "text/plain");
        assert_eq!(notice, Notice::LogLine);
        assert_eq!(
            Notice::LogLine.bytes("locked").unwrap(),
            Bytes::from_static(b"locked\n")
        );
    }
}
