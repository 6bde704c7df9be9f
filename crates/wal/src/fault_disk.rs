//! [`FaultDisk`]: an in-memory [`Disk`] that models durability, so tests can crash it.
//!
//! # Fault model
//!
//! - **Files.** Each file has its written bytes and its durable bytes. A write changes the
//!   written bytes at once; [`DiskFile::sync`] copies the written bytes to the durable ones.
//! - **Directory.** The live directory (name to file) changes at once on create, remove and
//!   rename; [`Disk::sync_dir`] copies it to the durable directory. A file's contents and its
//!   name are durable independently, as on a real file system: a synced file whose creation was
//!   never made durable disappears in a crash.
//! - **Crash** ([`FaultDisk::crash`]): power loss. The live directory goes back to the durable
//!   one and every file back to its durable bytes. Open handles become stale and fail.
//! - **Torn write** ([`FaultDisk::crash_tearing`]): a crash in which the last unsynced write of
//!   one file reached the platter partially: a strict prefix of it survives (short of its last
//!   non-zero byte, so something is always lost), and the last bytes of that prefix may be
//!   garbage (a sector written halfway).
//! - **Failed sync** ([`FaultDisk::fail_sync_after`]): a sync (file or directory) returns an
//!   error and makes nothing durable; from then on every mutating call fails too, as a disk that
//!   went away would. A crash clears the failure (the machine rebooted).
//! - **Process crash** ([`FaultDisk::crash_process`]): the process dies but the machine keeps running:
//!   the page cache survives, so unsynced writes are still read back, yet they are no more durable than
//!   before. Open handles go stale and an injected failure is cleared (the disk works again).
//! - **Pages marked clean after a failed sync**: a failed file sync also forgets which bytes were
//!   dirty, as Linux does: a later successful sync does not make them durable unless they are written
//!   again, although reads still return them until a power loss.
//! - **Bit rot** ([`FaultDisk::flip_bit`]): a bit of written and durable data flips.
//!
//! All randomness comes from the seed, so one seed replays one run.
//!
//! Files keep an implicit zero tail: the WAL preallocates segments with zeros, and storing those
//! zeros only as a length keeps a simulated 64 MiB segment cheap.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::disk::{Disk, DiskFile};

mod bytes;

use bytes::Bytes;

/// A crashable in-memory disk. Cloning gives another handle to the same disk, so a test or the
/// simulator keeps one while the WAL owns another. `Send`, so either may live on any thread.
#[derive(Clone)]
pub struct FaultDisk {
    /// Shared state; a `std` mutex because no call holds it across a blocking operation.
    state: Arc<Mutex<FaultState>>,
}

#[derive(Debug)]
struct FaultState {
    /// splitmix64 state: every random choice (tear length, garbage) comes from here.
    rng: u64,
    /// Bumped by every crash; handles opened before it fail, as file descriptors do on reboot.
    epoch: u64,
    /// Id for the next created file; ids are never reused.
    next_file_id: u64,
    /// Name to file id, as every call sees it.
    dir: BTreeMap<String, u64>,
    /// Name to file id, as a crash would leave it.
    dir_durable: BTreeMap<String, u64>,
    /// Every file reachable from `dir` or `dir_durable`.
    files: BTreeMap<u64, FileState>,
    /// File and directory syncs attempted so far (failed ones included).
    syncs: u64,
    /// `Some(n)`: the sync after `n` more successful ones fails.
    fail_countdown: Option<u64>,
    /// A sync failed: every mutating call fails until the next crash.
    failed: bool,
}

#[derive(Clone, Debug, Default)]
struct FileState {
    /// What reads see.
    data: Bytes,
    /// What survives a crash.
    durable: Bytes,
    /// Byte range `[lo, hi)` where `data` may differ from `durable` (beyond the length change).
    dirty: Option<(u64, u64)>,
    /// The last write since the last sync: the candidate for a torn write.
    last_write: Option<LastWrite>,
}

