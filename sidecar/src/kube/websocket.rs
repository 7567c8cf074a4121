//! WebSocket frames (RFC 6455) on the server→client side of a relayed exec,
//! attach or port-forward: where frames and messages end, so a cut never lands
//! inside one, and the frames a cut writes — the Kubernetes error channel
//! (channel 3) with the lock message, then a close frame.

use base64::Engine;

use crate::framing::{Framing, FramingError, bytes_to_boundary_by_steps};

const OPCODE_TEXT: u8 = 0x1;
const OPCODE_BINARY: u8 = 0x2;
const OPCODE_CLOSE: u8 = 0x8;
/// The remote-command error channel.
const ERROR_CHANNEL: u8 = 3;
/// A close frame's reason fits in 123 bytes (125 minus the code).
const MAX_CLOSE_REASON: usize = 123;
/// Close code for a normal closure: client-go then reads the error channel to its end.
pub const CLOSE_NORMAL: u16 = 1000;
/// Close code for a policy violation: used where there is no error channel.
pub const CLOSE_POLICY_VIOLATION: u16 = 1008;

/// Tracks frame and message boundaries. A message split over several frames
/// (FIN unset) is one unit: no other data frame may start before its end,
/// though control frames may come in between.
#[derive(Debug, Default, Clone)]
pub struct FrameTracker {
    header: [u8; 14],
    header_len: usize,
    remaining: u64,
    inside_fragmented_message: bool,
}

impl FrameTracker {
    /// Header bytes needed, from what has arrived of it (at least 2).
    fn header_needed(&self) -> usize {
        if self.header_len < 2 {
            return 2;
        }
        let extended = match self.header[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
        2 + extended + mask
    }

    fn start_frame(&mut self) -> Result<(), FramingError> {
        let fin = self.header[0] & 0x80 != 0;
        let opcode = self.header[0] & 0x0f;
        let length = match self.header[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            127 => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&self.header[2..10]);
                let length = u64::from_be_bytes(bytes);
                if length >> 63 != 0 {
                    return Err(FramingError(format!(
                        "WebSocket frame length {length} has its top bit set"
                    )));
                }
                length
            }
            short => u64::from(short),
        };
        if opcode < OPCODE_CLOSE {
            // Data and continuation frames: the message goes on until FIN.
            self.inside_fragmented_message = !fin;
        }
        self.remaining = length;
        self.header_len = 0;
        Ok(())
    }
}

impl Framing for FrameTracker {
    fn advance(&mut self, mut data: &[u8]) -> Result<(), FramingError> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let take = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                self.remaining -= take as u64;
                data = &data[take..];
                continue;
            }
            // Headers are short; take them a byte at a time until complete.
            self.header[self.header_len] = data[0];
            self.header_len += 1;
            data = &data[1..];
            if self.header_len >= 2 && self.header_len == self.header_needed() {
                self.start_frame()?;
            }
        }
        Ok(())
    }

    fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.remaining == 0 && !self.inside_fragmented_message
    }

    fn bytes_to_boundary(&self, data: &[u8]) -> Option<usize> {
        bytes_to_boundary_by_steps(
            self.clone(),
            |probe| usize::try_from(probe.remaining).unwrap_or(usize::MAX),
            data,
        )
    }
}

