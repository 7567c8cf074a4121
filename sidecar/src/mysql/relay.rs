//! Relays an established session in both directions, one whole packet at a
//! time, while [`Exchange`] follows the commands and responses. A cut sends
//! the client an `ERR` packet with the lock message where the client reads it
//! as the answer it waits for (never inside a packet or a multi-packet
//! payload), sends the server `COM_QUIT`, and closes both.

use deadbolt_api::engine::Denial;
use mysql_common::constants::CapabilityFlags;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::exchange::{ClientPacket, Exchange};
use super::messages::{CONNECTION_KILLED, Command, NOT_SUPPORTED, err_payload};
use super::packet::{self, MAX_PAYLOAD, PacketBuffer, packet_fields};
use crate::gate::{Ending, LiveSession};
use crate::io::{ByteStream, CUT_GRACE, write_or_cut};

/// `COM_QUIT`, as the first packet of a command.
const QUIT: [u8; 5] = [1, 0, 0, 0, Command::COM_QUIT as u8];
/// What a client that tries to become another database user is told.
const CHANGE_USER_REFUSED: &str =
    "COM_CHANGE_USER is not supported through the Deadbolt proxy: reconnect as the other user";

/// Relays until either side closes or the session is cut. `capabilities`
/// are the session capabilities both sides speak.
pub async fn relay(
    client: &mut Box<dyn ByteStream>,
    upstream: &mut Box<dyn ByteStream>,
    session: &mut LiveSession,
    capabilities: CapabilityFlags,
) -> Ending {
    let mut from_client = PacketBuffer::default();
    let mut from_server = PacketBuffer::default();
    let mut exchange = Exchange::new(capabilities);
    loop {
        tokio::select! {
            biased;
            denial = session.cut() => {
                return cut(client, upstream, &mut from_server, &mut exchange, denial).await;
            }
            read = from_client.fill(client) => {
                match read {
                    Ok(0) => {
                        // A client that vanished without COM_QUIT: say it for
                        // it, so the server does not count an aborted client.
                        if exchange.client_at_boundary() {
                            let _ = upstream.write_all(&QUIT).await;
                        }
                        let _ = upstream.shutdown().await;
                        return Ending::Normal;
                    }
                    Ok(_) => {}
                    Err(error) => return Ending::Failed(format!("client: {error}")),
                }
                if let Err(ending) =
                    forward_client_packets(client, upstream, &mut from_client, &mut exchange, session).await
                {
                    return ending;
                }
            }
            read = from_server.fill(upstream) => {
                match read {
                    Ok(0) => {
                        let _ = client.shutdown().await;
                        return Ending::Normal;
                    }
                    Ok(_) => {}
                    Err(error) => return Ending::Failed(format!("server: {error}")),
                }
                let mut whole = Vec::new();
                while let Some(packet) = from_server.next_packet() {
                    let (length, seq, payload) = packet_fields(&packet);
                    exchange.server_packet(length, seq, payload);
                    whole.extend_from_slice(&packet);
                }
                if let Err(ending) = write_or_cut(client, &whole, session).await {
                    return ending;
                }
            }
        }
    }
}

/// Forwards the client's whole packets, answering a `COM_CHANGE_USER`
/// itself instead.
async fn forward_client_packets(
    client: &mut Box<dyn ByteStream>,
    upstream: &mut Box<dyn ByteStream>,
    from_client: &mut PacketBuffer,
    exchange: &mut Exchange,
    session: &mut LiveSession,
) -> Result<(), Ending> {
    let mut whole = Vec::new();
    while let Some(packet) = from_client.next_packet() {
        let (length, seq, payload) = packet_fields(&packet);
        match exchange.client_packet(length, seq, payload) {
            ClientPacket::Forward => whole.extend_from_slice(&packet),
            ClientPacket::Refuse(_) => {
                write_or_cut(upstream, &whole, session).await?;
                whole.clear();
                if !exchange.is_idle() || length == MAX_PAYLOAD {
                    let _ = upstream.write_all(&QUIT).await;
                    return Err(Ending::Failed(
                        "the client sent COM_CHANGE_USER in the middle of an exchange".into(),
                    ));
                }
                let refusal = packet::frame(1, &err_payload(NOT_SUPPORTED, CHANGE_USER_REFUSED)).0;
                write_or_cut(client, &refusal, session).await?;
            }
        }
    }
    write_or_cut(upstream, &whole, session).await
}

/// Finishes the server payload in flight, tells the client why with an
/// `ERR` it reads as its answer, ends the server session politely when the
/// client was not half-way through a command, and closes both.
async fn cut(
    client: &mut Box<dyn ByteStream>,
    upstream: &mut Box<dyn ByteStream>,
    from_server: &mut PacketBuffer,
    exchange: &mut Exchange,
    denial: Denial,
) -> Ending {
    let at_boundary = exchange.server_at_boundary()
        || tokio::time::timeout(
            CUT_GRACE,
            finish_server_payload(client, upstream, from_server, exchange),
        )
        .await
        .unwrap_or(false);
    if at_boundary {
        let error = err_payload(CONNECTION_KILLED, denial.message());
        let _ = tokio::time::timeout(
            CUT_GRACE,
            packet::write_payload(client, exchange.next_server_seq(), &error),
        )
        .await;
    }
    let _ = tokio::time::timeout(CUT_GRACE, client.shutdown()).await;
    if exchange.client_at_boundary() {
        let _ = tokio::time::timeout(CUT_GRACE, upstream.write_all(&QUIT)).await;
    }
    let _ = tokio::time::timeout(CUT_GRACE, upstream.shutdown()).await;
    Ending::Cut(denial)
}

/// Forwards the rest of a multi-packet server payload, and nothing after it.
/// Returns whether the stream now stands at a boundary.
async fn finish_server_payload(
    client: &mut Box<dyn ByteStream>,
    upstream: &mut Box<dyn ByteStream>,
    from_server: &mut PacketBuffer,
    exchange: &mut Exchange,
) -> bool {
    loop {
        while let Some(packet) = from_server.next_packet() {
            let (length, seq, payload) = packet_fields(&packet);
            exchange.server_packet(length, seq, payload);
            if client.write_all(&packet).await.is_err() {
                return false;
            }
            if exchange.server_at_boundary() {
                return true;
            }
        }
        match from_server.fill(upstream).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}

/// Reads and drops what a cut client still sends, for a moment, so that
/// closing does not reset the connection before it has read the `ERR`.
pub async fn linger(client: &mut Box<dyn ByteStream>) {
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(CUT_GRACE, async {
        while let Ok(n) = client.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
