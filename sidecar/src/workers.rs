//! The threads a proxy serves on. Each worker is a current-thread tokio
//! runtime with a listener of its own on the proxy's address (SO_REUSEPORT:
//! the kernel spreads new connections over the workers), and a connection
//! stays on the thread that accepted it, with the kube proxy's upstream
//! connections too. A multi-thread runtime handed each request between
//! threads: through the kube proxy that was 11.7 system calls and 5.5
//! context switches per request where one thread needs 6.5 and 2.5, and a
//! third more CPU per request (README, Performance). What the workers share
//! (the lock view, the session registry, the token cache, metrics and audit)
//! is thread-safe, so a lock cuts sessions on every worker.
//!
//! The first worker is the process's main runtime, which also runs the lock
//! view's subscription, the watchdog and the operations listener.

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;
use deadbolt_runtime::shutdown::Shutdown;
use tokio::net::{TcpListener, TcpSocket};

/// One worker's serving: a proxy on a listener until shutdown.
pub type Serve =
    Arc<dyn Fn(TcpListener, Shutdown) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// How many workers to run: `--worker-threads`, else one per core this
/// process may use.
pub fn count(flag: Option<u16>) -> usize {
    flag.map(usize::from).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(NonZeroUsize::get)
            .unwrap_or(1)
    })
}

/// Binds `addr` for one worker; with `shared`, other workers may bind it too.
fn bind(addr: SocketAddr, shared: bool) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if shared {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

/// The workers besides the main runtime, serving until shutdown.
#[derive(Debug)]
pub struct Workers {
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Binds `workers` listeners on `addr` and starts every worker but the
    /// first on a thread of its own; returns the first worker's listener,
    /// for the caller's runtime to serve.
    pub fn start(
        addr: SocketAddr,
        workers: usize,
        serve: &Serve,
        shutdown: &Shutdown,
    ) -> anyhow::Result<(TcpListener, Self)> {
        let shared = workers > 1;
        let first =
            bind(addr, shared).with_context(|| format!("cannot listen on --listen {addr}"))?;
        // The port the first listener got, should `--listen` name port 0.
        let addr = first.local_addr().context("the listener has no address")?;
        let mut threads = Vec::with_capacity(workers.saturating_sub(1));
        for index in 1..workers {
            let listener = bind(addr, shared)
                .and_then(TcpListener::into_std)
                .with_context(|| format!("cannot listen on --listen {addr} (worker {index})"))?;
            let serve = serve.clone();
            let shutdown = shutdown.clone();
            let thread = std::thread::Builder::new()
                .name(format!("deadbolt-worker-{index}"))
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime,
                        Err(error) => {
                            tracing::error!(%error, worker = index, "cannot start a worker runtime");
                            return;
                        }
                    };
                    runtime.block_on(async move {
                        match TcpListener::from_std(listener) {
                            Ok(listener) => serve(listener, shutdown).await,
                            Err(error) => {
                                tracing::error!(%error, worker = index, "cannot serve the listener");
                            }
                        }
                    });
                })
                .context("cannot start a worker thread")?;
            threads.push(thread);
        }
        Ok((first, Self { threads }))
    }

    /// Waits for every worker to finish draining after shutdown.
    pub fn join(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// Answers each connection with the name of the thread that accepted it.
    fn thread_names() -> Serve {
        Arc::new(|listener: TcpListener, shutdown: Shutdown| {
            Box::pin(async move {
                loop {
                    let (mut tcp, _) = tokio::select! {
                        _ = shutdown.wait() => return,
                        accepted = listener.accept() => accepted.unwrap(),
                    };
                    let name = std::thread::current().name().unwrap_or("?").to_string();
                    let _ = tcp.write_all(name.as_bytes()).await;
                }
            })
        })
    }

    #[tokio::test]
    async fn workers_share_the_address_and_each_serves_its_connections() {
        let serve = thread_names();
        let (trigger, shutdown) = Shutdown::new();
        let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (first, workers) = Workers::start(any_port, 2, &serve, &shutdown).unwrap();
        let addr = first.local_addr().unwrap();
        let main = tokio::spawn(serve(first, shutdown.clone()));

        let mut names = HashSet::new();
        for _ in 0..64 {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            let mut name = String::new();
            tcp.read_to_string(&mut name).await.unwrap();
            assert!(!name.is_empty(), "every connection is answered");
            names.insert(name);
        }
        assert!(
            names.contains("deadbolt-worker-1"),
            "the kernel spreads 64 connections over both listeners: {names:?}"
        );
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(
            std::net::TcpListener::bind(addr).is_err(),
            "a socket that does not ask for SO_REUSEPORT cannot join"
        );

        trigger.trigger();
        main.await.unwrap();
        tokio::task::spawn_blocking(move || workers.join())
            .await
            .unwrap();
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "nobody listens after shutdown"
        );
    }

    #[tokio::test]
    async fn one_worker_binds_the_address_alone() {
        let addr: SocketAddr = format!("127.0.0.1:{}", deadbolt_testkit::free_port())
            .parse()
            .unwrap();
        let (_trigger, shutdown) = Shutdown::new();
        let (_first, workers) = Workers::start(addr, 1, &thread_names(), &shutdown).unwrap();
        assert!(workers.threads.is_empty());
        let error = Workers::start(addr, 1, &thread_names(), &shutdown).unwrap_err();
        assert!(
            format!("{error:#}").contains("cannot listen on --listen"),
            "{error:#}"
        );
    }
}
