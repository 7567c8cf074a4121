//! SPDY/3.1, as Kubernetes uses it for exec, attach and port-forward with
//! older clients (`KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`): where frames end
//! (so a cut lands between two), the zlib-compressed header blocks (so the
//! proxy learns which stream is a command's error stream), and the frames a
//! cut writes. Also what a test server needs to speak it.

use std::sync::LazyLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The protocol version in every control frame.
pub const VERSION: u16 = 3;
/// Control frame type: a new stream, with its headers.
pub const SYN_STREAM: u16 = 1;
/// Control frame type: the reply to a new stream.
pub const SYN_REPLY: u16 = 2;
/// Control frame type: a stream reset.
pub const RST_STREAM: u16 = 3;
/// Control frame type: settings.
pub const SETTINGS: u16 = 4;
/// Control frame type: a ping, echoed by the peer.
pub const PING: u16 = 6;
/// Control frame type: the session ends.
pub const GOAWAY: u16 = 7;
/// Control frame type: more headers for a stream.
pub const HEADERS: u16 = 8;
/// Control frame type: flow-control credit.
pub const WINDOW_UPDATE: u16 = 9;
/// Flag: the sender is done with the stream.
pub const FLAG_FIN: u8 = 0x01;
/// Frames longer than this are refused (SPDY's own limit is 2^24 - 1).
const MAX_FRAME: usize = (1 << 24) - 1;
/// Header blocks longer than this, compressed or not, are not read.
const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// Why SPDY bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SPDY: {0}")]
pub struct SpdyError(pub String);

/// The zlib dictionary every SPDY/3 header block is compressed with
/// (SPDY/3 §2.6.10.1): length-prefixed header names and values, then status
/// lines, dates and common values.
pub static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    const WORDS: [&str; 66] = [
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
        "",
    ];
    const TAIL: &str = concat!(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
        "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
        "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
        "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
        "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
        "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    );
    let mut dictionary = Vec::with_capacity(1423);
    for word in WORDS.iter().filter(|word| !word.is_empty()) {
        dictionary.extend_from_slice(&(word.len() as u32).to_be_bytes());
        dictionary.extend_from_slice(word.as_bytes());
    }
    dictionary.extend_from_slice(TAIL.as_bytes());
    dictionary
});

/// The 8-byte header every frame starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameHead {
    /// A control frame of type `kind`.
    Control {
        /// SYN_STREAM, PING, ...
        kind: u16,
        /// Its flags.
        flags: u8,
        /// Payload length.
        length: usize,
    },
    /// A data frame of `stream`.
    Data {
        /// The stream id.
        stream: u32,
        /// Its flags.
        flags: u8,
        /// Payload length.
        length: usize,
    },
}

impl FrameHead {
    /// Reads a frame header.
    pub fn parse(bytes: [u8; 8]) -> Self {
        let flags = bytes[4];
        let length =
            usize::from(bytes[5]) << 16 | usize::from(bytes[6]) << 8 | usize::from(bytes[7]);
        if bytes[0] & 0x80 != 0 {
            Self::Control {
                kind: u16::from_be_bytes([bytes[2], bytes[3]]),
                flags,
                length,
            }
        } else {
            Self::Data {
                stream: u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) & 0x7fff_ffff,
                flags,
                length,
            }
        }
    }

    /// The payload length.
    pub fn length(self) -> usize {
        match self {
            Self::Control { length, .. } | Self::Data { length, .. } => length,
        }
    }
}

/// A control frame.
pub fn control_frame(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    frame.extend_from_slice(&kind.to_be_bytes());
    push_flags_and_length(&mut frame, flags, payload.len());
    frame.extend_from_slice(payload);
    frame
}

/// A data frame on `stream`.
pub fn data_frame(stream: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    push_flags_and_length(&mut frame, flags, payload.len());
    frame.extend_from_slice(payload);
    frame
}

fn push_flags_and_length(frame: &mut Vec<u8>, flags: u8, length: usize) {
    let length = length.min(MAX_FRAME) as u32;
    frame.push(flags);
    frame.extend_from_slice(&length.to_be_bytes()[1..]);
}

/// An uncompressed name/value block: a count, then length-prefixed names and
/// values (several values of one name joined by NUL).
pub fn encode_headers(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut block = (headers.len() as u32).to_be_bytes().to_vec();
    for (name, value) in headers {
        for text in [name.to_ascii_lowercase().as_str(), value] {
            block.extend_from_slice(&(text.len() as u32).to_be_bytes());
            block.extend_from_slice(text.as_bytes());
        }
    }
    block
}

