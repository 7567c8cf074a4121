//! Relays an established session in both directions, forwarding bytes as they
//! come while tracking message boundaries, and cuts it cleanly when told: the
//! client receives a FATAL `ErrorResponse` with the lock message only between
//! two server messages, never inside one, and the server receives `Terminate`.

use std::time::Duration;

use bytes::BytesMut;
use deadbolt_api::engine::Denial;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::wire;
use crate::framing::{Framing, LengthPrefixed, finish_unit};
use crate::gate::{Ending, LiveSession};
use crate::io::{ByteStream, CUT_GRACE, write_or_cut};

/// Read buffer per direction. It is filled with `read_buf`, never zeroed, so
/// an idle session holds only the pages its reads have touched.
const BUFFER: usize = 16 * 1024;
/// How long a cut session's server connection outlives the client's.
const UPSTREAM_LINGER: Duration = Duration::from_millis(250);
/// `Terminate`.
pub(super) const TERMINATE: [u8; 5] = [b'X', 0, 0, 0, 4];

/// Relays until either side closes or the session is cut.
pub async fn relay(
    client: &mut Box<dyn ByteStream>,
    mut upstream: Box<dyn ByteStream>,
    session: &mut LiveSession,
) -> Ending {
    let mut from_client = BytesMut::with_capacity(BUFFER);
    let mut from_server = BytesMut::with_capacity(BUFFER);
    let mut client_frames = LengthPrefixed::postgres();
    let mut server_frames = LengthPrefixed::postgres();
    loop {
        tokio::select! {
            biased;
            denial = session.cut() => {
                return cut(client, upstream, &mut server_frames, &client_frames, denial).await;
            }
            read = client.read_buf(&mut from_client) => {
                let data = match read {
                    Ok(0) => {
                        let _ = upstream.shutdown().await;
                        return Ending::Normal;
                    }
                    Ok(_) => &from_client[..],
                    Err(error) => return Ending::Failed(format!("client: {error}")),
                };
                if let Err(error) = client_frames.advance(data) {
                    wire::send_fatal(client, wire::SQLSTATE_PROTOCOL, &error.to_string()).await;
                    let _ = upstream.shutdown().await;
                    return Ending::Failed(format!("client sent {error}"));
                }
                if let Err(ending) = write_or_cut(&mut upstream, data, session).await {
                    return ending;
                }
                from_client.clear();
            }
            read = upstream.read_buf(&mut from_server) => {
                let data = match read {
                    Ok(0) => {
                        let _ = client.shutdown().await;
                        return Ending::Normal;
                    }
                    Ok(_) => &from_server[..],
                    Err(error) => return Ending::Failed(format!("server: {error}")),
                };
                if let Err(error) = server_frames.advance(data) {
                    let _ = client.shutdown().await;
                    return Ending::Failed(format!("server sent {error}"));
                }
                if let Err(ending) = write_or_cut(client, data, session).await {
                    return ending;
                }
                from_server.clear();
            }
        }
    }
}

/// Finishes the server message in flight, tells the client why, ends the
/// server session politely when possible, and closes both.
async fn cut(
    client: &mut Box<dyn ByteStream>,
    mut upstream: Box<dyn ByteStream>,
    server_frames: &mut LengthPrefixed,
    client_frames: &LengthPrefixed,
    denial: Denial,
) -> Ending {
    let finished =
        tokio::time::timeout(CUT_GRACE, finish_unit(&mut upstream, client, server_frames))
            .await
            .unwrap_or(false);
    if finished {
        wire::send_fatal(client, wire::SQLSTATE_LOCKED, denial.message()).await;
    } else {
        let _ = client.shutdown().await;
    }
    // The client is gone; the server session ends a moment later, so that when
    // one lock cuts many sessions every client hears first, before the
    // database spends the machine's CPU tearing its backends down.
    let polite = client_frames.at_boundary();
    tokio::spawn(async move {
        tokio::time::sleep(UPSTREAM_LINGER).await;
        if polite {
            let _ = upstream.write_all(&TERMINATE).await;
        }
        let _ = upstream.shutdown().await;
    });
    Ending::Cut(denial)
}
