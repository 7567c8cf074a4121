//! Ceremony state between `begin` and `finish`: kept here on the server (never
//! handed to the client), bound to the caller that began it, usable once, and
//! gone after [`CEREMONY_TTL`](deadbolt_api::mfa::service::CEREMONY_TTL).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;

/// Ceremonies one user may have open at once; older ones go first.
const MAX_OPEN_PER_USER: usize = 8;

/// Why a `finish` found no ceremony to finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no such ceremony for you: it was already finished, it expired, or another caller began it; \
     start again"
)]
pub struct NoCeremony;

/// Open ceremonies of one kind.
pub struct Ceremonies<T> {
    open: Mutex<HashMap<String, Open<T>>>,
    ttl: Duration,
}

struct Open<T> {
    owner: String,
    started: Timestamp,
    state: T,
}

impl<T> Ceremonies<T> {
    /// Ceremonies that wait `ttl` for their `finish`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            open: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    fn expired(&self, started: Timestamp, now: Timestamp) -> bool {
        now.duration_since(started).unsigned_abs() > self.ttl
    }

    /// Keeps `state` for `owner` and returns the ceremony's id (random, 128 bits).
    pub fn start(&self, owner: &str, state: T, now: Timestamp) -> String {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|_, ceremony| !self.expired(ceremony.started, now));
        let mut mine: Vec<(Timestamp, String)> = open
            .iter()
            .filter(|(_, ceremony)| ceremony.owner == owner)
            .map(|(id, ceremony)| (ceremony.started, id.clone()))
            .collect();
        if mine.len() >= MAX_OPEN_PER_USER {
            mine.sort();
            for (_, id) in mine.iter().take(mine.len() + 1 - MAX_OPEN_PER_USER) {
                open.remove(id);
            }
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        open.insert(
            id.clone(),
            Open {
                owner: owner.to_string(),
                started: now,
                state,
            },
        );
        id
    }

    /// Takes the state of ceremony `id` if `owner` began it and it has not
    /// expired. Another caller's attempt leaves the ceremony to its owner.
    pub fn finish(&self, id: &str, owner: &str, now: Timestamp) -> Result<T, NoCeremony> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        match open.get(id) {
            Some(ceremony) if ceremony.owner != owner => return Err(NoCeremony),
            Some(_) => {}
            None => return Err(NoCeremony),
        }
        let ceremony = open.remove(id).ok_or(NoCeremony)?;
        if self.expired(ceremony.started, now) {
            return Err(NoCeremony);
        }
        Ok(ceremony.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn a_ceremony_is_its_owners_once_and_expires() {
        let ceremonies = Ceremonies::new(Duration::from_secs(120));
        let id = ceremonies.start("alice", 1, at(0));
        assert_eq!(ceremonies.finish(&id, "bob", at(1)), Err(NoCeremony));
        assert_eq!(ceremonies.finish(&id, "alice", at(1)), Ok(1));
        assert_eq!(ceremonies.finish(&id, "alice", at(1)), Err(NoCeremony));
        let late = ceremonies.start("alice", 2, at(0));
        assert_eq!(ceremonies.finish(&late, "alice", at(121)), Err(NoCeremony));
    }

    #[test]
    fn a_user_cannot_pile_up_ceremonies() {
        let ceremonies = Ceremonies::new(Duration::from_secs(120));
        let first = ceremonies.start("alice", 0, at(0));
        for n in 1..=MAX_OPEN_PER_USER {
            ceremonies.start("alice", n, at(n as i64));
        }
        assert_eq!(ceremonies.finish(&first, "alice", at(20)), Err(NoCeremony));
        assert_eq!(
            ceremonies.open.lock().unwrap().len(),
            MAX_OPEN_PER_USER,
            "the oldest made room"
        );
    }
}
