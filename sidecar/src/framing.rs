//! Where the units of a relayed byte stream begin and end, so a cut can wait
//! for the unit in flight and inject its notice between two units, never inside
//! one. Every proxy relays bytes as they arrive and keeps one tracker per
//! direction: PostgreSQL messages, protobuf watch events and SPDY frames
//! ([`LengthPrefixed`]), newline-delimited JSON ([`Lines`]) and WebSocket
//! frames ([`crate::kube::websocket`], whose lengths are variable-width).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a stream can no longer be tracked; the relay then cuts by closing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unframeable stream: {0}")]
pub struct FramingError(pub String);

/// Tracks unit boundaries in a byte stream that is forwarded as it arrives.
pub trait Framing: Send {
    /// Consumes bytes that are being forwarded.
    fn advance(&mut self, data: &[u8]) -> Result<(), FramingError>;

    /// Whether everything seen so far ends exactly at a unit boundary.
    fn at_boundary(&self) -> bool;

    /// How many leading bytes of `data` finish the unit in progress, leaving the
    /// stream at a boundary; `None` when `data` ends first. Zero at a boundary.
    fn bytes_to_boundary(&self, data: &[u8]) -> Option<usize>;
}

/// Newline-delimited units: JSON watch events and log lines.
#[derive(Debug, Default, Clone)]
pub struct Lines {
    inside_line: bool,
}

impl Framing for Lines {
    fn advance(&mut self, data: &[u8]) -> Result<(), FramingError> {
        if let Some(last) = data.last() {
            self.inside_line = *last != b'\n';
        }
        Ok(())
    }

    fn at_boundary(&self) -> bool {
        !self.inside_line
    }

    fn bytes_to_boundary(&self, data: &[u8]) -> Option<usize> {
        if !self.inside_line {
            return Some(0);
        }
        data.iter().position(|b| *b == b'\n').map(|at| at + 1)
    }
}

/// Units behind a fixed-size header that holds a big-endian length: PostgreSQL
/// messages, the protobuf watch stream and SPDY/3 frames.
#[derive(Debug, Clone)]
pub struct LengthPrefixed {
    /// Bytes of header before the payload.
    header_size: usize,
    /// Where the length field starts in the header, and how many bytes it has.
    length_at: usize,
    length_width: usize,
    length_counts_itself: bool,
    max_unit: usize,
    header: [u8; 8],
    header_len: usize,
    remaining: usize,
}

impl LengthPrefixed {
    /// The protobuf watch stream (`application/vnd.kubernetes.protobuf;stream=watch`):
    /// a 4-byte length, then the event. A watch event wraps one object, and
    /// the API server caps requests at 3 MiB, so 256 MiB is generous.
    pub fn protobuf_watch() -> Self {
        Self::new(4, 0, 4, false, 256 * 1024 * 1024)
    }

    /// PostgreSQL's typed messages: a tag byte, then a 4-byte length that
    /// counts itself, at most 1 GiB less one byte, as PostgreSQL itself allows.
    pub fn postgres() -> Self {
        Self::new(5, 1, 4, true, (1 << 30) - 1)
    }

    /// SPDY/3 frames, control and data alike: 8 header bytes whose last three
    /// are the payload's length (so never more than 16 MiB).
    pub fn spdy() -> Self {
        Self::new(8, 5, 3, false, (1 << 24) - 1)
    }

    fn new(
        header_size: usize,
        length_at: usize,
        length_width: usize,
        length_counts_itself: bool,
        max_unit: usize,
    ) -> Self {
        Self {
            header_size,
            length_at,
            length_width,
            length_counts_itself,
            max_unit,
            header: [0; 8],
            header_len: 0,
            remaining: 0,
        }
    }
}

impl Framing for LengthPrefixed {
    fn advance(&mut self, mut data: &[u8]) -> Result<(), FramingError> {
        let header_size = self.header_size;
        while !data.is_empty() {
            if self.remaining > 0 {
                let take = self.remaining.min(data.len());
                self.remaining -= take;
                data = &data[take..];
                continue;
            }
            let take = (header_size - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
            self.header_len += take;
            data = &data[take..];
            if self.header_len == header_size {
                let field = &self.header[self.length_at..self.length_at + self.length_width];
                let length = field
                    .iter()
                    .fold(0_i64, |length, byte| (length << 8) | i64::from(*byte));
                let body = if self.length_counts_itself {
                    length - self.length_width as i64
                } else {
                    length
                };
                // The limit applies to the length as the wire states it.
                if body < 0 || length as usize > self.max_unit {
                    return Err(FramingError(format!("invalid message length {length}")));
                }
                self.remaining = body as usize;
                self.header_len = 0;
            }
        }
        Ok(())
    }

    fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.remaining == 0
    }

    fn bytes_to_boundary(&self, data: &[u8]) -> Option<usize> {
        bytes_to_boundary_by_steps(self.clone(), |probe| probe.remaining, data)
    }
}

