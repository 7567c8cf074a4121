//! Loopback addresses for servers a test starts as a separate process, which
//! must be told their port before they bind it.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

/// Ports this process has handed out already.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A free loopback port: bound and released, so the caller must bind it right
/// away (another process may take it in between, which on loopback is rare).
/// Never the same port twice in one process: a port just released is often
/// the kernel's next answer, and a test that asks for two ports before
/// starting a server that binds both (an operator's `--listen` and
/// `--webhook-listen`) would get one port for both.
pub fn free_port() -> u16 {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind a loopback port")
            .local_addr()
            .expect("a bound socket has an address")
            .port();
        if handed_out.insert(port) {
            return port;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_port_is_handed_out_twice() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
    }
}
