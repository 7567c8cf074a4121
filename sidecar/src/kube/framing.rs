//! Where the units of a relayed byte stream begin and end, so a cut can wait
//! for the unit in flight and inject its notice between two units, never inside
//! one. One tracker per stream format: newline-delimited JSON (watch events,
//! log lines), 4-byte length prefixes (protobuf watch events), WebSocket frames
//! ([`super::websocket`]) and SPDY frames ([`super::spdy`]).

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

/// The longest length-prefixed unit accepted (the API server's own limit on a
/// request is 3 MiB; a watch event wraps one object).
const MAX_PREFIXED_UNIT: usize = 256 * 1024 * 1024;

/// Units behind a 4-byte big-endian length: the protobuf watch stream
/// (`application/vnd.kubernetes.protobuf;stream=watch`).
#[derive(Debug, Default, Clone)]
pub struct LengthPrefixed {
    header: [u8; 4],
    header_len: usize,
    remaining: usize,
}

impl Framing for LengthPrefixed {
    fn advance(&mut self, mut data: &[u8]) -> Result<(), FramingError> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let take = self.remaining.min(data.len());
                self.remaining -= take;
                data = &data[take..];
                continue;
            }
            let take = (4 - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
            self.header_len += take;
            data = &data[take..];
            if self.header_len == 4 {
                let length = u32::from_be_bytes(self.header) as usize;
                if length > MAX_PREFIXED_UNIT {
                    return Err(FramingError(format!("a {length}-byte unit")));
                }
                self.remaining = length;
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
            let mut tracker = LengthPrefixed::default();
            tracker.advance(&stream[..split]).unwrap();
            let to_boundary = tracker.bytes_to_boundary(&stream[split..]).unwrap();
            let mut probe = tracker.clone();
            probe.advance(&stream[split..split + to_boundary]).unwrap();
            assert!(probe.at_boundary(), "split at {split}");
            tracker.advance(&stream[split..]).unwrap();
            assert!(tracker.at_boundary(), "split at {split}");
        }
        let mut tracker = LengthPrefixed::default();
        tracker.advance(&stream[..6]).unwrap();
        assert_eq!(tracker.bytes_to_boundary(&stream[6..]), Some(15 - 6));
        assert_eq!(tracker.bytes_to_boundary(&stream[6..10]), None);
    }

    #[test]
    fn absurd_lengths_are_errors() {
        let mut tracker = LengthPrefixed::default();
        assert!(tracker.advance(&[0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
