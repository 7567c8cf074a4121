//! Upgraded connections — exec, attach, port-forward — relayed byte for byte
//! in both directions while their session is registered. The server→client
//! side is framed by the protocol ([`Tunnel`]), so a cut finishes the frame in
//! flight, writes its notice between two frames, and then closes both sides.

use std::time::Duration;

use deadbolt_api::engine::Denial;
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use super::classify::Subresource;
use super::spdy;
use super::status;
use super::websocket::{self, CLOSE_NORMAL, CLOSE_POLICY_VIOLATION, FrameTracker};
use crate::framing::{Framing, LengthPrefixed, finish_unit};
use crate::gate::{Ending, LiveSession};
use crate::io::{CUT_GRACE, write_or_cut};

/// Read buffer per direction.
const BUFFER: usize = 32 * 1024;

/// What a relay needs to know about the protocol inside the tunnel.
pub trait Tunnel: Send {
    /// Sees the client→server bytes (SPDY learns its streams from them).
    fn client_bytes(&mut self, _data: &[u8]) {}

    /// The server→client frame tracker; `None` when the stream cannot be
    /// framed, and a cut just closes.
    fn server_framing(&mut self) -> Option<&mut dyn Framing>;

    /// What a cut writes to the client at a frame boundary before closing.
    fn notice(&self, denial: &Denial) -> Option<Vec<u8>>;

    /// How long the connection stays open after the notice, so the client
    /// can report it before it sees the connection close.
    fn linger(&self) -> Duration {
        Duration::ZERO
    }
}

/// A SPDY port-forward's linger: kubectl reads each forwarded connection's
/// error stream in a goroutine of its own, and exits with `lost connection to
/// pod` as soon as the connection closes, often before that goroutine has
/// printed the lock message. Its data streams have ended, so nothing flows
/// meanwhile.
const PORT_FORWARD_LINGER: Duration = Duration::from_millis(250);

/// A WebSocket session: exec and attach get the error channel (the
/// subprotocol's encoding) and a normal close, so client-go reads the error
/// channel to its end and kubectl prints the message; anything else (a
/// port-forward, whose WebSocket carries SPDY) gets a close frame whose reason
/// is the message.
pub struct WebSocketTunnel {
    frames: FrameTracker,
    subprotocol: String,
    error_channel: bool,
}

impl WebSocketTunnel {
    /// A tunnel for the negotiated `subprotocol`, upgraded for `subresource`.
    pub fn new(subprotocol: &str, subresource: Subresource) -> Self {
        Self {
            frames: FrameTracker::default(),
            subprotocol: subprotocol.to_string(),
            error_channel: matches!(subresource, Subresource::Exec | Subresource::Attach),
        }
    }
}

impl Tunnel for WebSocketTunnel {
    fn server_framing(&mut self) -> Option<&mut dyn Framing> {
        Some(&mut self.frames)
    }

    fn notice(&self, denial: &Denial) -> Option<Vec<u8>> {
        let message = denial.message();
        let error_frame = self
            .error_channel
            .then(|| {
                let status = status::failure_bytes(StatusCode::FORBIDDEN, message);
                websocket::error_channel_frame(&self.subprotocol, &status, message)
            })
            .flatten();
        Some(match error_frame {
            Some(mut frames) => {
                frames.extend(websocket::close_frame(CLOSE_NORMAL, ""));
                frames
            }
            None => websocket::close_frame(CLOSE_POLICY_VIOLATION, message),
        })
    }
}

/// A SPDY/3.1 session. For exec and attach, a cut writes the `Status` (or,
/// before `v4.channel.k8s.io`, the message) on the error stream the client
/// opened, with FIN, so client-go reports it. For a port-forward it writes the
/// message on the error stream of every forwarded connection and ends their
/// data streams, so client-go reads the error and kubectl prints
/// `an error occurred forwarding …: <message>` before the connection closes.
pub struct SpdyTunnel {
    frames: LengthPrefixed,
    client_streams: spdy::StreamWatcher,
    status_json: bool,
    subresource: Subresource,
}

impl SpdyTunnel {
    /// A tunnel for the negotiated `X-Stream-Protocol-Version`, upgraded for `subresource`.
    pub fn new(stream_protocol: &str, subresource: Subresource) -> Self {
        let version = stream_protocol
            .trim()
            .strip_prefix('v')
            .and_then(|rest| rest.split('.').next())
            .and_then(|number| number.parse::<u32>().ok())
            .unwrap_or(1);
        Self {
            frames: LengthPrefixed::spdy(),
            client_streams: spdy::StreamWatcher::default(),
            status_json: version >= 4,
            subresource,
        }
    }
}

impl Tunnel for SpdyTunnel {
    fn client_bytes(&mut self, data: &[u8]) {
        if self.subresource != Subresource::Other {
            self.client_streams.advance(data);
        }
    }

    fn server_framing(&mut self) -> Option<&mut dyn Framing> {
        Some(&mut self.frames)
    }