/// An unmasked (server-to-client) frame with FIN set.
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        short @ 0..=125 => out.push(short as u8),
        medium @ 126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(medium as u16).to_be_bytes());
        }
        long => {
            out.push(127);
            out.extend_from_slice(&(long as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// A close frame with a code and as much of `reason` as fits, cut at a character boundary.
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    frame(OPCODE_CLOSE, &payload)
}

/// The frame that puts `error` on the remote-command error channel, in the
/// encoding of the negotiated subprotocol: `v4`/`v5` carry a `Status` JSON,
/// older versions plain text; `base64` variants use text frames with the
/// channel as a digit. `None` for subprotocols without an error channel.
pub fn error_channel_frame(
    subprotocol: &str,
    status_json: &[u8],
    message: &str,
) -> Option<Vec<u8>> {
    let subprotocol = subprotocol.trim().to_ascii_lowercase();
    let (version, base64) = match subprotocol.as_str() {
        "channel.k8s.io" => (1, false),
        "base64.channel.k8s.io" => (1, true),
        other => {
            let (version, rest) = other.strip_prefix('v')?.split_once('.')?;
            let version: u32 = version.parse().ok()?;
            match rest {
                "channel.k8s.io" => (version, false),
                "base64.channel.k8s.io" => (version, true),
                _ => return None,
            }
        }
    };
    let payload = if version >= 4 {
        status_json
    } else {
        message.as_bytes()
    };
    Some(if base64 {
        let mut text = vec![b'0' + ERROR_CHANNEL];
        text.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(payload)
                .as_bytes(),
        );
        frame(OPCODE_TEXT, &text)
    } else {
        let mut binary = vec![ERROR_CHANNEL];
        binary.extend_from_slice(payload);
        frame(OPCODE_BINARY, &binary)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPCODE_CONTINUATION: u8 = 0x0;

    fn masked(opcode_byte: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![opcode_byte, 0x80 | payload.len() as u8, 1, 2, 3, 4];
        out.extend(
            payload
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]),
        );
        out
    }

    #[test]
    fn frames_of_every_length_form_are_tracked_across_any_split() {
        let frames = [
            frame(OPCODE_BINARY, b"\x01hello"),
            frame(OPCODE_BINARY, &[1; 300]),
            frame(OPCODE_BINARY, &[2; 70_000]),
            masked(0x80 | OPCODE_TEXT, b"masked"),
            frame(0x9, b""), // ping
        ];
        let mut stream = Vec::new();
        let mut boundaries = vec![0];
        for unit in &frames {
            stream.extend_from_slice(unit);
            boundaries.push(stream.len());
        }
        for split in (0..stream.len()).step_by(97).chain(0..400) {
            let mut tracker = FrameTracker::default();
            tracker.advance(&stream[..split]).unwrap();
            let expected = boundaries.iter().find(|b| **b >= split).unwrap();
            assert_eq!(
                tracker.bytes_to_boundary(&stream[split..]),
                Some(expected - split),
                "split at {split}"
            );
            tracker.advance(&stream[split..]).unwrap();
            assert!(tracker.at_boundary(), "split at {split}");
        }
    }

    #[test]
    fn a_fragmented_message_is_one_unit_even_with_a_ping_inside() {
        let mut tracker = FrameTracker::default();
        // Text "ab" split in two, with a ping in between.
        tracker.advance(&[OPCODE_TEXT, 1, b'a']).unwrap();
        assert!(!tracker.at_boundary());
        let ping = frame(0x9, b"p");
        tracker.advance(&ping).unwrap();
        assert!(
            !tracker.at_boundary(),
            "a control frame does not end the message"
        );
        let last = [0x80 | OPCODE_CONTINUATION, 1, b'b'];
        assert_eq!(tracker.bytes_to_boundary(&last), Some(3));
        tracker.advance(&last).unwrap();
        assert!(tracker.at_boundary());
    }

    #[test]
    fn an_absurd_length_is_an_error() {
        let mut tracker = FrameTracker::default();
        let mut header = vec![0x82, 127];
        header.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(tracker.advance(&header).is_err());
    }

    #[test]
    fn the_error_channel_speaks_each_subprotocol() {
        let status = br#"{"kind":"Status"}"#;
        let v5 = error_channel_frame("v5.channel.k8s.io", status, "m").unwrap();
        assert_eq!(&v5[..3], &[0x82, 18, 3]);
        assert_eq!(&v5[3..], status);
        let v2 = error_channel_frame("v2.channel.k8s.io", status, "locked").unwrap();
        assert_eq!(&v2[2..], b"\x03locked");
        let base64 = error_channel_frame("v4.base64.channel.k8s.io", status, "m").unwrap();
        assert_eq!(base64[0], 0x81);
        assert_eq!(base64[2], b'3');
        assert!(error_channel_frame("SPDY/3.1+portforward.k8s.io", status, "m").is_none());
        assert!(error_channel_frame("v4.other", status, "m").is_none());
    }

    #[test]
    fn close_reasons_are_cut_to_fit_at_a_character_boundary() {
        let reason = "é".repeat(100);
        let close = close_frame(CLOSE_NORMAL, &reason);
        assert_eq!(close[0], 0x88);
        assert!(close[1] as usize <= 125);
        assert!(std::str::from_utf8(&close[4..]).is_ok());
        assert_eq!(&close[2..4], &1000u16.to_be_bytes());
    }
}