/// Reads an uncompressed name/value block.
pub fn decode_headers(block: &[u8]) -> Result<Vec<(String, String)>, SpdyError> {
    let mut offset = 0;
    let read_u32 = |offset: &mut usize, what: &str| -> Result<usize, SpdyError> {
        let bytes = block
            .get(*offset..*offset + 4)
            .ok_or_else(|| SpdyError(format!("truncated {what}")))?;
        *offset += 4;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize)
    };
    let count = read_u32(&mut offset, "header count")?;
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let text = |offset: &mut usize, what: &str| -> Result<String, SpdyError> {
            let length = read_u32(offset, what)?;
            let bytes = block
                .get(*offset..*offset + length)
                .ok_or_else(|| SpdyError(format!("truncated {what}")))?;
            *offset += length;
            Ok(String::from_utf8_lossy(bytes).into_owned())
        };
        let name = text(&mut offset, "header name")?;
        let value = text(&mut offset, "header value")?;
        headers.push((name, value));
    }
    Ok(headers)
}

/// Decompresses the header blocks of one direction of a session; they share
/// one zlib stream, so every block must pass through here in order.
pub struct HeaderInflater {
    inflate: Decompress,
}

impl Default for HeaderInflater {
    fn default() -> Self {
        Self {
            inflate: Decompress::new(true),
        }
    }
}

impl HeaderInflater {
    /// The uncompressed name/value block of one compressed block.
    pub fn inflate(&mut self, mut input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut output = Vec::with_capacity(input.len() * 4 + 256);
        loop {
            let consumed_before = self.inflate.total_in();
            let result = self
                .inflate
                .decompress_vec(input, &mut output, FlushDecompress::Sync);
            let consumed = (self.inflate.total_in() - consumed_before) as usize;
            input = &input[consumed.min(input.len())..];
            match result {
                Ok(Status::StreamEnd) => return Ok(output),
                Ok(_) if input.is_empty() && output.len() < output.capacity() => return Ok(output),
                Ok(_) => {}
                Err(error) if error.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(&DICTIONARY)
                        .map_err(|error| SpdyError(format!("header dictionary: {error}")))?;
                }
                Err(error) => return Err(SpdyError(format!("corrupt header block: {error}"))),
            }
            if output.len() > MAX_HEADER_BLOCK {
                return Err(SpdyError("header block too large".into()));
            }
            output.reserve(4096);
        }
    }
}

/// Compresses the header blocks one side sends.
pub struct HeaderDeflater {
    deflate: Compress,
}

impl Default for HeaderDeflater {
    fn default() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        // Only fails for a stream that has already started.
        let _ = deflate.set_dictionary(&DICTIONARY);
        Self { deflate }
    }
}

impl HeaderDeflater {
    /// One compressed block, flushed so the peer can read it at once.
    pub fn deflate(&mut self, mut input: &[u8]) -> Vec<u8> {
        let mut output = Vec::with_capacity(input.len() + 64);
        loop {
            let consumed_before = self.deflate.total_in();
            let result = self
                .deflate
                .compress_vec(input, &mut output, FlushCompress::Sync);
            let consumed = (self.deflate.total_in() - consumed_before) as usize;
            input = &input[consumed.min(input.len())..];
            if result.is_err() || (input.is_empty() && output.len() < output.capacity()) {
                return output;
            }
            output.reserve(256);
        }
    }
}

/// Streams remembered at most (a port-forward opens two per connection).
const MAX_STREAMS: usize = 2048;

/// Follows the client's frames to learn its streams' types from their
/// compressed headers: the error stream of an exec, or of each connection of
/// a port-forward, is where a cut's message goes.
#[derive(Default)]
pub struct StreamWatcher {
    header: [u8; 8],
    header_len: usize,
    remaining: usize,
    /// The payload of a header-carrying control frame being collected.
    collecting: Option<Vec<u8>>,
    inflater: HeaderInflater,
    error_streams: Vec<u32>,
    data_streams: Vec<u32>,
    lost: bool,
}

impl StreamWatcher {
    /// The first stream the client opened with `streamtype: error`, once seen.
    pub fn error_stream(&self) -> Option<u32> {
        self.error_streams().first().copied()
    }

    /// Every stream the client opened with `streamtype: error`, in order.
    pub fn error_streams(&self) -> &[u32] {
        if self.lost { &[] } else { &self.error_streams }
    }

    /// Every stream the client opened with `streamtype: data` (a port-forward's connections).
    pub fn data_streams(&self) -> &[u32] {
        if self.lost { &[] } else { &self.data_streams }
    }

