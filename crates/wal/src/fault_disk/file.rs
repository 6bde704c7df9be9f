//! One file of the fault disk: its page cache, its durable bytes, and the operations in between, which
//! a power loss resolves sector by sector.

use std::collections::BTreeSet;

use super::PowerLoss;
use super::bytes::Bytes;
use super::rng::Rng;

/// A change to a file since its last successful sync.
#[derive(Clone, Debug)]
pub(super) enum Op {
    /// `write_at(offset, data)`; `data` is `None` when the bytes were all zeros (preallocation), so a
    /// simulated 64 MiB segment costs no memory.
    Write { offset: u64, data: Option<Vec<u8>>, len: u64 },
    /// `truncate(len)`: whole or not at all after a power loss.
    SetLen { len: u64 },
}

/// An [`Op`] and whether the page cache still holds it dirty.
#[derive(Clone, Debug)]
pub(super) struct PendingOp {
    pub(super) op: Op,
    /// False once a failed sync marked its pages clean (as Linux does): a later successful sync does not
    /// write it, although a power loss may still find it on the platter (the failed writeback may have
    /// written part of it).
    pub(super) dirty: bool,
}

/// What happens to one sector of an unsynced write at a power loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// The sector as the page cache held it right after the write reached the platter.
    Persisted,
    /// The platter keeps what it held (usually zeros, in preallocated space).
    Lost,
    /// The sector was being written when the power went: the bytes of this write in it are garbage.
    Garbage,
}

/// One file.
///
/// Invariant: after a successful sync, `durable == data` except where a failed sync left pages marked
/// clean; `pending` is empty after every sync and every crash.
#[derive(Clone, Debug, Default)]
pub(super) struct FileState {
    /// What reads see: the page cache.
    pub(super) data: Bytes,
    /// What the platter holds as of the last sync.
    pub(super) durable: Bytes,
    /// Every write and truncation since the last successful sync, oldest first.
    pub(super) pending: Vec<PendingOp>,
    /// Byte range `[lo, hi)` of the most recent non-zero write a successful sync made durable: the
    /// target of [`super::FaultDisk::damage_last_synced_write`].
    pub(super) last_synced_write: Option<(u64, u64)>,
    /// Sector numbers whose reads fail (latent sector errors), until a write to them remaps them.
    pub(super) unreadable: BTreeSet<u64>,
}

impl FileState {
    pub(super) fn write(&mut self, offset: u64, data: &[u8], sector: u64) {
        self.data.write(offset, data);
        let len = data.len() as u64;
        let zeros = data.iter().all(|byte| *byte == 0);
        self.pending
            .push(PendingOp { op: Op::Write { offset, data: (!zeros).then(|| data.to_vec()), len }, dirty: true });
        if len > 0 && !self.unreadable.is_empty() {
            let (first, last) = (offset / sector, (offset + len - 1) / sector);
            self.unreadable.retain(|s| *s < first || *s > last);
        }
    }

    pub(super) fn set_len(&mut self, len: u64, sector: u64) {
        self.data.set_len(len);
        self.pending.push(PendingOp { op: Op::SetLen { len }, dirty: true });
        self.unreadable.retain(|s| s * sector < len);
    }

    /// Whether `[offset, offset + len)` touches an unreadable sector.
    pub(super) fn hits_unreadable(&self, offset: u64, len: u64, sector: u64) -> bool {
        len > 0 && self.unreadable.range(offset / sector..=(offset + len - 1) / sector).next().is_some()
    }

    /// A successful fdatasync: every dirty operation reaches the platter, and the length too.
    pub(super) fn sync(&mut self) {
        for pending in std::mem::take(&mut self.pending) {
            if !pending.dirty {
                continue;
            }
            match pending.op {
                Op::Write { offset, data, len } => {
                    apply_write(&mut self.durable, offset, data.as_deref(), len);
                    if data.is_some() {
                        self.last_synced_write = Some((offset, offset + len));
                    }
                }
                Op::SetLen { len } => self.durable.set_len(len),
            }
        }
        self.durable.set_len(self.data.len);
        assert_eq!(self.durable.len, self.data.len, "sync left durable and written lengths apart");
    }

    /// A failed fdatasync: the kernel marks the pages clean, so no later sync writes them.
    pub(super) fn mark_clean(&mut self) {
        self.pending.iter_mut().for_each(|pending| pending.dirty = false);
    }

    /// The gentle power loss: nothing unsynced reached the platter.
    pub(super) fn lose_unsynced(&mut self) {
        self.pending.clear();
        self.data = self.durable.clone();
    }

    /// The harsh power loss: every unsynced write reaches the platter whole, not at all, or sector by
    /// sector (each sector persisted, lost or garbage); truncations whole or not at all. Operations are
    /// replayed in order against a copy of the page cache, so a persisted sector holds what the cache held
    /// after that write (a later write kept and an earlier one lost is possible across sectors; within one
    /// sector, a later version includes the earlier writes, as a page written back does).
    pub(super) fn power_loss(&mut self, rng: &mut Rng, sector: u64, report: &mut PowerLoss) {
        let mut cache = self.durable.clone();
        let mut platter = std::mem::take(&mut self.durable);
        for pending in std::mem::take(&mut self.pending) {
            match pending.op {
                Op::SetLen { len } => {
                    cache.set_len(len);
                    if rng.chance(1, 2) {
                        platter.set_len(len);
                        report.truncations_kept += 1;
                    } else {
                        report.truncations_lost += 1;
                    }
                }
                Op::Write { offset, data, len } => {
                    if cache.len < offset {
                        cache.set_len(offset);
                    }
                    apply_write(&mut cache, offset, data.as_deref(), len);
                    report.writes += 1;
                    persist_sectors(&cache, &mut platter, (offset, offset + len), rng, sector, report);
                }
            }
        }
        self.durable = platter;
        self.data = self.durable.clone();
    }