#[derive(Clone, Debug)]
struct LastWrite {
    offset: u64,
    /// The bytes written; `None` when they were all zeros (preallocation), to save memory.
    data: Option<Vec<u8>>,
    len: u64,
}

impl FileState {
    fn mark_dirty(&mut self, lo: u64, hi: u64) {
        self.dirty = Some(match self.dirty {
            None => (lo, hi),
            Some((a, b)) => (a.min(lo), b.max(hi)),
        });
    }

    fn sync(&mut self) {
        self.durable.set_len(self.data.len);
        if let Some((lo, hi)) = self.dirty.take() {
            let hi = hi.min(self.data.len);
            if lo < hi {
                self.durable.copy_range(&self.data, lo, hi);
            }
        }
        self.last_write = None;
        assert_eq!(self.durable.len, self.data.len, "sync left durable and written lengths apart");
    }
}

impl FaultState {
    fn next_random(&mut self) -> u64 {
        // splitmix64: tiny, good enough, and the same on every platform.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn random_below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "random_below(0)");
        self.next_random() % bound
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("fault disk: failed after an injected sync failure"));
        }
        Ok(())
    }

    /// Counts a sync and decides whether it is the one that fails.
    fn attempt_sync(&mut self) -> io::Result<()> {
        self.check_writable()?;
        self.syncs += 1;
        match self.fail_countdown {
            Some(0) => {
                self.fail_countdown = None;
                self.failed = true;
                Err(io::Error::other("fault disk: injected sync failure"))
            }
            Some(n) => {
                self.fail_countdown = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn file_id(&self, name: &str) -> io::Result<u64> {
        self.dir.get(name).copied().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no file {name}")))
    }

    /// Drops files no directory can reach any more.
    fn collect_garbage(&mut self) {
        let dir = &self.dir;
        let dir_durable = &self.dir_durable;
        self.files.retain(|id, _| dir.values().any(|v| v == id) || dir_durable.values().any(|v| v == id));
    }

    fn crash(&mut self, tear: bool) -> bool {
        let torn = if tear { self.tear_one_write() } else { false };
        self.dir = self.dir_durable.clone();
        for file in self.files.values_mut() {
            file.data = file.durable.clone();
            file.dirty = None;
            file.last_write = None;
        }
        self.collect_garbage();
        self.epoch += 1;
        self.failed = false;
        self.fail_countdown = None;
        torn
    }

    /// Applies a strict prefix of one surviving file's last unsynced write to its durable bytes,
    /// maybe ending in garbage. Returns whether a write was torn.
    fn tear_one_write(&mut self) -> bool {
        let candidates: Vec<u64> = self
            .dir_durable
            .values()
            .copied()
            .filter(|id| self.files.get(id).is_some_and(|f| f.last_write.as_ref().is_some_and(|w| w.len > 0)))
            .collect();
        if candidates.is_empty() {
            return false;
        }
        let id = candidates[self.random_below(candidates.len() as u64) as usize];
        let Some(write) = self.files.get(&id).and_then(|f| f.last_write.clone()) else {
            unreachable!("candidate file {id} lost its last write");
        };
        // Trailing zeros of the write are already on disk (preallocation), so losing only them
        // would tear nothing: keep less than the write up to its last non-zero byte.
        let meaningful =
            write.data.as_ref().and_then(|data| data.iter().rposition(|b| *b != 0)).map_or(write.len, |i| i as u64 + 1);
        let kept = self.random_below(meaningful);
        let mut prefix = match &write.data {
            Some(data) => data[..kept as usize].to_vec(),
            None => vec![0; kept as usize],
        };
        if kept > 0 && self.random_below(2) == 0 {
            let garbage = 1 + self.random_below(kept.min(16));
            let start = prefix.len() - garbage as usize;
            for byte in &mut prefix[start..] {
                *byte = self.next_random() as u8;
            }
        }
        let Some(file) = self.files.get_mut(&id) else {
            unreachable!("candidate file {id} vanished");
        };
        if file.durable.len < write.offset {
            file.durable.set_len(write.offset);
        }
        file.durable.write(write.offset, &prefix);
        true
    }
}

impl FaultDisk {
    /// A new empty disk whose random choices all derive from `seed`.
    pub fn new(seed: u64) -> FaultDisk {
        let state = FaultState {
            rng: seed,
            epoch: 0,
            next_file_id: 1,
            dir: BTreeMap::new(),
            dir_durable: BTreeMap::new(),
            files: BTreeMap::new(),
            syncs: 0,
            fail_countdown: None,
            failed: false,
        };
        FaultDisk { state: Arc::new(Mutex::new(state)) }
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        // A panic while holding the lock (a failed assertion in a test) must not hide the state
        // from the test's own report, so a poisoned lock is still used.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Power loss: every file goes back to its synced bytes, unsynced directory changes are
    /// undone, open handles go stale, and any injected sync failure is cleared.
    pub fn crash(&self) {
        self.lock().crash(false);
    }

    /// Like [`FaultDisk::crash`], but the last unsynced write of one file (chosen from the seed)
    /// survives partially: a strict prefix of it, whose last bytes may be garbage. Returns
    /// whether there was a write to tear.
    pub fn crash_tearing(&self) -> bool {
        self.lock().crash(true)
    }

    /// Process crash without power loss: the page cache survives (reads still see unsynced writes, which
    /// stay exactly as non-durable as they were), open handles go stale, and an injected sync failure is
    /// cleared. A later [`FaultDisk::crash`] loses whatever was never made durable.
    pub fn crash_process(&self) {
        let mut state = self.lock();
        state.epoch += 1;
        state.failed = false;
        state.fail_countdown = None;
    }

    /// Makes the `(n + 1)`-th sync from now (file or directory) fail, without making anything
    /// durable; after it every mutating call fails until [`FaultDisk::crash`].
    pub fn fail_sync_after(&self, n: u64) {
        self.lock().fail_countdown = Some(n);
    }

    /// Flips bit `bit` (0..8) of byte `offset` of file `name`, in both its written and durable
    /// bytes: corruption of data at rest.
    ///
    /// # Panics
    /// If the file does not exist, `offset` is past its end, or `bit >= 8`.
    pub fn flip_bit(&self, name: &str, offset: u64, bit: u8) {
        assert!(bit < 8, "bit {bit} out of range");
        let mut state = self.lock();
        let id = state.dir.get(name).copied().unwrap_or_else(|| panic!("flip_bit: no file {name}"));
        let Some(file) = state.files.get_mut(&id) else {
            unreachable!("directory names missing file {id}");
        };
        assert!(offset < file.data.len, "flip_bit: offset {offset} past end {} of {name}", file.data.len);
        for bytes in [&mut file.data, &mut file.durable] {
            if offset < bytes.len {
                let mut byte = [0u8];
                bytes.read(offset, &mut byte);
                byte[0] ^= 1 << bit;
                bytes.write(offset, &byte);
            }
        }
    }

    /// File and directory syncs attempted so far: the crash points of a workload are `0..syncs()`.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// The names in the live directory, sorted.
    pub fn file_names(&self) -> Vec<String> {
        self.lock().dir.keys().cloned().collect()
    }

    /// The current (written) contents of file `name`, if it exists: lets a test find offsets.
    pub fn read_file(&self, name: &str) -> Option<Vec<u8>> {
        let state = self.lock();
        let id = state.dir.get(name)?;
        state.files.get(id).map(|file| file.data.to_vec())
    }
}

impl std::fmt::Debug for FaultDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // File contents can be megabytes: show the shape, not the bytes.
        let state = self.lock();
        f.debug_struct("FaultDisk")
            .field("files", &state.dir.keys().collect::<Vec<_>>())
            .field("syncs", &state.syncs)
            .field("failed", &state.failed)
            .field("epoch", &state.epoch)
            .finish_non_exhaustive()
    }
}

impl Disk for FaultDisk {
    type File = FaultFile;

    fn create(&mut self, name: &str) -> io::Result<FaultFile> {
        let mut state = self.lock();
        state.check_writable()?;
        if state.dir.contains_key(name) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{name} exists")));
        }
        let id = state.next_file_id;
        state.next_file_id += 1;
        state.files.insert(id, FileState::default());
        state.dir.insert(name.to_owned(), id);
        Ok(FaultFile { disk: self.clone(), id, epoch: state.epoch })
    }

    fn open(&mut self, name: &str) -> io::Result<FaultFile> {
        let state = self.lock();
        let id = state.file_id(name)?;
        Ok(FaultFile { disk: self.clone(), id, epoch: state.epoch })
    }

    fn list(&mut self) -> io::Result<Vec<String>> {
        Ok(self.file_names())
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        let mut state = self.lock();
        state.check_writable()?;
        state.file_id(name)?;
        state.dir.remove(name);
        state.collect_garbage();
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        let mut state = self.lock();
        state.check_writable()?;
        let id = state.file_id(from)?;
        state.dir.remove(from);
        state.dir.insert(to.to_owned(), id);
        state.collect_garbage();
        Ok(())
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        let mut state = self.lock();
        state.attempt_sync()?;
        state.dir_durable = state.dir.clone();
        state.collect_garbage();
        Ok(())
    }
}

