#![no_main]
//! The MySQL proxy's wire layer (`deadbolt_sidecar::mysql::wire`) on
//! arbitrary bytes. The first input byte is a control byte: its top two bits
//! pick a mode, the rest seed how streams are split. Proves that:
//! - `PacketBuffer` (fed through `fill` in reads of any size) hands out
//!   exactly the whole packets, in order, that a reference parse of the
//!   3-byte-length/sequence-id headers finds, `packet_fields` agrees with the
//!   header, and `has_partial_packet` is true exactly when bytes of an
//!   unfinished packet remain;
//! - `frame` followed by that reference parse gives back the payload;
//! - mode 0, the client's opening as `handshake::open` and
//!   `read_clear_password` read it: `read_expected` with the handshake limit,
//!   the capability check, the 32-byte `SSLRequest`, then
//!   `wire::decode::<HandshakeResponse>` and every accessor `parse_hello`
//!   uses, then the cleartext password packet, never panic;
//! - mode 1, the upstream's side as `upstream::greet` and `login` read it:
//!   `parse_error`, `wire::decode::<HandshakePacket>` and
//!   `wire::decode::<AuthSwitchRequest>`, never panic;
//! - modes 2 and 3, a relayed session: input records `[d][bytes]` (top bit
//!   of `d` picks the side, its low 7 bits + 1 the read size) fill a
//!   `PacketBuffer` per side as `relay::relay` does, and whole packets go to
//!   `Exchange::client_packet` / `server_packet` (mode 3 with
//!   `CLIENT_DEPRECATE_EOF`), whose answers never panic.
//!
//! libfuzzer-sys's panic hook aborts even inside `wire::decode`'s
//! `catch_unwind`, so a `mysql_common` panic reached through it is reported
//! as a crash (in the proxy it would be a caught panic and a message on stderr).

mod common;

use deadbolt_sidecar::mysql::fuzzing::{ClientPacket, Exchange, parse_hello};
use deadbolt_sidecar::mysql::wire::{
    self, HEADER, MAX_HANDSHAKE_PACKET, MAX_PAYLOAD, PacketBuffer, parse_header,
};
use futures::executor::block_on;
use libfuzzer_sys::fuzz_target;
use mysql_common::constants::CapabilityFlags;
use mysql_common::packets::{AuthSwitchRequest, HandshakePacket};

/// `messages::SSL_REQUEST_LENGTH` (a private module).
const SSL_REQUEST_LENGTH: usize = 32;
/// `upstream::MAX_AUTH_PACKET` (private there).
const MAX_AUTH_PACKET: usize = 1 << 20;
/// `upstream::MAX_AUTH_ROUNDS`-like bound on the authentication loop.
const MAX_ROUNDS: usize = 16;

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    match control >> 6 {
        0 => {
            buffering(control, stream);
            client_side(stream);
        }
        1 => {
            buffering(control, stream);
            server_side(stream);
        }
        mode => relay(mode == 3, stream),
    }
    round_trip(control, stream);
});

/// Whole packets a straightforward parse finds: (offset, length, seq), and
/// where the unfinished rest starts.
fn reference(stream: &[u8]) -> (Vec<(usize, usize, u8)>, usize) {
    let mut packets = Vec::new();
    let mut at = 0;
    while let Some(header) = stream.get(at..at + HEADER) {
        let length = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
        if at + HEADER + length > stream.len() {
            break;
        }
        packets.push((at, length, header[3]));
        at += HEADER + length;
    }
    (packets, at)
}

/// Feeds `bytes` to `buffer` as the relay's reads would, until consumed.
fn fill(buffer: &mut PacketBuffer, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let read = block_on(buffer.fill(&mut bytes)).expect("reading from memory cannot fail");
        assert!(read > 0, "fill read nothing from {} bytes", bytes.len());
    }
}

