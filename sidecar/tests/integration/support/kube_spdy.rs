//! The fake API server's SPDY/3.1 side of `kubectl exec` and `kubectl
//! port-forward` (what older clients and `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`
//! use, and what port-forward tunnels in WebSocket): it replies to the
//! client's streams, answers pings, and runs the fake command on the stdout
//! and error streams as the kubelet's `v4.channel.k8s.io` does, or echoes a
//! port-forward's data.

use std::collections::HashMap;
use std::time::Duration;

use deadbolt_sidecar::kube::spdy::{
    self, FLAG_FIN, FrameHead, HeaderDeflater, HeaderInflater, decode_headers, encode_headers,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::kube_upstream::{ExecRequest, SUCCESS, Script, script};

/// One frame the client sent.
enum Incoming {
    Control { kind: u16, payload: Vec<u8> },
    Data { stream: u32, payload: Vec<u8> },
}

/// Serves one exec or port-forward session until the client goes away.
pub async fn serve_exec<S>(io: S, request: ExecRequest)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(io);
    let (frames, mut incoming) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let mut head = [0u8; 8];
            if reader.read_exact(&mut head).await.is_err() {
                return;
            }
            let head = FrameHead::parse(head);
            let mut payload = vec![0u8; head.length()];
            if reader.read_exact(&mut payload).await.is_err() {
                return;
            }
            let frame = match head {
                FrameHead::Control { kind, .. } => Incoming::Control { kind, payload },
                FrameHead::Data { stream, .. } => Incoming::Data { stream, payload },
            };
            if frames.send(frame).await.is_err() {
                return;
            }
        }
    });

    let mut inflater = HeaderInflater::default();
    let mut deflater = HeaderDeflater::default();
    let mut streams: HashMap<String, u32> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut ticks = 0;
    let mut started = false;
    loop {
        let ready = !request.port_forward && streams.len() >= request.expected_streams();
        if ready && !started {
            started = true;
            if let Script::Print(output) = script(&request.commands) {
                let mut out = Vec::new();
                out.extend(spdy::data_frame(streams["stdout"], 0, &output));
                out.extend(spdy::data_frame(
                    streams["error"],
                    FLAG_FIN,
                    SUCCESS.as_bytes(),
                ));
                for stream in streams.values() {
                    out.extend(spdy::data_frame(*stream, FLAG_FIN, b""));
                }
                let _ = writer.write_all(&out).await;
                let _ = writer.flush().await;
                // Keep reading until the client closes.
                while incoming.recv().await.is_some() {}
                return;
            }
        }
        tokio::select! {
            _ = tick.tick(), if started => {
                ticks += 1;
                let line = format!("tick {ticks}\n");
                if writer.write_all(&spdy::data_frame(streams["stdout"], 0, line.as_bytes())).await.is_err() {
                    return;
                }
            }
            frame = incoming.recv() => match frame {
                None => return,
                Some(Incoming::Data { stream, payload }) => {
                    // Port-forward: the pod's port echoes what it receives.
                    if request.port_forward && streams.get("data") == Some(&stream) && !payload.is_empty()
                        && writer.write_all(&spdy::data_frame(stream, 0, &payload)).await.is_err()
                    {
                        return;
                    }
                }
                Some(Incoming::Control { kind, payload }) => {
                    let reply = match kind {
                        spdy::SYN_STREAM if payload.len() >= 10 => {
                            let stream = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff;
                            let Ok(headers) = inflater.inflate(&payload[10..]).and_then(|b| decode_headers(&b)) else {
                                return;
                            };
                            if let Some((_, kind)) = headers.iter().find(|(name, _)| name == "streamtype") {
                                streams.insert(kind.clone(), stream);
                            }
                            let mut reply = stream.to_be_bytes().to_vec();
                            reply.extend(deflater.deflate(&encode_headers(&[])));
                            Some(spdy::control_frame(spdy::SYN_REPLY, 0, &reply))
                        }
                        spdy::PING => Some(spdy::control_frame(spdy::PING, 0, &payload)),
                        spdy::GOAWAY => return,
                        _ => None,
                    };
                    if let Some(reply) = reply
                        && writer.write_all(&reply).await.is_err()
                    {
                        return;
                    }
                }
            },
        }
    }
}
