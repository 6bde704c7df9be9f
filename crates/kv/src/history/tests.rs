use super::*;
use crate::DecodeError;
use crate::codec::Reader;
use proptest::prelude::*;

/// Keys that share prefixes, so prefix filters match some and skip others.
const KEYS: [&str; 6] = ["a", "ab", "abc", "b", "ba", "c"];

/// Builds well-formed batches the way a store would: it keeps each key's current state and records prev.
#[derive(Default)]
struct Writer {
    /// Each live key's state.
    keys: BTreeMap<Vec<u8>, Versioned>,
    /// The last index written.
    index: u64,
}

impl Writer {
    /// The batch of entry `last + gap`: per edit a delete (when `delete` and the key exists) or a put of
    /// `value_len` bytes. Keys after the first edit of a key are skipped (one change per key per entry).
    fn batch(&mut self, gap: u64, edits: &[(usize, bool, usize)]) -> ChangeBatch {
        self.index += gap;
        let index = self.index;
        let mut changes: Vec<Change> = Vec::new();
        for &(key, delete, value_len) in edits {
            let key = KEYS[key % KEYS.len()].as_bytes();
            if changes.iter().any(|change| change.key == key) {
                continue;
            }
            let prev = self.keys.get(key).cloned();
            match prev {
                Some(prev) if delete => {
                    self.keys.remove(key);
                    changes.push(Change::delete(key, index, prev));
                }
                _ => {
                    let value = vec![(index % 251) as u8; value_len];
                    let current = match &prev {
                        Some(prev) => {
                            Versioned { value, modify_index: index, version: prev.version + 1, ..prev.clone() }
                        }
                        None => Versioned { value, create_index: index, modify_index: index, version: 1 },
                    };
                    self.keys.insert(key.to_vec(), current.clone());
                    changes.push(Change::put(key, &current, prev));
                }
            }
        }
        ChangeBatch { index, changes }
    }

    /// A batch that puts each of `KEYS[..count]` with `value_len`-byte values.
    fn puts(&mut self, count: usize, value_len: usize) -> ChangeBatch {
        let edits: Vec<_> = (0..count).map(|key| (key, false, value_len)).collect();
        self.batch(1, &edits)
    }
}

fn limits(entries_max: usize, bytes_max: usize) -> HistoryLimits {
    HistoryLimits { entries_max, bytes_max }
}

fn indexes(batches: &[Arc<ChangeBatch>]) -> Vec<u64> {
    batches.iter().map(|batch| batch.index).collect()
}

fn encoded(history: &History) -> Vec<u8> {
    let mut out = Vec::new();
    history.encode(&mut out);
    out
}

/// Decodes a whole section (no trailing bytes allowed).
fn decoded(bytes: &[u8], applied_index: u64, limits: HistoryLimits) -> Result<History, DecodeError> {
    let mut reader = Reader::new(bytes);
    let history = History::decode(&mut reader, applied_index, limits)?;
    reader.finish()?;
    Ok(history)
}

#[test]
fn covered_from_moves_with_trim() {
    // Phase 1: a new history covers everything from 1, even before its first batch.
    let mut writer = Writer::default();
    let mut history = History::new(limits(3, usize::MAX));
    assert_eq!(history.covered_from(), 1);
    assert_eq!(history.read(1, &KeyFilter::Prefix(Vec::new()), usize::MAX).map(|page| page.more), Ok(false));

    // Phase 2: batches at 2, 4, 6 fit; entries 1, 3, 5 had no changes and are covered implicitly.
    for _ in 0..3 {
        history.append(writer.batch(2, &[(0, false, 1)]));
    }
    assert_eq!((history.covered_from(), history.len()), (1, 3));

    // Phase 3: a fourth batch drops batch 2, so the window now starts right after it.
    history.append(writer.batch(2, &[(0, false, 1)]));
    assert_eq!((history.covered_from(), history.len()), (3, 3));
    assert_eq!(history.read(2, &KeyFilter::Key(b"a".to_vec()), usize::MAX), Err(Compacted { oldest: 3 }));
    let page = history.read(3, &KeyFilter::Key(b"a".to_vec()), usize::MAX).map(|page| indexes(&page.batches));
    assert_eq!(page, Ok(vec![4, 6, 8]));
    history.check_invariants();

    // Phase 4: narrower limits trim at once; the byte limit counts key + value + overhead per change.
    history.set_limits(limits(10, 2 * (CHANGE_OVERHEAD_BYTES + 3)));
    assert_eq!((history.covered_from(), history.len()), (5, 2));
    assert_eq!(history.bytes(), 2 * (CHANGE_OVERHEAD_BYTES + 3));
    history.check_invariants();
}