fn buffering(control: u8, stream: &[u8]) {
    let (expected, rest) = reference(stream);
    let mut buffer = PacketBuffer::default();
    let mut next = 0;
    let mut start = 0;
    for end in common::splits(control & 0x3f, stream.len(), &[4, 64, 4096]) {
        fill(&mut buffer, &stream[start..end]);
        start = end;
        while let Some(packet) = buffer.next_packet() {
            let &(offset, length, seq) = expected
                .get(next)
                .unwrap_or_else(|| panic!("an extra packet {packet:?}"));
            assert_eq!(&packet[..], &stream[offset..offset + HEADER + length]);
            let (got_length, got_seq, payload) = wire::packet_fields(&packet);
            assert_eq!((got_length, got_seq), (length, seq));
            assert_eq!(payload, &stream[offset + HEADER..offset + HEADER + length]);
            next += 1;
        }
        let whole = expected.iter().take_while(|(o, l, _)| o + HEADER + l <= end).count();
        assert_eq!(next, whole, "packets handed out by {end}");
    }
    assert_eq!(next, expected.len());
    assert_eq!(buffer.has_partial_packet(), rest < stream.len());
}

fn round_trip(control: u8, payload: &[u8]) {
    let seq = control.wrapping_mul(31);
    let (bytes, next) = wire::frame(seq, payload);
    let (packets, rest) = reference(&bytes);
    assert_eq!(rest, bytes.len());
    let mut joined = Vec::new();
    for (i, &(offset, length, packet_seq)) in packets.iter().enumerate() {
        assert_eq!(packet_seq, seq.wrapping_add(i as u8));
        joined.extend_from_slice(&bytes[offset + HEADER..offset + HEADER + length]);
    }
    assert_eq!(joined, payload);
    assert_eq!(next, seq.wrapping_add(packets.len() as u8));
    assert!(packets.last().is_some_and(|(_, length, _)| *length < MAX_PAYLOAD));
}

/// `messages::client_capabilities` (a private module).
fn client_capabilities(payload: &[u8]) -> Option<CapabilityFlags> {
    let bytes: [u8; 4] = payload.get(..4)?.try_into().ok()?;
    let capabilities = CapabilityFlags::from_bits_truncate(u32::from_le_bytes(bytes));
    capabilities
        .contains(CapabilityFlags::CLIENT_PROTOCOL_41)
        .then_some(capabilities)
}

fn client_side(stream: &[u8]) {
    let mut reader = stream;
    let Ok(first) = block_on(wire::read_expected(&mut reader, 1, MAX_HANDSHAKE_PACKET)) else {
        return;
    };
    assert!(first.seq == 1 && first.payload.len() <= MAX_HANDSHAKE_PACKET);
    let Some(capabilities) = client_capabilities(&first.payload) else {
        return;
    };
    let (response, mut seq) = if capabilities.contains(CapabilityFlags::CLIENT_SSL) {
        if first.payload.len() != SSL_REQUEST_LENGTH {
            return;
        }
        match block_on(wire::read_expected(&mut reader, 2, MAX_HANDSHAKE_PACKET)) {
            Ok(packet) => (packet.payload, 3u8),
            Err(_) => return,
        }
    } else {
        (first.payload, 2)
    };
    let Ok(hello) = parse_hello(&response) else {
        return;
    };
    let _ = hello.user.len() + hello.database.as_ref().map_or(0, String::len);
    // `read_clear_password`: the password is in the response, or comes after an AuthSwitchRequest.
    let password = if hello.auth_plugin.as_deref() == Some(&b"mysql_clear_password"[..])
        && !hello.auth_response.is_empty()
    {
        hello.auth_response
    } else {
        if !hello.capabilities.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) {
            return;
        }
        seq = seq.wrapping_add(1);
        match block_on(wire::read_expected(&mut reader, seq, MAX_HANDSHAKE_PACKET)) {
            Ok(packet) => packet.payload,
            Err(_) => return,
        }
    };
    let password = password.strip_suffix(&[0]).unwrap_or(&password);
    let _ = std::str::from_utf8(password);
}