    /// Consumes client→server bytes. After anything unreadable it stops
    /// following (and [`StreamWatcher::error_stream`] answers `None`).
    pub fn advance(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.lost {
            if self.remaining > 0 {
                let take = self.remaining.min(data.len());
                if let Some(payload) = self.collecting.as_mut() {
                    payload.extend_from_slice(&data[..take]);
                }
                self.remaining -= take;
                data = &data[take..];
                if self.remaining == 0 {
                    self.finish_frame();
                }
                continue;
            }
            let take = (8 - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
            self.header_len += take;
            data = &data[take..];
            if self.header_len < 8 {
                continue;
            }
            self.header_len = 0;
            let head = FrameHead::parse(self.header);
            self.remaining = head.length();
            self.collecting = match head {
                FrameHead::Control { kind, length, .. }
                    if kind == SYN_STREAM || kind == HEADERS =>
                {
                    if length > MAX_HEADER_BLOCK {
                        self.lost = true;
                        return;
                    }
                    Some(Vec::with_capacity(length))
                }
                _ => None,
            };
            if self.remaining == 0 {
                self.finish_frame();
            }
        }
    }

    fn finish_frame(&mut self) {
        let Some(payload) = self.collecting.take() else {
            return;
        };
        let kind = u16::from_be_bytes([self.header[2], self.header[3]]);
        // SYN_STREAM: stream id, associated id, priority, slot; HEADERS: stream id.
        let block_at = if kind == SYN_STREAM { 10 } else { 4 };
        let (Some(id), Some(block)) = (payload.get(..4), payload.get(block_at..)) else {
            self.lost = true;
            return;
        };
        let stream = u32::from_be_bytes([id[0], id[1], id[2], id[3]]) & 0x7fff_ffff;
        let headers = self
            .inflater
            .inflate(block)
            .and_then(|block| decode_headers(&block));
        match headers {
            Ok(headers) => {
                let stream_type = headers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("streamtype"))
                    .map(|(_, value)| value.as_str());
                let known = self.error_streams.len() + self.data_streams.len();
                match stream_type {
                    _ if known >= MAX_STREAMS => {}
                    Some("error") => self.error_streams.push(stream),
                    Some("data") => self.data_streams.push(stream),
                    _ => {}
                }
            }
            Err(error) => {
                tracing::debug!(%error, "cannot follow the SPDY session's headers");
                self.lost = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::{Framing, LengthPrefixed};

    #[test]
    fn the_dictionary_is_the_spdy3_one() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert!(DICTIONARY.starts_with(b"\0\0\0\x07options\0\0\0\x04head"));
        assert!(DICTIONARY.ends_with(b"utf-,*,enq=0."));
    }

    fn syn_stream(deflater: &mut HeaderDeflater, stream: u32, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut payload = stream.to_be_bytes().to_vec();
        payload.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        payload.extend(deflater.deflate(&encode_headers(headers)));
        control_frame(SYN_STREAM, 0, &payload)
    }

    #[test]
    fn header_blocks_round_trip_through_one_shared_zlib_stream() {
        let mut deflater = HeaderDeflater::default();
        let mut inflater = HeaderInflater::default();
        for round in 0..3 {
            let value = format!("value-{round}");
            let headers = [("streamType", "stdout"), ("x", value.as_str())];
            let compressed = deflater.deflate(&encode_headers(&headers));
            let plain = inflater.inflate(&compressed).unwrap();
            assert_eq!(
                decode_headers(&plain).unwrap(),
                vec![
                    ("streamtype".to_string(), "stdout".to_string()),
                    ("x".to_string(), value.clone())
                ]
            );
        }
        assert!(HeaderInflater::default().inflate(b"garbage").is_err());
        assert!(decode_headers(&[0, 0, 0, 9, 0, 0]).is_err());
    }

    #[test]
    fn the_watcher_finds_the_error_stream_across_any_split() {
        let mut deflater = HeaderDeflater::default();
        let mut stream = syn_stream(&mut deflater, 1, &[("streamtype", "error")]);
        stream.extend(syn_stream(&mut deflater, 3, &[("streamtype", "stdout")]));
        stream.extend(data_frame(3, 0, b"ignored"));
        stream.extend(control_frame(PING, 0, &[0, 0, 0, 1]));
        for split in 0..stream.len() {
            let mut watcher = StreamWatcher::default();
            watcher.advance(&stream[..split]);
            watcher.advance(&stream[split..]);
            assert_eq!(watcher.error_stream(), Some(1), "split at {split}");
        }
        let mut garbled = StreamWatcher::default();
        garbled.advance(&control_frame(SYN_STREAM, 0, b"0123456789not zlib"));
        assert_eq!(garbled.error_stream(), None);
    }

    #[test]
    fn frames_are_tracked_across_any_split() {
        let mut stream = data_frame(1, 0, b"hello");
        stream.extend(control_frame(PING, 0, &[0, 0, 0, 1]));
        stream.extend(data_frame(3, FLAG_FIN, &[7; 5000]));
        for split in 0..stream.len() {
            let mut tracker = LengthPrefixed::spdy();
            tracker.advance(&stream[..split]).unwrap();
            let rest = tracker.bytes_to_boundary(&stream[split..]).unwrap();
            assert!(
                [0, 13, 25, stream.len()].contains(&(split + rest)),
                "split at {split}"
            );
            tracker.advance(&stream[split..]).unwrap();
            assert!(tracker.at_boundary());
        }
        assert_eq!(
            FrameHead::parse(data_frame(5, FLAG_FIN, b"abc")[..8].try_into().unwrap()),
            FrameHead::Data {
                stream: 5,
                flags: FLAG_FIN,
                length: 3
            }
        );
    }
}
