#![no_main]
//! The PostgreSQL proxy's wire layer (`deadbolt_sidecar::postgres::wire`) on
//! arbitrary bytes. The first input byte is a control byte (its top bit picks
//! the client or the server side, the rest seeds how the stream is split); the
//! rest is the byte stream. Proves that:
//! - `LengthPrefixed::postgres()` never panics and finds exactly the message
//!   boundaries (and the first impossible length) a straightforward reference
//!   parse finds, however the stream is split into reads; `at_boundary` agrees
//!   with it at every split, and `bytes_to_boundary` from any split point
//!   reports the distance to the next boundary (or `None` when there is none);
//! - client side: `read_startup_packet` as `negotiate` uses it (SSL/GSS
//!   requests, a cancel request, then `wire::decode::<Startup>`), then
//!   `read_message` with the password-message limit and
//!   `wire::decode::<Password>` for every `p` message, never panic;
//! - server side: `read_message` with the authentication limit, then
//!   `wire::decode::<Authentication>` for `R` and `wire::decode::<ErrorResponse>`
//!   for `E`, as `upstream` dispatches them, never panic;
//! - both readers return buffers whose length field matches their size.
//!
//! libfuzzer-sys's panic hook aborts even inside `wire::decode`'s
//! `catch_unwind`, so a pgwire panic that `wire`'s structural pre-check lets
//! through is reported as a crash: in the proxy it would be a caught panic
//! (and a panic message on stderr) rather than a clean decode error.

mod common;

use bytes::BytesMut;
use deadbolt_sidecar::framing::{Framing, LengthPrefixed};
use deadbolt_sidecar::postgres::wire::{self, MAX_STARTUP_PACKET};
use futures::executor::block_on;
use libfuzzer_sys::fuzz_target;
use pgwire::messages::response::ErrorResponse;
use pgwire::messages::startup::{Authentication, GssEncRequest, Password, SslRequest, Startup};

/// The largest length field `LengthPrefixed::postgres` accepts: PostgreSQL's
/// own limit, 1 GiB less one byte (see README.md, "Findings", 4).
const MAX_LENGTH: usize = (1 << 30) - 1;
/// `negotiate::CANCEL_REQUEST_CODE` (private there).
const CANCEL_REQUEST_CODE: i32 = 80_877_102;
/// `negotiate::MAX_NEGOTIATIONS` (private there).
const MAX_NEGOTIATIONS: usize = 3;
/// `postgres::MAX_PASSWORD_MESSAGE` (private there).
const MAX_PASSWORD_MESSAGE: usize = 64 * 1024;
/// `upstream::MAX_AUTH_MESSAGE` (private there).
const MAX_AUTH_MESSAGE: usize = 1 << 20;
/// Messages read per run, so a stream of empty messages stays cheap.
const MAX_MESSAGES: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    framing(control, stream);
    if control & 0x80 == 0 {
        client_side(stream);
    } else {
        server_side(stream);
    }
});

/// What a straightforward parse of the stream says: the offsets of every
/// message boundary (0 included) up to the first impossible length.
struct Reference {
    boundaries: Vec<usize>,
    /// Where the tracker must fail: the offset just past the bad header.
    error_at: Option<usize>,
}

fn reference(stream: &[u8]) -> Reference {
    let mut boundaries = vec![0];
    let mut at = 0;
    while let Some(header) = stream.get(at..at + 5) {
        let length = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        if length < 4 || length as usize > MAX_LENGTH {
            return Reference {
                boundaries,
                error_at: Some(at + 5),
            };
        }
        at += 1 + length as usize;
        if at > stream.len() {
            break;
        }
        boundaries.push(at);
    }
    Reference {
        boundaries,
        error_at: None,
    }
}