/// An open file of a [`FaultDisk`]. Stale (every call fails) after the disk crashes.
#[derive(Debug)]
pub struct FaultFile {
    /// The disk this file lives on.
    disk: FaultDisk,
    /// The file's identity, stable across renames.
    id: u64,
    /// The disk epoch this handle was opened in.
    epoch: u64,
}

impl FaultFile {
    fn with_file<T>(&self, write: bool, f: impl FnOnce(&mut FileState) -> io::Result<T>) -> io::Result<T> {
        let mut state = self.disk.lock();
        if state.epoch != self.epoch {
            return Err(io::Error::other("fault disk: stale file handle from before a crash"));
        }
        if write {
            state.check_writable()?;
        }
        let file = state.files.get_mut(&self.id).ok_or_else(|| io::Error::other("fault disk: file was removed"))?;
        f(file)
    }
}

impl DiskFile for FaultFile {
    fn len(&self) -> u64 {
        self.with_file(false, |file| Ok(file.data.len)).unwrap_or(0)
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.with_file(false, |file| {
            if offset.checked_add(buf.len() as u64).is_none_or(|end| end > file.data.len) {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the file"));
            }
            file.data.read(offset, buf);
            Ok(())
        })
    }

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let offset = self.len();
        self.write_at(offset, data)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.with_file(true, |file| {
            if offset > file.data.len {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "write starts past the end of the file"));
            }
            file.data.write(offset, data);
            file.mark_dirty(offset, offset + data.len() as u64);
            let zeros = data.iter().all(|byte| *byte == 0);
            file.last_write = Some(LastWrite { offset, data: (!zeros).then(|| data.to_vec()), len: data.len() as u64 });
            Ok(())
        })
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.with_file(true, |file| {
            file.data.set_len(len);
            file.mark_dirty(len, u64::MAX);
            file.last_write = None;
            Ok(())
        })
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut state = self.disk.lock();
        if state.epoch != self.epoch {
            return Err(io::Error::other("fault disk: stale file handle from before a crash"));
        }
        if let Err(error) = state.attempt_sync() {
            // Linux marks the pages of a failed writeback clean: a later fsync will not write them.
            if let Some(file) = state.files.get_mut(&self.id) {
                file.dirty = None;
                file.last_write = None;
            }
            return Err(error);
        }
        let file = state.files.get_mut(&self.id).ok_or_else(|| io::Error::other("fault disk: file was removed"))?;
        file.sync();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
