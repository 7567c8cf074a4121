//! Loopback addresses for servers a test starts as a separate process, which
//! must be told their port before they bind it.

/// A free loopback port: bound and released, so the caller must bind it right
/// away (another process may take it in between, which on loopback is rare).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .expect("a bound socket has an address")
        .port()
}
