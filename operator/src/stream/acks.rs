//! Reads the request body of a lock-view stream as NDJSON [`Ack`] lines.

use std::collections::VecDeque;

use deadbolt_api::protocol::{Ack, decode_line};
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// Longest ack line accepted; real acks are under 200 bytes.
pub(super) const MAX_LINE: usize = 16 * 1024;

/// Why the ack stream could not be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum AckError {
    /// A line is not a valid ack: the subscriber is disconnected.
    #[error("{0}")]
    Malformed(String),
    /// The request body failed (the client reset it or went away).
    #[error("reading acks failed: {0}")]
    Body(#[from] hyper::Error),
}

/// Splits the body into lines and decodes each as an [`Ack`]. Blank lines are skipped.
pub(super) struct AckReader {
    body: Incoming,
    partial: Vec<u8>,
    lines: VecDeque<Vec<u8>>,
    ended: bool,
}

impl AckReader {
    pub(super) fn new(body: Incoming) -> Self {
        Self {
            body,
            partial: Vec::new(),
            lines: VecDeque::new(),
            ended: false,
        }
    }

    /// The next ack, or `None` once the client closed its side. Cancel-safe:
    /// the only await is for the next frame, and nothing is consumed before it.
    pub(super) async fn next(&mut self) -> Result<Option<Ack>, AckError> {
        loop {
            if let Some(line) = self.lines.pop_front() {
                if line.trim_ascii().is_empty() {
                    continue;
                }
                return decode_line(&line).map(Some).map_err(|error| {
                    AckError::Malformed(format!("{error} in line {:?}", preview(&line)))
                });
            }
            if self.ended {
                if self.partial.is_empty() {
                    return Ok(None);
                }
                self.lines.push_back(std::mem::take(&mut self.partial));
                continue;
            }
            match self.body.frame().await {
                None => self.ended = true,
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        self.push(&data)?;
                    }
                }
            }
        }
    }

    fn push(&mut self, mut data: &[u8]) -> Result<(), AckError> {
        while let Some(newline) = data.iter().position(|&byte| byte == b'\n') {
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&data[..newline]);
            self.check_length(line.len())?;
            self.lines.push_back(line);
            data = &data[newline + 1..];
        }
        self.check_length(self.partial.len() + data.len())?;
        self.partial.extend_from_slice(data);
        Ok(())
    }

    fn check_length(&self, length: usize) -> Result<(), AckError> {
        if length > MAX_LINE {
            return Err(AckError::Malformed(format!(
                "an ack line is longer than {MAX_LINE} bytes"
            )));
        }
        Ok(())
    }
}

/// The start of a line, safe to log.
fn preview(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(&line[..line.len().min(120)]);
    text.into_owned()
}
