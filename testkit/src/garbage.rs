//! Deterministic pseudo-random bytes for the "garbage never panics" tests of
//! the wire parsers: the same seed gives the same inputs on every run, so a
//! failure reproduces, and the tests need no random-number crate. (The fuzz
//! targets under `fuzz/` explore; these pin a fixed sample into `cargo test`.)

/// An xorshift64 stream of bytes.
#[derive(Clone, Debug)]
pub struct Garbage(u64);

impl Garbage {
    /// A stream from `seed` (not zero: xorshift would stay at zero).
    pub fn new(seed: u64) -> Self {
        assert_ne!(seed, 0, "xorshift needs a non-zero seed");
        Self(seed)
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Fewer than `max_len` bytes, of a length drawn from the stream.
    pub fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let length = (self.0 % max_len as u64) as usize;
        (0..length).map(|_| self.next_u64() as u8).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_bytes() {
        let (mut a, mut b) = (Garbage::new(7), Garbage::new(7));
        for _ in 0..100 {
            let bytes = a.bytes(50);
            assert!(bytes.len() < 50);
            assert_eq!(bytes, b.bytes(50));
        }
        assert_ne!(Garbage::new(7).bytes(1000), Garbage::new(8).bytes(1000));
    }
}
