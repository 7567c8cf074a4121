//! An HTTP body fed from a channel: the lock-view response stream (and, in
//! tests, the ack request stream), or a fixed payload for short replies.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::{Body, Bytes, Frame, SizeHint};
use tokio::sync::mpsc;

/// Why a streamed body was cut short; the peer sees the HTTP/2 stream reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyAborted(pub String);

impl fmt::Display for BodyAborted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream aborted: {}", self.0)
    }
}

impl std::error::Error for BodyAborted {}

/// What a [`ChannelBody`]'s sender pushes: data, or an abort.
pub type BodyChunk = Result<Bytes, BodyAborted>;

/// A body that is either fixed bytes or whatever a channel delivers. The body
/// ends when every sender is dropped.
#[derive(Debug)]
pub struct ChannelBody {
    source: Source,
}

#[derive(Debug)]
enum Source {
    Full(Option<Bytes>),
    Channel(mpsc::Receiver<BodyChunk>),
}

impl ChannelBody {
    /// A body of these bytes.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self {
            source: Source::Full((!bytes.is_empty()).then_some(bytes)),
        }
    }

    /// A whole response: `status`, `content_type` and these bytes.
    pub fn response(
        status: http::StatusCode,
        content_type: &'static str,
        bytes: impl Into<Bytes>,
    ) -> http::Response<Self> {
        let mut response = http::Response::new(Self::full(bytes));
        *response.status_mut() = status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        response
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self::full(Bytes::new())
    }

    /// A streamed body and its sender; `capacity` chunks may wait in between.
    pub fn channel(capacity: usize) -> (mpsc::Sender<BodyChunk>, Self) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let body = Self {
            source: Source::Channel(receiver),
        };
        (sender, body)
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BodyAborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyAborted>>> {
        match &mut self.get_mut().source {
            Source::Full(bytes) => Poll::Ready(bytes.take().map(|bytes| Ok(Frame::data(bytes)))),
            Source::Channel(receiver) => receiver
                .poll_recv(cx)
                .map(|chunk| chunk.map(|chunk| chunk.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.source, Source::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |bytes| bytes.len() as u64))
            }
            Source::Channel(_) => SizeHint::default(),
        }
    }
}
