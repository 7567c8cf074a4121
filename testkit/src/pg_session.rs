//! A raw PostgreSQL client session over TLS, as thin as a benchmark needs:
//! open it (SSLRequest, TLS, startup) and wait for the server's next message,
//! which after a lock is the cut's `ErrorResponse`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Reads one backend message: its tag and body.
async fn read_message(stream: &mut TlsStream<TcpStream>) -> anyhow::Result<(u8, Vec<u8>)> {
    let tag = stream.read_u8().await?;
    let body = read_body(stream).await?;
    Ok((tag, body))
}

async fn read_body(stream: &mut TlsStream<TcpStream>) -> anyhow::Result<Vec<u8>> {
    let length = stream.read_u32().await? as usize;
    ensure!(
        (4..1 << 20).contains(&length),
        "bad message length {length}"
    );
    let mut body = vec![0; length - 4];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

/// `SEVERITY:  message` from an `ErrorResponse` body, as psql prints it.
fn error_text(body: &[u8]) -> String {
    let mut severity = "";
    let mut message = "";
    for field in body.split(|&b| b == 0).filter(|f| !f.is_empty()) {
        let value = std::str::from_utf8(&field[1..]).unwrap_or("?");
        match field[0] {
            b'S' => severity = value,
            b'M' => message = value,
            _ => {}
        }
    }
    format!("{severity}:  {message}")
}

/// SSLRequest, TLS, StartupMessage (login `app`, database `app`), then reads
/// until ReadyForQuery.
pub async fn open_session(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> anyhow::Result<TlsStream<TcpStream>> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut ssl_request = 8u32.to_be_bytes().to_vec();
    ssl_request.extend_from_slice(&80_877_103u32.to_be_bytes());
    tcp.write_all(&ssl_request).await?;
    let answer = tcp.read_u8().await?;
    ensure!(
        answer == b'S',
        "the proxy answered {:?} to SSLRequest",
        answer as char
    );
    let mut stream = TlsConnector::from(config)
        .connect(ServerName::try_from("localhost")?, tcp)
        .await
        .context("TLS handshake")?;

    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (key, value) in [("user", "app"), ("database", "app")] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut startup = u32::try_from(body.len() + 4)?.to_be_bytes().to_vec();
    startup.extend_from_slice(&body);
    stream.write_all(&startup).await?;
    stream.flush().await?;
    loop {
        match read_message(&mut stream).await? {
            (b'Z', _) => return Ok(stream),
            (b'E', body) => bail!("refused: {}", error_text(&body)),
            _ => {}
        }
    }
}

/// Idles until the next message; when it starts arriving, the instant, then the
/// message (which should be the FATAL `ErrorResponse` of the cut).
pub async fn await_cut(mut stream: TlsStream<TcpStream>) -> anyhow::Result<(Instant, String)> {
    let tag = stream.read_u8().await?;
    let received = Instant::now();
    let body = read_body(&mut stream).await?;
    ensure!(
        tag == b'E',
        "expected an ErrorResponse, got {:?}",
        tag as char
    );
    Ok((received, error_text(&body)))
}
