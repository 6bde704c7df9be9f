//! The fault disk's only source of randomness: splitmix64, tiny and the same on every platform.

/// A seeded generator: one seed replays every choice of a [`super::FaultDisk`].
#[derive(Clone, Debug)]
pub(super) struct Rng {
    /// splitmix64 state.
    state: u64,
}

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    pub(super) fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound`.
    ///
    /// # Panics
    /// If `bound == 0`.
    pub(super) fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "below(0)");
        self.next() % bound
    }

    /// True with probability `numerator / denominator`.
    pub(super) fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.below(denominator) < numerator
    }

    /// Fills `bytes` with random bytes (garbage of a torn sector).
    pub(super) fn fill(&mut self, bytes: &mut [u8]) {
        for byte in bytes {
            *byte = self.next() as u8;
        }
    }
}
