//! Binding, the accept loop and TLS handshake every Deadbolt listener shares:
//! a bind error that names the flag which chose the address; accept
//! until shutdown (riding out transient accept errors such as running out of
//! file descriptors), one task per connection up to a cap (beyond it, new
//! connections wait in the kernel's backlog), and a handshake with a deadline
//! so a client that connects and says nothing cannot hold a task forever.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::shutdown::Shutdown;

/// How long a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections a client-facing listener serves at once (proxies, webhooks).
pub const MAX_CONNECTIONS: usize = 16_384;

/// Binds `addr`, the address the flag `flag` chose; a failure names both, so
/// the operator of a busy port knows which flag to change.
pub async fn bind(addr: SocketAddr, flag: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|error| {
        std::io::Error::new(
            error.kind(),
            format!("cannot listen on {flag} {addr}: {error}"),
        )
    })
}

/// Accepts connections until `shutdown`, spawning `handle` for each, at most
/// `max_connections` at a time. `what` names the listener in logs.
pub async fn accept_until<F, Fut>(
    listener: &TcpListener,
    shutdown: &Shutdown,
    what: &'static str,
    max_connections: usize,
    mut handle: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    loop {
        let permit = tokio::select! {
            _ = shutdown.wait() => return,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        if permits.available_permits() == 0 {
            tracing::warn!(
                listener = what,
                max_connections,
                "at the connection cap; new connections wait"
            );
        }
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
        let connection = handle(tcp, remote);
        tokio::spawn(async move {
            connection.await;
            drop(permit);
        });
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

/// The leaf of the client certificate rustls verified during `tls`'s
/// handshake, if the client presented one.
pub fn client_certificate<IO>(tls: &TlsStream<IO>) -> Option<&CertificateDer<'static>> {
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn connections_beyond_the_cap_wait_for_a_slot() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown) = Shutdown::new();
        let handled = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let serving = {
            let handled = handled.clone();
            tokio::spawn(async move {
                accept_until(&listener, &shutdown, "test", 1, move |_tcp, _remote| {
                    let handled = handled.clone();
                    let mut released = released.clone();
                    async move {
                        handled.fetch_add(1, Ordering::SeqCst);
                        let _ = released.wait_for(|go| *go).await;
                    }
                })
                .await;
            })
        };
        let _first = TcpStream::connect(addr).await.unwrap();
        let _second = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(handled.load(Ordering::SeqCst), 1, "the second waits");
        release.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while handled.load(Ordering::SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the second is served once the first ends");
        trigger.trigger();
        serving.await.unwrap();
    }
}
