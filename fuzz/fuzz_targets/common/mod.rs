//! What the framing targets share: how one input stream is cut into the
//! reads a relay would see.

/// The ends of the reads a stream of `len` bytes is cut into, from a small
/// xorshift seeded by `seed`: each read is 1 to `sizes[i]` bytes, with `i`
/// drawn each time, so short reads split headers and long ones cross messages.
pub fn splits(seed: u8, len: usize, sizes: &[usize]) -> Vec<usize> {
    let mut state = u32::from(seed)
        .wrapping_mul(0x9E37_79B9)
        .wrapping_add(0x1234_5677);
    let mut cuts = Vec::new();
    let mut at = 0;
    while at < len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let most = sizes[state as usize % sizes.len()];
        at = (at + 1 + (state >> 8) as usize % most).min(len);
        cuts.push(at);
    }
    cuts
}