    /// The legacy tear: a strict prefix of the last unsynced write reaches the platter (short of its last
    /// non-zero byte), maybe ending in up to 16 garbage bytes. Returns false if the last operation is not a
    /// non-empty write. The caller then loses everything else.
    pub(super) fn tear_last_write(&mut self, rng: &mut Rng) -> bool {
        let Some(PendingOp { op: Op::Write { offset, data, len }, .. }) = self.pending.last().cloned() else {
            return false;
        };
        if len == 0 {
            return false;
        }
        // Trailing zeros of the write are already on disk (preallocation), so losing only them would tear
        // nothing: keep less than the write up to its last non-zero byte.
        let meaningful = data.as_ref().and_then(|d| d.iter().rposition(|b| *b != 0)).map_or(len, |i| i as u64 + 1);
        let kept = rng.below(meaningful) as usize;
        let mut prefix = data.map_or_else(|| vec![0; kept], |d| d[..kept].to_vec());
        if kept > 0 && rng.chance(1, 2) {
            let garbage = 1 + rng.below(kept.min(16) as u64) as usize;
            rng.fill(&mut prefix[kept - garbage..]);
        }
        if self.durable.len < offset {
            self.durable.set_len(offset);
        }
        self.durable.write(offset, &prefix);
        true
    }

    /// Zeroes or garbles the bytes of the most recent synced write within one of its sectors (never all of
    /// a write: its first 8 bytes stay when it fits in one sector), in the page cache and on the platter.
    /// Returns the damaged range.
    pub(super) fn damage_last_synced_write(&mut self, rng: &mut Rng, sector: u64) -> Option<(u64, u64)> {
        let (offset, end) = self.last_synced_write?;
        if end > self.durable.len || end > self.data.len || end <= offset {
            return None; // truncated away since
        }
        // The write's last sector: where the log's last batch ends (its marker). A sector further in
        // would damage batches a later sync already covered (recovery rewrites the whole kept part of a
        // segment in one write), which recovery rightly refuses rather than cuts.
        let at = ((end - 1) / sector) * sector;
        let (mut lo, hi) = (at.max(offset), (at + sector).min(end));
        let whole_write = lo == offset && hi == end;
        if whole_write {
            // Never the whole write: a write lost entirely leaves no evidence at all (a "lost write"),
            // which no recovery can detect; that fault is outside the model.
            lo = (offset + 8).min(hi - 1);
        }
        let mut bytes = vec![0; (hi - lo) as usize];
        // Zeros only inside the write's first record. A write can hold several batches (recovery rewrites
        // the kept part of a segment in one write), and zeros from a sector boundary that is also a batch
        // boundary would wipe out the batches after it whole: the log would simply end there, a lost
        // write again. Such damage garbles instead.
        if !whole_write || rng.chance(1, 2) {
            rng.fill(&mut bytes);
        }
        self.data.write(lo, &bytes);
        self.durable.write(lo, &bytes);
        Some((lo, hi))
    }
}

fn apply_write(target: &mut Bytes, offset: u64, data: Option<&[u8]>, len: u64) {
    match data {
        Some(data) => target.write(offset, data),
        None => target.write_zeros(offset, offset + len),
    }
}

/// Decides the fate of every sector the write `[lo, hi)` touched and copies the persisted ones from
/// `cache` (the page cache right after the write) to `platter`.
fn persist_sectors(
    cache: &Bytes,
    platter: &mut Bytes,
    (lo, hi): (u64, u64),
    rng: &mut Rng,
    sector: u64,
    report: &mut PowerLoss,
) {
    let mode = rng.below(4); // 0: the whole write reached the platter, 1: none of it, else sector by sector
    let mut buf = vec![0; sector as usize];
    let mut at = lo / sector * sector;
    while at < hi {
        let fate = match mode {
            0 => Fate::Persisted,
            1 => Fate::Lost,
            _ => match rng.below(10) {
                0..=4 => Fate::Persisted,
                5..=8 => Fate::Lost,
                _ => Fate::Garbage,
            },
        };
        let end = (at + sector).min(cache.len);
        match fate {
            Fate::Lost => report.sectors_lost += 1,
            Fate::Persisted | Fate::Garbage => {
                let bytes = &mut buf[..(end - at) as usize];
                cache.read(at, bytes);
                if fate == Fate::Garbage {
                    // Only the bytes this write covered: a torn sector write does not damage the bytes
                    // around it (the "powersafe overwrite" property SQLite relies on).
                    rng.fill(&mut bytes[(lo.max(at) - at) as usize..(hi.min(end) - at) as usize]);
                    report.sectors_garbage += 1;
                } else {
                    report.sectors_persisted += 1;
                }
                if platter.len < at {
                    platter.set_len(at);
                }
                platter.write(at, bytes);
            }
        }
        at += sector;
    }
}