    fn notice(&self, denial: &Denial) -> Option<Vec<u8>> {
        let message = denial.message();
        match self.subresource {
            Subresource::Exec | Subresource::Attach => {
                let stream = self.client_streams.error_stream()?;
                let payload = if self.status_json {
                    status::failure_bytes(StatusCode::FORBIDDEN, message).to_vec()
                } else {
                    message.as_bytes().to_vec()
                };
                Some(spdy::data_frame(stream, spdy::FLAG_FIN, &payload))
            }
            Subresource::PortForward => {
                let streams = &self.client_streams;
                let errors = streams.error_streams().iter().flat_map(|stream| {
                    spdy::data_frame(*stream, spdy::FLAG_FIN, message.as_bytes())
                });
                let ends = streams
                    .data_streams()
                    .iter()
                    .flat_map(|stream| spdy::data_frame(*stream, spdy::FLAG_FIN, &[]));
                let notice: Vec<u8> = errors.chain(ends).collect();
                (!notice.is_empty()).then_some(notice)
            }
            Subresource::Other => None,
        }
    }

    fn linger(&self) -> Duration {
        if self.subresource == Subresource::PortForward {
            PORT_FORWARD_LINGER
        } else {
            Duration::ZERO
        }
    }
}

/// Relays until either side closes or the session is cut.
pub async fn relay<C, U>(
    client: C,
    upstream: U,
    tunnel: &mut dyn Tunnel,
    session: &mut LiveSession,
) -> Ending
where
    C: AsyncRead + AsyncWrite + Send,
    U: AsyncRead + AsyncWrite + Send,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream);
    let mut from_client = vec![0u8; BUFFER];
    let mut from_server = vec![0u8; BUFFER];
    let mut client_open = true;
    loop {
        tokio::select! {
            biased;
            denial = session.cut() => {
                return cut(
                    &mut client_read,
                    &mut client_write,
                    &mut upstream_read,
                    &mut upstream_write,
                    tunnel,
                    denial,
                )
                .await;
            }
            read = client_read.read(&mut from_client), if client_open => match read {
                Ok(0) => {
                    // The client is done sending; the server may still answer.
                    let _ = upstream_write.shutdown().await;
                    client_open = false;
                }
                Ok(n) => {
                    tunnel.client_bytes(&from_client[..n]);
                    if let Err(ending) = write_or_cut(&mut upstream_write, &from_client[..n], session).await {
                        return ending;
                    }
                }
                Err(error) => return Ending::Failed(format!("client: {error}")),
            },
            read = upstream_read.read(&mut from_server) => match read {
                Ok(0) => {
                    let _ = client_write.shutdown().await;
                    return Ending::Normal;
                }
                Ok(n) => {
                    if let Some(framing) = tunnel.server_framing()
                        && let Err(error) = framing.advance(&from_server[..n])
                    {
                        let _ = client_write.shutdown().await;
                        return Ending::Failed(format!("server sent {error}"));
                    }
                    if let Err(ending) = write_or_cut(&mut client_write, &from_server[..n], session).await {
                        return ending;
                    }
                }
                Err(error) => return Ending::Failed(format!("server: {error}")),
            },
        }
    }
}

/// Finishes the server frame in flight, writes the notice, closes the
/// client's side and waits briefly for the client to close (so the notice is
/// not lost to a reset), then drops the upstream.
async fn cut<C: AsyncRead + AsyncWrite, U: AsyncRead + AsyncWrite>(
    client_read: &mut ReadHalf<C>,
    client_write: &mut WriteHalf<C>,
    upstream_read: &mut ReadHalf<U>,
    upstream_write: &mut WriteHalf<U>,
    tunnel: &mut dyn Tunnel,
    denial: Denial,
) -> Ending {
    let at_boundary = tokio::time::timeout(CUT_GRACE, async {
        match tunnel.server_framing() {
            Some(framing) => finish_unit(upstream_read, client_write, framing).await,
            None => false,
        }
    })
    .await
    .unwrap_or(false);
    if at_boundary && let Some(notice) = tunnel.notice(&denial) {
        let _ = tokio::time::timeout(CUT_GRACE, async {
            client_write.write_all(&notice).await?;
            client_write.flush().await
        })
        .await;
        let _ = tokio::time::timeout(tunnel.linger(), drain(client_read)).await;
    }
    let _ = upstream_write.shutdown().await;
    let _ = tokio::time::timeout(CUT_GRACE, client_write.shutdown()).await;
    let _ = tokio::time::timeout(CUT_GRACE, drain(client_read)).await;
    Ending::Cut(denial)
}

/// Reads and discards until the peer closes.
async fn drain<R: AsyncRead>(reader: &mut ReadHalf<R>) {
    let mut sink = vec![0u8; 4096];
    while let Ok(n) = reader.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_gets_the_error_channel_and_a_normal_close() {
        let denial = Denial::Locked {
            lock: "l".into(),
            message: "locked".into(),
        };
        let exec = WebSocketTunnel::new("v5.channel.k8s.io", Subresource::Exec);
        let notice = exec.notice(&denial).unwrap();
        assert_eq!(notice[0], 0x82);
        assert_eq!(notice[2], 3);
        let text = String::from_utf8_lossy(&notice);
        assert!(text.contains(r#""message":"locked""#));
        assert!(notice.ends_with(&[0x88, 2, 0x03, 0xe8]));

        let forward = WebSocketTunnel::new("SPDY/3.1+portforward.k8s.io", Subresource::PortForward);
        let notice = forward.notice(&denial).unwrap();
        assert_eq!(&notice[..4], &[0x88, 8, 0x03, 0xf0]);
        assert!(notice.ends_with(b"locked"));
    }
}