#[test]
fn huge_batch_is_kept_whole() {
    // Phase 1: a batch far over the byte limit is still kept: it is the only one.
    let mut writer = Writer::default();
    let mut history = History::new(limits(100, 1000));
    history.append(writer.puts(1, 10));
    history.append(writer.puts(6, 500));
    assert_eq!((history.len(), history.covered_from()), (1, 2));
    assert!(history.bytes() > 1000);
    history.check_invariants();

    // Phase 2: it can be read whole, even with a tiny page budget.
    let page = history.read(2, &KeyFilter::Prefix(b"a".to_vec()), 1).expect("covered");
    assert_eq!(page.batches.len(), 1);
    assert_eq!(page.batches[0].matching(&KeyFilter::Prefix(b"a".to_vec())).count(), 3);
    assert_eq!((page.next_from, page.more), (3, false));

    // Phase 3: the next batch, small, replaces it.
    history.append(writer.puts(1, 10));
    assert_eq!((history.len(), history.covered_from()), (1, 3));
    history.check_invariants();
}

#[test]
fn read_pages_are_bounded_and_skip_unrelated_batches() {
    let mut writer = Writer::default();
    let mut history = History::new(HistoryLimits::DEFAULT);
    // Keys "a", "b", "ab", "ba", "abc": one creation each, so a batch's size is overhead + key + 100.
    for key in [0, 3, 1, 4, 2] {
        history.append(writer.batch(1, &[(key, false, 100)]));
    }
    let size = |key_len: usize| CHANGE_OVERHEAD_BYTES + key_len + 100;
    let filter = KeyFilter::Prefix(b"a".to_vec());
    // Two batches fit the budget; batch 2 (key "b") is scanned but not returned.
    let page = history.read(1, &filter, 2 * size(1) + 1).expect("covered");
    let got = (indexes(&page.batches), page.next_from, page.more, page.scanned_bytes);
    assert_eq!(got, (vec![1], 3, true, 2 * size(1)));
    let page = history.read(3, &filter, 2 * size(2)).expect("covered");
    assert_eq!((indexes(&page.batches), page.next_from, page.more), (vec![3], 5, true));
    let page = history.read(5, &filter, 0).expect("covered");
    assert_eq!((indexes(&page.batches), page.next_from, page.more), (vec![5], 6, false));
    // Past the last batch: nothing scanned, nothing more.
    let page = history.read(9, &filter, 0).expect("covered");
    assert_eq!((page.batches.len(), page.next_from, page.more, page.scanned_bytes), (0, 9, false, 0));
}

/// A history with creates, overwrites and deletes: batches at 1, 3, 4 and 8.
fn mixed_history() -> History {
    let mut writer = Writer::default();
    let mut history = History::new(limits(100, usize::MAX));
    history.append(writer.batch(1, &[(0, false, 3), (1, false, 0)]));
    history.append(writer.batch(2, &[(0, false, 5), (3, false, 1)]));
    history.append(writer.batch(1, &[(1, true, 0), (0, true, 0)]));
    history.append(writer.batch(4, &[(0, false, 2)]));
    history
}

#[test]
fn history_survives_snapshot_section_round_trip() {
    // Phase 1: every change, its prev and the window come back exactly.
    let history = mixed_history();
    let restored = decoded(&encoded(&history), 20, limits(100, usize::MAX)).expect("valid");
    assert_eq!(restored, history);
    assert_eq!(restored.bytes(), history.bytes());
    restored.check_invariants();

    // Phase 2: an empty history keeps its window start (a store restored from a section-less snapshot).
    let empty = History::starting_at(7, HistoryLimits::DEFAULT);
    assert_eq!(decoded(&encoded(&empty), 6, HistoryLimits::DEFAULT), Ok(empty));
}

#[test]
fn restore_keeps_own_limits() {
    // Phase 1: a node with a smaller window keeps only the newest batches (4 and 8), under its own limits.
    let bytes = encoded(&mixed_history());
    let small = limits(2, usize::MAX);
    let restored = decoded(&bytes, 20, small).expect("valid");
    assert_eq!((restored.len(), restored.covered_from(), restored.limits()), (2, 4, small));
    restored.check_invariants();

    // Phase 2: a node with a larger window keeps everything, and its own limits too.
    let large = limits(1000, usize::MAX);
    assert_eq!(decoded(&bytes, 20, large).map(|history| (history.len(), history.limits())), Ok((4, large)));

    // Phase 3: equality ignores the limits: they are a node's setting, not replicated state.
    assert_eq!(History::new(small), History::new(HistoryLimits::DEFAULT));
}

