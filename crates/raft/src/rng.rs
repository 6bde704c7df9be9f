//! A tiny deterministic random number generator (SplitMix64), so the core needs no OS randomness and no
//! dependency: one seed gives one sequence of election timeouts.

/// SplitMix64 (Steele, Lea and Flood, 2014): fast, tiny state, good enough to spread election timeouts.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    /// The generator's whole state.
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[low, high)`.
    ///
    /// # Panics
    /// If the range is empty.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        assert!(low < high, "empty range [{low}, {high})");
        low + self.next_u64() % (high - low)
    }

    /// True with probability `numerator / denominator`.
    pub fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.range(0, denominator) < numerator
    }
}