/// Relays the rest of the unit in flight from `reader` to `writer`, and
/// nothing after it. Returns whether the stream now stands at a boundary.
pub async fn finish_unit<R, W>(reader: &mut R, writer: &mut W, framing: &mut dyn Framing) -> bool
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buffer = vec![0u8; 16 * 1024];
    while !framing.at_boundary() {
        let n = match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let take = framing.bytes_to_boundary(&buffer[..n]).unwrap_or(n);
        if framing.advance(&buffer[..take]).is_err()
            || writer.write_all(&buffer[..take]).await.is_err()
        {
            return false;
        }
    }
    true
}

/// [`Framing::bytes_to_boundary`] for trackers that are cheap to clone: feeds
/// a copy header bytes one at a time and payloads whole.
pub fn bytes_to_boundary_by_steps<F: Framing + Clone>(
    mut probe: F,
    payload_remaining: impl Fn(&F) -> usize,
    data: &[u8],
) -> Option<usize> {
    let mut consumed = 0;
    while !probe.at_boundary() {
        if consumed == data.len() {
            return None;
        }
        let step = payload_remaining(&probe).clamp(1, data.len() - consumed);
        probe.advance(&data[consumed..consumed + step]).ok()?;
        consumed += step;
    }
    Some(consumed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_know_where_an_event_ends() {
        let mut lines = Lines::default();
        assert!(lines.at_boundary());
        lines.advance(b"{\"type\":\"ADDED\"").unwrap();
        assert!(!lines.at_boundary());
        assert_eq!(lines.bytes_to_boundary(b",\"x\":1}\n{\"type\""), Some(8));
        assert_eq!(lines.bytes_to_boundary(b"more"), None);
        lines.advance(b"}\n").unwrap();
        assert!(lines.at_boundary());
        assert_eq!(lines.bytes_to_boundary(b"anything"), Some(0));
    }

    fn prefixed(payload: &[u8]) -> Vec<u8> {
        let mut unit = (payload.len() as u32).to_be_bytes().to_vec();
        unit.extend_from_slice(payload);
        unit
    }

    #[test]
    fn length_prefixes_are_tracked_across_any_split() {
        let mut stream = prefixed(b"first event");
        stream.extend(prefixed(b""));
        stream.extend(prefixed(&[7; 300]));
        for split in 0..stream.len() {
            let mut tracker = LengthPrefixed::protobuf_watch();
            tracker.advance(&stream[..split]).unwrap();
            let to_boundary = tracker.bytes_to_boundary(&stream[split..]).unwrap();
            let mut probe = tracker.clone();
            probe.advance(&stream[split..split + to_boundary]).unwrap();
            assert!(probe.at_boundary(), "split at {split}");
            tracker.advance(&stream[split..]).unwrap();
            assert!(tracker.at_boundary(), "split at {split}");
        }
        let mut tracker = LengthPrefixed::protobuf_watch();
        tracker.advance(&stream[..6]).unwrap();
        assert_eq!(tracker.bytes_to_boundary(&stream[6..]), Some(15 - 6));
        assert_eq!(tracker.bytes_to_boundary(&stream[6..10]), None);
    }

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn postgres_messages_are_tracked_across_any_split() {
        let mut stream = message(b'D', b"hello");
        stream.extend(message(b'C', b"SELECT 1\0"));
        stream.extend(message(b'Z', b"I"));
        for split in 0..stream.len() {
            let mut tracker = LengthPrefixed::postgres();
            tracker.advance(&stream[..split]).unwrap();
            tracker.advance(&stream[split..]).unwrap();
            assert!(tracker.at_boundary(), "split at {split}");
        }
        let mut tracker = LengthPrefixed::postgres();
        tracker.advance(&stream[..3]).unwrap();
        assert!(!tracker.at_boundary());
        assert_eq!(tracker.bytes_to_boundary(&stream[3..]), Some(10 - 3));
    }

    #[test]
    fn absurd_lengths_are_errors() {
        let mut tracker = LengthPrefixed::protobuf_watch();
        assert!(tracker.advance(&[0xff, 0xff, 0xff, 0xff]).is_err());
        for header in [
            [b'Q', 0, 0, 0, 3],
            [b'Q', 0x7f, 0xff, 0xff, 0xff],
            [b'Q', 0xff, 0xff, 0xff, 0xff],
        ] {
            let mut tracker = LengthPrefixed::postgres();
            assert!(tracker.advance(&header).is_err(), "{header:?}");
        }
    }

    #[tokio::test]
    async fn finishing_a_unit_forwards_exactly_its_rest() {
        let stream = [message(b'D', b"row"), message(b'Z', b"I")].concat();
        let mut tracker = LengthPrefixed::postgres();
        tracker.advance(&stream[..2]).unwrap();
        let mut reader = &stream[2..];
        let mut forwarded = Vec::new();
        assert!(finish_unit(&mut reader, &mut forwarded, &mut tracker).await);
        assert_eq!(forwarded, &stream[2..8]);
        assert!(tracker.at_boundary());
    }
}
