//! Relays an established session in both directions, forwarding bytes as they
//! come while tracking message boundaries, and cuts it cleanly when told: the
//! client receives a FATAL `ErrorResponse` with the lock message only between
//! two server messages, never inside one, and the server receives `Terminate`.

use std::time::Duration;

use deadbolt_api::engine::Denial;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::negotiate::ClientIo;
use super::wire::{self, FrameTracker};
use crate::gate::{Ending, LiveSession};

/// Read buffer per direction.
const BUFFER: usize = 16 * 1024;
/// How long a cut waits for the server message in flight to finish, or for a
/// slow client to take bytes already being written.
const CUT_GRACE: Duration = Duration::from_secs(2);
/// How long a cut session's server connection outlives the client's.
const UPSTREAM_LINGER: Duration = Duration::from_millis(250);
/// `Terminate`.
const TERMINATE: [u8; 5] = [b'X', 0, 0, 0, 4];

/// Relays until either side closes or the session is cut.
pub async fn relay(
    client: &mut Box<dyn ClientIo>,
    mut upstream: Box<dyn ClientIo>,
    session: &mut LiveSession,
) -> Ending {
    let mut from_client = vec![0u8; BUFFER];
    let mut from_server = vec![0u8; BUFFER];
    let mut client_frames = FrameTracker::default();
    let mut server_frames = FrameTracker::default();
    loop {
        tokio::select! {
            biased;
            denial = session.cut() => {
                return cut(client, upstream, &mut server_frames, &client_frames, denial).await;
            }
            read = client.read(&mut from_client) => {
                let data = match read {
                    Ok(0) => {
                        let _ = upstream.shutdown().await;
                        return Ending::Normal;
                    }
                    Ok(n) => &from_client[..n],
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
            }
            read = upstream.read(&mut from_server) => {
                let data = match read {
                    Ok(0) => {
                        let _ = client.shutdown().await;
                        return Ending::Normal;
                    }
                    Ok(n) => &from_server[..n],
                    Err(error) => return Ending::Failed(format!("server: {error}")),
                };
                if let Err(error) = server_frames.advance(data) {
                    let _ = client.shutdown().await;
                    return Ending::Failed(format!("server sent {error}"));
                }
                if let Err(ending) = write_or_cut(client, data, session).await {
                    return ending;
                }
            }
        }
    }
}

/// Writes `data`, unless the session is cut while the peer is not reading:
/// then the write gets [`CUT_GRACE`] to finish before the session is dropped.
async fn write_or_cut(
    destination: &mut Box<dyn ClientIo>,
    data: &[u8],
    session: &mut LiveSession,
) -> Result<(), Ending> {
    let write = destination.write_all(data);
    tokio::pin!(write);
    tokio::select! {
        biased;
        written = &mut write => written.map_err(|e| Ending::Failed(e.to_string())),
        denial = session.cut() => {
            match tokio::time::timeout(CUT_GRACE, write).await {
                // The write went through; the relay loop sees the cut next and ends cleanly.
                Ok(Ok(())) => Ok(()),
                _ => Err(Ending::Cut(denial)),
            }
        }
    }
}

/// Finishes the server message in flight, tells the client why, ends the
/// server session politely when possible, and closes both.
async fn cut(
    client: &mut Box<dyn ClientIo>,
    mut upstream: Box<dyn ClientIo>,
    server_frames: &mut FrameTracker,
    client_frames: &FrameTracker,
    denial: Denial,
) -> Ending {
    let finished = tokio::time::timeout(
        CUT_GRACE,
        finish_server_message(client, &mut upstream, server_frames),
    )
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

/// Forwards the rest of a partly relayed server message, and nothing after it.
/// Returns whether the stream now stands at a boundary.
async fn finish_server_message(
    client: &mut Box<dyn ClientIo>,
    upstream: &mut Box<dyn ClientIo>,
    frames: &mut FrameTracker,
) -> bool {
    let mut buffer = vec![0u8; BUFFER];
    while !frames.at_boundary() {
        let n = match upstream.read(&mut buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let take = frames.bytes_to_boundary(&buffer[..n]).unwrap_or(n);
        if frames.advance(&buffer[..take]).is_err()
            || client.write_all(&buffer[..take]).await.is_err()
        {
            return false;
        }
    }
    true
}