fn server_side(stream: &[u8]) {
    let mut reader = stream;
    let Ok(greeting) = block_on(wire::read_expected(&mut reader, 0, MAX_AUTH_PACKET)) else {
        return;
    };
    if greeting.payload.first() == Some(&0xff) {
        let _ = wire::parse_error(&greeting.payload);
        return;
    }
    // As `upstream::greet` does: the structural check before mysql_common decodes.
    if wire::check_greeting(&greeting.payload).is_err() {
        return;
    }
    let Ok(handshake) = wire::decode::<HandshakePacket<'_>>(&greeting.payload, ()) else {
        return;
    };
    let _ = (handshake.protocol_version(), handshake.capabilities());
    let handshake = handshake.into_owned();
    let _ = (
        handshake.server_version_str(),
        handshake.nonce(),
        handshake.auth_plugin_name_ref(),
        handshake.connection_id(),
    );
    let mut seq = 2u8;
    for _ in 0..MAX_ROUNDS {
        let Ok(packet) = block_on(wire::read_expected(&mut reader, seq, MAX_AUTH_PACKET)) else {
            return;
        };
        seq = packet.seq.wrapping_add(2);
        match packet.payload.first() {
            Some(0x00) => return,
            Some(0xff) => {
                let _ = wire::parse_error(&packet.payload);
                return;
            }
            Some(0xfe) if packet.payload.len() == 1 => return,
            Some(0xfe) => {
                let Ok(switch) = wire::decode::<AuthSwitchRequest<'_>>(&packet.payload, ()) else {
                    return;
                };
                let _ = (switch.auth_plugin().into_owned(), switch.plugin_data().to_vec());
            }
            Some(0x01) => {}
            _ => return,
        }
    }
}

/// Two sides, each read in pieces into its own `PacketBuffer`, whole
/// packets to the `Exchange`, as `relay::relay` and `forward_client_packets` do.
fn relay(deprecate_eof: bool, mut records: &[u8]) {
    let capabilities = if deprecate_eof {
        CapabilityFlags::CLIENT_PROTOCOL_41 | CapabilityFlags::CLIENT_DEPRECATE_EOF
    } else {
        CapabilityFlags::CLIENT_PROTOCOL_41
    };
    let mut exchange = Exchange::new(capabilities);
    let mut from_client = PacketBuffer::default();
    let mut from_server = PacketBuffer::default();
    let mut sides: [Vec<u8>; 2] = Default::default();
    let mut handed: [usize; 2] = [0, 0];
    while let Some((&d, rest)) = records.split_first() {
        let take = (usize::from(d & 0x7f) + 1).min(rest.len());
        let (chunk, rest) = rest.split_at(take);
        records = rest;
        let server = d & 0x80 != 0;
        let side = usize::from(server);
        sides[side].extend_from_slice(chunk);
        let buffer = if server { &mut from_server } else { &mut from_client };
        fill(buffer, chunk);
        while let Some(packet) = buffer.next_packet() {
            let (length, seq, payload) = wire::packet_fields(&packet);
            assert_eq!(packet.len(), HEADER + length);
            assert_eq!(parse_header(&[packet[0], packet[1], packet[2], packet[3]]), (length, seq));
            handed[side] += packet.len();
            if server {
                exchange.server_packet(length, seq, payload);
            } else if let ClientPacket::Refuse(_) = exchange.client_packet(length, seq, payload) {
                let _ = exchange.is_idle();
            }
            let _ = (
                exchange.is_idle(),
                exchange.client_at_boundary(),
                exchange.server_at_boundary(),
                exchange.next_server_seq(),
            );
        }
    }
    for side in 0..2 {
        let (_, rest) = reference(&sides[side]);
        assert_eq!(handed[side], rest, "side {side}: bytes handed out as whole packets");
    }
}