#[test]
fn decode_refuses_histories_apply_could_not_build() {
    let mut writer = Writer::default();
    let mut history = History::new(HistoryLimits::DEFAULT);
    history.append(writer.batch(1, &[(0, false, 3)]));
    history.append(writer.batch(1, &[(0, false, 3)]));
    let bytes = encoded(&history);
    let bad = |bytes: &[u8], applied_index| {
        matches!(decoded(bytes, applied_index, HistoryLimits::DEFAULT), Err(DecodeError::BadHistory { .. }))
    };
    // Phase 1: batches past the applied index, or a window starting past applied + 1 or at 0.
    assert!(bad(&bytes, 1));
    assert!(bad(&encoded(&History::starting_at(5, HistoryLimits::DEFAULT)), 3));
    let mut zero = bytes.clone();
    zero[..8].copy_from_slice(&0u64.to_le_bytes());
    assert!(bad(&zero, 2));

    // Phase 2: batches out of order.
    let mut swapped = history.clone();
    swapped.batches.swap(0, 1);
    assert!(bad(&encoded(&swapped), 2));

    // Phase 3: a window that claims to cover index 1 but lacks the write made there (batch 2 overwrites it).
    let mut gap = History::new(HistoryLimits::DEFAULT);
    gap.batches.push_back(Arc::clone(&history.batches[1]));
    assert!(bad(&encoded(&gap), 2));
    gap.covered_from = 2;
    assert!(decoded(&encoded(&gap), 2, HistoryLimits::DEFAULT).is_ok(), "a prev from before the window is fine");

    // Phase 4: a put that claims to create a key the history shows as existing.
    let mut create_again = writer.batch(1, &[(3, false, 1)]);
    create_again.changes[0].key = b"a".to_vec();
    let mut broken = history.clone();
    broken.batches.push_back(Arc::new(create_again));
    assert!(bad(&encoded(&broken), 3));
}

#[test]
#[should_panic(expected = "after batch 2")]
fn append_refuses_out_of_order_batches() {
    let mut writer = Writer::default();
    let mut history = History::new(HistoryLimits::DEFAULT);
    history.append(writer.batch(2, &[(0, false, 1)]));
    let mut late = writer.batch(1, &[(1, false, 1)]);
    late.index = 2;
    late.changes[0] =
        Change::put(b"ab", &Versioned { value: vec![], create_index: 2, modify_index: 2, version: 1 }, None);
    history.append(late);
}

#[test]
#[should_panic(expected = "a delete has no previous value")]
fn append_refuses_malformed_changes() {
    let mut history = History::new(HistoryLimits::DEFAULT);
    let mut delete = Change::delete(b"k", 1, Versioned { value: vec![], create_index: 1, modify_index: 1, version: 1 });
    delete.prev = None;
    history.append(ChangeBatch { index: 1, changes: vec![delete] });
}

/// One step of the model test.
#[derive(Debug, Clone)]
enum Op {
    /// Append the batch of these edits (key, delete, value length) at `last + gap`.
    Append { gap: u64, edits: Vec<(usize, bool, usize)> },
    /// Read from `covered_from - 1 + from_offset` (so sometimes a compacted index) with a filter and a budget.
    Read { from_offset: u64, filter: KeyFilter, max_bytes: usize },
    /// Change the limits.
    SetLimits { entries_max: usize, bytes_max: usize },
}

fn arb_filter() -> impl Strategy<Value = KeyFilter> {
    let prefixes = prop_oneof![Just(""), Just("a"), Just("ab"), Just("b"), Just("z")];
    let keys = prop_oneof![Just("a"), Just("ab"), Just("c"), Just("z")];
    prop_oneof![
        prefixes.prop_map(|prefix| KeyFilter::Prefix(prefix.as_bytes().to_vec())),
        keys.prop_map(|key| KeyFilter::Key(key.as_bytes().to_vec())),
    ]
}

fn arb_op() -> impl Strategy<Value = Op> {
    let edit = (0..KEYS.len(), any::<bool>(), 0usize..300);
    prop_oneof![
        6 => (1u64..4, proptest::collection::vec(edit, 1..5)).prop_map(|(gap, edits)| Op::Append { gap, edits }),
        3 => (0u64..12, arb_filter(), 0usize..2000)
            .prop_map(|(from_offset, filter, max_bytes)| Op::Read { from_offset, filter, max_bytes }),
        1 => (1usize..12, 200usize..4000).prop_map(|(entries_max, bytes_max)| Op::SetLimits { entries_max, bytes_max }),
    ]
}

/// The history as a plain list: trimming and reading recomputed from scratch at every step.
struct Model {
    kept: Vec<Arc<ChangeBatch>>,
    covered_from: u64,
    limits: HistoryLimits,
}

impl Model {
    fn total_bytes(&self) -> usize {
        self.kept.iter().map(|batch| batch.size_bytes()).sum()
    }

