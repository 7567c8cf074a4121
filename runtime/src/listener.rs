//! The accept loop and TLS handshake every Deadbolt listener shares: accept
//! until shutdown (riding out transient accept errors such as running out of
//! file descriptors), one task per connection, and a handshake with a deadline
//! so a client that connects and says nothing cannot hold a task forever.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::shutdown::Shutdown;

/// How long a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until `shutdown`, spawning `handle` for each. `what`
/// names the listener in logs.
pub async fn accept_until<F, Fut>(
    listener: &TcpListener,
    shutdown: &Shutdown,
    what: &'static str,
    mut handle: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let (tcp, remote) = tokio::select! {
            _ = shutdown.wait() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, listener = what, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(handle(tcp, remote));
    }
}

/// The server side of a TLS handshake, within [`HANDSHAKE_TIMEOUT`]; failures
/// are logged and yield `None`.
pub async fn tls_handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    remote: SocketAddr,
    what: &'static str,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(error)) => {
            tracing::warn!(%remote, %error, listener = what, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::warn!(%remote, listener = what, "TLS handshake timed out");
            None
        }
    }
}
