//! Query cancellation. A PostgreSQL client cancels a running query by opening
//! a new connection and sending the backend key (process id and secret) the
//! server gave its session. The proxy forwards a `CancelRequest` only when the
//! key is one of a session this proxy relays right now: anything else would
//! let whoever reaches the proxy aim cancellations at backends it never
//! reached through it, with no identity checked.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// A backend key: the process id and the secret, as bytes (4 bytes before
/// protocol 3.2, up to 256 after).
type Key = (i32, Vec<u8>);

/// The backend keys of the sessions this proxy relays. Cheap to clone.
#[derive(Clone, Default)]
pub struct CancelKeys {
    live: Arc<Mutex<HashSet<Key>>>,
}

/// Keeps a session's key registered until dropped.
pub struct KeyGuard {
    keys: CancelKeys,
    key: Key,
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        self.keys.lock().remove(&self.key);
    }
}

impl CancelKeys {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Key>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers the key of the `BackendKeyData` message in `greeting` (the
    /// server's messages after authentication), if there is one.
    pub fn register(&self, greeting: &[u8]) -> Option<KeyGuard> {
        let key = backend_key(greeting)?;
        self.lock().insert(key.clone());
        Some(KeyGuard {
            keys: self.clone(),
            key,
        })
    }

    /// Whether a `CancelRequest` packet (length, code, pid, secret) names a
    /// live session's backend.
    pub fn is_live(&self, packet: &[u8]) -> bool {
        if packet.len() < 16 {
            return false;
        }
        let pid = i32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        self.lock().contains(&(pid, packet[12..].to_vec()))
    }

    /// How many sessions have a registered key.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none has.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Finds `BackendKeyData` (`K`, length, pid, secret) among whole messages.
fn backend_key(mut messages: &[u8]) -> Option<Key> {
    while messages.len() >= 5 {
        let length = u32::from_be_bytes([messages[1], messages[2], messages[3], messages[4]]);
        let end = 1 + usize::try_from(length).ok()?;
        if length < 4 || end > messages.len() {
            return None;
        }
        if messages[0] == b'K' && length >= 12 {
            let body = &messages[5..end];
            let pid = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
            return Some((pid, body[4..].to_vec()));
        }
        messages = &messages[end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend_key_data(pid: i32, secret: &[u8]) -> Vec<u8> {
        let mut message = vec![b'K'];
        message.extend_from_slice(&(8 + secret.len() as u32).to_be_bytes());
        message.extend_from_slice(&pid.to_be_bytes());
        message.extend_from_slice(secret);
        message
    }

    fn cancel_request(pid: i32, secret: &[u8]) -> Vec<u8> {
        let mut packet = (12 + secret.len() as u32).to_be_bytes().to_vec();
        packet.extend_from_slice(&80_877_102i32.to_be_bytes());
        packet.extend_from_slice(&pid.to_be_bytes());
        packet.extend_from_slice(secret);
        packet
    }

    #[test]
    fn only_live_sessions_keys_are_cancellable() {
        let keys = CancelKeys::default();
        let mut greeting = vec![b'S', 0, 0, 0, 8, b'a', 0, b'b', 0];
        greeting.extend(backend_key_data(42, &[1, 2, 3, 4]));
        greeting.extend([b'Z', 0, 0, 0, 5, b'I']);
        let guard = keys.register(&greeting).unwrap();
        assert!(keys.is_live(&cancel_request(42, &[1, 2, 3, 4])));
        assert!(!keys.is_live(&cancel_request(42, &[1, 2, 3, 5])));
        assert!(!keys.is_live(&cancel_request(43, &[1, 2, 3, 4])));
        assert!(!keys.is_live(&[0, 0, 0, 8]));
        drop(guard);
        assert!(!keys.is_live(&cancel_request(42, &[1, 2, 3, 4])));
        assert!(keys.is_empty());
    }

    #[test]
    fn malformed_greetings_register_nothing() {
        let keys = CancelKeys::default();
        assert!(keys.register(&[]).is_none());
        assert!(keys.register(&[b'K', 0, 0, 0, 200, 1]).is_none());
        assert!(keys.register(&[b'K', 0, 0, 0, 2]).is_none());
        assert!(keys.register(&[b'K', 0, 0, 0, 8, 0, 0, 0, 1]).is_none());
    }
}