fn framing(control: u8, stream: &[u8]) {
    let expected = reference(stream);
    let whole_at_boundary = expected.error_at.is_none()
        && expected.boundaries.last() == Some(&stream.len());

    // All at once.
    let mut whole = LengthPrefixed::postgres();
    match whole.advance(stream) {
        Ok(()) => {
            assert!(expected.error_at.is_none(), "missed an impossible length");
            assert_eq!(whole.at_boundary(), whole_at_boundary);
        }
        Err(_) => assert!(expected.error_at.is_some(), "refused a valid stream"),
    }

    // One byte at a time for short streams, in seeded chunks for all.
    if stream.len() <= 256 {
        let mut tracker = LengthPrefixed::postgres();
        for (i, byte) in stream.iter().enumerate() {
            let result = tracker.advance(std::slice::from_ref(byte));
            if expected.error_at == Some(i + 1) {
                assert!(result.is_err(), "byte-wise: no error at {}", i + 1);
                break;
            }
            assert!(result.is_ok(), "byte-wise: error at {}", i + 1);
            assert_eq!(
                tracker.at_boundary(),
                expected.boundaries.binary_search(&(i + 1)).is_ok(),
                "byte-wise: at_boundary wrong at {}",
                i + 1
            );
        }
    }

    let mut tracker = LengthPrefixed::postgres();
    let mut start = 0;
    for end in common::splits(control & 0x7f, stream.len(), &[3, 8, 64, 4096]) {
        let result = tracker.advance(&stream[start..end]);
        match expected.error_at {
            Some(error_at) if error_at <= end => {
                assert!(result.is_err(), "chunked: no error by {end} (expected at {error_at})");
                return;
            }
            _ => assert!(result.is_ok(), "chunked: error in {start}..{end}"),
        }
        start = end;
        let at_boundary = expected.boundaries.binary_search(&end).is_ok();
        assert_eq!(tracker.at_boundary(), at_boundary, "chunked: at_boundary wrong at {end}");

        let rest = &stream[end..];
        let to_boundary = tracker.bytes_to_boundary(rest);
        if at_boundary {
            continue;
        }
        let next = expected.boundaries.iter().find(|b| **b > end).map(|b| b - end);
        assert_eq!(to_boundary, next, "bytes_to_boundary wrong at {end}");
        if let Some(n) = to_boundary {
            let mut probe = tracker.clone();
            assert!(probe.advance(&rest[..n]).is_ok());
            assert!(probe.at_boundary());
        }
    }
    if expected.error_at.is_none() {
        assert_eq!(tracker.at_boundary(), whole_at_boundary);
    }
}

fn length_field(buffer: &[u8], offset: usize) -> usize {
    i32::from_be_bytes(buffer[offset..offset + 4].try_into().unwrap()) as usize
}

/// The client's side of a plaintext login, as `negotiate::open` (with
/// plaintext allowed) and `postgres::read_password` read it.
fn client_side(stream: &[u8]) {
    let mut reader = stream;
    for _ in 0..MAX_NEGOTIATIONS {
        let Ok(packet) = block_on(wire::read_startup_packet(&mut reader)) else {
            return;
        };
        assert!((8..=MAX_STARTUP_PACKET).contains(&packet.len()));
        assert_eq!(length_field(&packet, 0), packet.len());
        let code = i32::from_be_bytes(packet[4..8].try_into().unwrap());
        match code {
            SslRequest::BODY_MAGIC_NUMBER | GssEncRequest::BODY_MAGIC_NUMBER => continue,
            CANCEL_REQUEST_CODE => return,
            _ => {
                if let Ok(startup) = wire::decode::<Startup>(packet) {
                    let _ = startup.parameters.get("user");
                }
                break;
            }
        }
    }
    for _ in 0..MAX_MESSAGES {
        let Ok(message) = block_on(wire::read_message(&mut reader, MAX_PASSWORD_MESSAGE)) else {
            return;
        };
        assert_eq!(length_field(&message, 1) + 1, message.len());
        if message[0] == b'p' {
            let _ = wire::decode::<Password>(message);
        }
    }
}

/// The upstream's side of the proxy's login to it, as `upstream::authenticate`,
/// `read_greeting` and `server_error` read it.
fn server_side(stream: &[u8]) {
    let mut reader = stream;
    for _ in 0..MAX_MESSAGES {
        let Ok(message) = block_on(wire::read_message(&mut reader, MAX_AUTH_MESSAGE)) else {
            return;
        };
        assert_eq!(length_field(&message, 1) + 1, message.len());
        match message[0] {
            b'R' => {
                if let Ok(Authentication::MD5Password(salt)) =
                    wire::decode::<Authentication>(message)
                {
                    let _: Result<[u8; 4], _> = salt.try_into();
                }
            }
            b'E' => decode_error(message),
            _ => {}
        }
    }
}

fn decode_error(message: BytesMut) {
    if let Ok(error) = wire::decode::<ErrorResponse>(message) {
        let _ = error.fields.iter().find(|(code, _)| *code == b'M');
    }
}