    fn trim(&mut self) {
        while self.kept.len() > 1
            && (self.kept.len() > self.limits.entries_max || self.total_bytes() > self.limits.bytes_max)
        {
            let dropped = self.kept.remove(0);
            self.covered_from = dropped.index + 1;
        }
    }

    /// Every kept batch from `from` on that matches, or compacted.
    fn matching_from(&self, from: u64, filter: &KeyFilter) -> Result<Vec<u64>, Compacted> {
        if from < self.covered_from {
            return Err(Compacted { oldest: self.covered_from });
        }
        Ok(self
            .kept
            .iter()
            .filter(|batch| batch.index >= from && batch.matches(filter))
            .map(|batch| batch.index)
            .collect())
    }

    /// What one page should hold: a scan of at least one batch, then more while the total stays within budget.
    fn page(&self, from: u64, filter: &KeyFilter, max_bytes: usize) -> Result<(Vec<u64>, u64, bool), Compacted> {
        self.matching_from(from, filter)?;
        let candidates: Vec<_> = self.kept.iter().filter(|batch| batch.index >= from).collect();
        let mut taken = 0;
        while taken < candidates.len() {
            let total: usize = candidates[..=taken].iter().map(|batch| batch.size_bytes()).sum();
            if taken > 0 && total > max_bytes {
                break;
            }
            taken += 1;
        }
        let scanned = &candidates[..taken];
        let matching = scanned.iter().filter(|batch| batch.matches(filter)).map(|batch| batch.index).collect();
        let next_from = scanned.last().map_or(from, |batch| batch.index + 1);
        Ok((matching, next_from, taken < candidates.len()))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn history_matches_naive_model(ops in proptest::collection::vec(arb_op(), 1..60)) {
        let mut writer = Writer::default();
        let initial = limits(8, 3000);
        let mut history = History::new(initial);
        let mut model = Model { kept: Vec::new(), covered_from: 1, limits: initial };
        for op in ops {
            match op {
                Op::Append { gap, edits } => {
                    let batch = writer.batch(gap, &edits);
                    if batch.changes.is_empty() {
                        continue;
                    }
                    model.kept.push(Arc::new(batch.clone()));
                    model.trim();
                    history.append(batch);
                }
                Op::Read { from_offset, filter, max_bytes } => {
                    let from = (model.covered_from + from_offset).saturating_sub(1).max(1);
                    let page = history.read(from, &filter, max_bytes)
                        .map(|page| (indexes(&page.batches), page.next_from, page.more));
                    prop_assert_eq!(page, model.page(from, &filter, max_bytes));
                    // Paging on to the end yields exactly the matching batches, each once.
                    let mut paged = Vec::new();
                    let mut next = from;
                    while let Ok(page) = history.read(next, &filter, max_bytes) {
                        paged.extend(indexes(&page.batches));
                        next = page.next_from;
                        if !page.more {
                            break;
                        }
                    }
                    if let Ok(expected) = model.matching_from(from, &filter) {
                        prop_assert_eq!(paged, expected);
                    }
                }
                Op::SetLimits { entries_max, bytes_max } => {
                    model.limits = limits(entries_max, bytes_max);
                    model.trim();
                    history.set_limits(model.limits);
                }
            }
            history.check_invariants();
            prop_assert_eq!(history.covered_from(), model.covered_from);
            prop_assert_eq!(history.bytes(), model.total_bytes());
            prop_assert_eq!(history.batches_from(0).cloned().collect::<Vec<_>>(), model.kept.clone());
        }
        // The final history survives its snapshot section.
        let restored = decoded(&encoded(&history), writer.index, model.limits);
        prop_assert_eq!(restored, Ok(history));
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), applied in 0u64..40) {
        if let Ok(history) = decoded(&bytes, applied, limits(4, 1000)) {
            history.check_invariants();
        }
    }

    #[test]
    fn damaged_sections_never_panic(
        edits in proptest::collection::vec((0..KEYS.len(), any::<bool>(), 0usize..8), 1..12),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in any::<usize>(),
    ) {
        // A valid section with bytes changed and its tail cut exercises the parser past the first field.
        let mut writer = Writer::default();
        let mut history = History::new(HistoryLimits::DEFAULT);
        for pair in edits.chunks(2) {
            let batch = writer.batch(1, pair);
            if !batch.changes.is_empty() {
                history.append(batch);
            }
        }
        let mut bytes = encoded(&history);
        for (position, value) in flips {
            let len = bytes.len();
            bytes[position % len] ^= value;
        }
        bytes.truncate(bytes.len() - cut % 3);
        if let Ok(history) = decoded(&bytes, writer.index, limits(4, 1000)) {
            history.check_invariants();
        }
    }
}
