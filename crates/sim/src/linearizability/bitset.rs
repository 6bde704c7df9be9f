//! The set of linearized operations: half of the search's memo key.

/// A fixed-capacity set of operation positions `0..capacity`, stored as 64-bit words.
///
/// Invariant: bits at positions `>= capacity` are always zero, so two sets with the same
/// members compare and hash equal.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Bitset {
    /// Bit `i % 64` of word `i / 64` is set iff position `i` is a member.
    words: Vec<u64>,
    /// Positions `0..capacity` may be members; kept to assert bounds.
    capacity: usize,
}

impl Bitset {
    /// Creates an empty set able to hold positions `0..capacity`.
    pub(super) fn new(capacity: usize) -> Self {
        Self { words: vec![0; capacity.div_ceil(64)], capacity }
    }

    /// Whether `position` is a member.
    ///
    /// # Panics
    /// If `position >= capacity`.
    #[cfg(test)]
    pub(super) fn contains(&self, position: usize) -> bool {
        let (word, mask) = self.locate(position);
        self.words[word] & mask != 0
    }

    /// Whether every member of `self` is a member of `other`.
    ///
    /// # Panics
    /// If the capacities differ.
    pub(super) fn is_subset(&self, other: &Bitset) -> bool {
        assert!(
            self.capacity == other.capacity,
            "subset of sets with capacities {} and {}",
            self.capacity,
            other.capacity
        );
        self.words.iter().zip(&other.words).all(|(mine, theirs)| mine & !theirs == 0)
    }

    /// Adds `position`, which must not be a member yet.
    ///
    /// # Panics
    /// If `position >= capacity` or `position` is already a member.
    pub(super) fn insert(&mut self, position: usize) {
        let (word, mask) = self.locate(position);
        assert!(self.words[word] & mask == 0, "position {position} inserted twice");
        self.words[word] |= mask;
    }

    /// Removes `position`, which must be a member.
    ///
    /// # Panics
    /// If `position >= capacity` or `position` is not a member.
    pub(super) fn remove(&mut self, position: usize) {
        let (word, mask) = self.locate(position);
        assert!(self.words[word] & mask != 0, "position {position} removed but absent");
        self.words[word] &= !mask;
    }

    /// The word index and bit mask of `position`.
    fn locate(&self, position: usize) -> (usize, u64) {
        assert!(position < self.capacity, "position {position} >= capacity {}", self.capacity);
        (position / 64, 1 << (position % 64))
    }
}

#[cfg(test)]
mod tests {
    use super::Bitset;

    #[test]
    fn insert_remove_round_trips_to_an_equal_set() {
        // Equal membership must mean equal keys in the memo cache.
        let empty = Bitset::new(130);
        let mut set = empty.clone();
        for position in [0, 63, 64, 129] {
            set.insert(position);
            assert!(set.contains(position));
        }
        assert!(!set.contains(1));
        assert_ne!(set, empty);
        for position in [0, 63, 64, 129] {
            set.remove(position);
        }
        assert_eq!(set, empty);
    }

    #[test]
    fn subset_compares_members() {
        let (mut small, mut large) = (Bitset::new(70), Bitset::new(70));
        assert!(small.is_subset(&large));
        large.insert(1);
        large.insert(69);
        assert!(small.is_subset(&large));
        small.insert(69);
        assert!(small.is_subset(&large));
        assert!(!large.is_subset(&small));
        small.insert(2);
        assert!(!small.is_subset(&large));
    }

    #[test]
    #[should_panic(expected = "inserted twice")]
    fn double_insert_panics() {
        let mut set = Bitset::new(3);
        set.insert(2);
        set.insert(2);
    }

    #[test]
    #[should_panic(expected = ">= capacity")]
    fn out_of_range_panics() {
        Bitset::new(3).contains(3);
    }
}
