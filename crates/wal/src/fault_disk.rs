//! [`FaultDisk`]: an in-memory [`Disk`] that fails the way real disks do, so tests can crash it.
//!
//! # Fault model
//!
//! All randomness comes from the seed, so one seed replays one run. The disk has a sector size, 512 B or
//! 4 KiB, drawn from the seed ([`FaultDisk::sector_bytes`]).
//!
//! - **Files.** Each file has a page cache (what reads see), durable bytes (what the platter holds as of
//!   the last sync) and the list of writes and truncations in between. [`DiskFile::sync`] applies them to
//!   the durable bytes.
//! - **Directory.** Creates, removes and renames change the live directory at once and are listed until
//!   [`Disk::sync_dir`] makes them durable. A file's contents and its name are durable independently: a
//!   synced file whose creation was never made durable may disappear in a power loss.
//! - **Power loss, harsh** ([`FaultDisk::power_loss`]): every unsynced write of every file reaches the
//!   platter whole, not at all, or sector by sector, each sector independently persisted, lost (the old
//!   content stays, zeros in preallocated space) or garbage; so a later write may survive while an
//!   earlier one is lost, and a hole may open in the middle of a write. A torn sector garbles only the
//!   bytes the write covered (the "powersafe overwrite" property: synced bytes sharing the sector are
//!   safe). Within one sector a persisted version includes the earlier writes to it, as a page written
//!   back does. Truncations survive whole or not at all. Any subset of the directory changes since the
//!   last `sync_dir` survives, replayed in order where each still applies: a rename stays atomic per name,
//!   and no directory appears that no subset could produce. Open handles go stale; an injected sync
//!   failure is cleared (the machine rebooted).
//! - **Power loss, gentle** ([`FaultDisk::crash`]): nothing unsynced survives.
//! - **Legacy tear** ([`FaultDisk::crash_tearing`]): a gentle power loss in which a strict prefix of the
//!   last unsynced write of one file survives, maybe ending in garbage; for targeted tests.
//! - **Process crash** ([`FaultDisk::crash_process`]): the machine keeps running: the page cache
//!   survives, so unsynced writes are still read back, yet they are no more durable than before; a power
//!   loss later may still lose them. Open handles go stale; an injected failure is cleared.
//! - **Failed sync** ([`FaultDisk::fail_sync_after`]): a sync (file or directory) returns an error and makes
//!   nothing durable; from then on every mutating call fails too, as a disk that went away would, until a
//!   crash. A failed file sync also marks the file's pages clean, as Linux does: a later successful sync
//!   does not make them durable unless they are written again, although reads still return them and a
//!   power loss may find any part of them on the platter (the failed writeback may have written some).
//! - **Latent sector error** ([`FaultDisk::latent_sector_error`], opt-in): reads touching one sector of a
//!   file fail with an I/O error (EIO), across crashes, until a write to that sector remaps it.
//! - **Misdirected write** ([`FaultDisk::misdirect_next_write`], opt-in): the next write that stays inside
//!   its file lands on the platter at another offset of the same file or at the same offset of another
//!   file; the intended place keeps its old bytes. The page cache is not modelled for it: reads see what
//!   the platter holds. The WAL must detect it (its checksums bind offset, segment and log), never trust it.
//! - **Damage after acknowledgement** ([`FaultDisk::damage_last_synced_write`], opt-in): one sector's worth
//!   of the most recent synced write of a file is zeroed or garbled: recovery cannot tell it from a torn
//!   write of an unsynced batch, the case protocol-aware recovery exists for. Never a whole write, nor
//!   zeros over whole batches of a write that holds several: a write (or batch) lost entirely (a "lost
//!   write") leaves no evidence on disk that any recovery could see.
//! - **Bit rot** ([`FaultDisk::flip_bit`], opt-in): a bit of written and durable data flips.
//!
//! Files keep an implicit zero tail: the WAL preallocates segments with zeros, and storing those zeros only
//! as a length (and zero writes without their bytes) keeps a simulated 64 MiB segment cheap.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::disk::{Disk, DiskFile};

mod bytes;
mod dir;
mod file;
mod rng;

use dir::Directory;
use file::FileState;
use rng::Rng;

/// A crashable in-memory disk. Cloning gives another handle to the same disk, so a test or the
/// simulator keeps one while the WAL owns another. `Send`, so either may live on any thread.
#[derive(Clone)]
pub struct FaultDisk {
    /// Shared state; a `std` mutex because no call holds it across a blocking operation.
    state: Arc<Mutex<FaultState>>,
}

/// What a harsh power loss did to the unsynced changes, for tests and traces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PowerLoss {
    /// Unsynced writes resolved (across all files).
    pub writes: u64,
    /// Sectors of those writes that reached the platter as written.
    pub sectors_persisted: u64,
    /// Sectors of those writes that never reached the platter.
    pub sectors_lost: u64,
    /// Sectors of those writes left holding garbage.
    pub sectors_garbage: u64,
    /// Unsynced truncations that survived.
    pub truncations_kept: u64,
    /// Unsynced truncations undone.
    pub truncations_lost: u64,
    /// Unsynced directory changes that survived.
    pub dir_ops_kept: u64,
    /// Unsynced directory changes undone.
    pub dir_ops_lost: u64,
}

impl std::fmt::Display for PowerLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} unsynced writes: sectors {} persisted, {} lost, {} garbage; truncations {} kept, {} lost; \
             directory changes {} kept, {} lost",
            self.writes,
            self.sectors_persisted,
            self.sectors_lost,
            self.sectors_garbage,
            self.truncations_kept,
            self.truncations_lost,
            self.dir_ops_kept,
            self.dir_ops_lost
        )
    }
}

/// Where a misdirected write landed ([`FaultDisk::misdirect_next_write`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Misdirection {
    /// The file the write was meant for.
    pub intended_file: String,
    /// The offset it was meant for.
    pub intended_offset: u64,
    /// The file it landed in.
    pub file: String,
    /// The offset it landed at.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
}

#[derive(Debug)]
struct FaultState {
    /// Every random choice comes from here.
    rng: Rng,
    /// 512 or 4096: the unit of tearing, latent errors and damage.
    sector_bytes: u64,
    /// Bumped by every crash; handles opened before it fail, as file descriptors do on reboot.
    epoch: u64,
    /// Id for the next created file; ids are never reused.
    next_file_id: u64,
    /// Names, live and durable.
    dir: Directory,
    /// Every file the directory reaches (live, durable, or by an unsynced change).
    files: BTreeMap<u64, FileState>,
    /// File and directory syncs attempted so far (failed ones included).
    syncs: u64,
    /// `Some(n)`: the sync after `n` more successful ones fails.
    fail_countdown: Option<u64>,
    /// A sync failed: every mutating call fails until the next crash.
    failed: bool,
    /// The next write that stays inside its file is misdirected.
    misdirect_armed: bool,
    /// Misdirected writes so far.
    misdirections: Vec<Misdirection>,
}

impl FaultState {
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
        self.dir
            .live
            .get(name)
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no file {name}")))
    }

    fn file_mut(&mut self, id: u64) -> &mut FileState {
        self.files.get_mut(&id).unwrap_or_else(|| unreachable!("directory reaches missing file {id}"))
    }

    /// Drops files no directory state can reach any more.
    fn collect_garbage(&mut self) {
        let dir = &self.dir;
        self.files.retain(|id, _| dir.reaches(*id));
    }

    /// What every kind of crash does besides the data: handles go stale, the injected failure clears.
    fn reboot(&mut self) {
        self.collect_garbage();
        self.epoch += 1;
        self.failed = false;
        self.fail_countdown = None;
        self.misdirect_armed = false;
    }

    fn power_loss(&mut self) -> PowerLoss {
        let mut report = PowerLoss::default();
        let sector = self.sector_bytes;
        for file in self.files.values_mut() {
            file.power_loss(&mut self.rng, sector, &mut report);
        }
        self.dir.power_loss(&mut self.rng, &mut report);
        self.reboot();
        report
    }

    fn lose_unsynced(&mut self) {
        for file in self.files.values_mut() {
            file.lose_unsynced();
        }
        self.dir.lose_unsynced();
        self.reboot();
    }

    /// Tears the last unsynced write of one file whose name is durable (chosen from the seed).
    fn tear_one_write(&mut self) -> bool {
        let candidates: Vec<u64> = self
            .dir
            .durable
            .values()
            .copied()
            .filter(|id| {
                self.files
                    .get(id)
                    .and_then(|f| f.pending.last())
                    .is_some_and(|p| matches!(p.op, file::Op::Write { len, .. } if len > 0))
            })
            .collect();
        if candidates.is_empty() {
            return false;
        }
        let id = candidates[self.rng.below(candidates.len() as u64) as usize];
        let Some(file) = self.files.get_mut(&id) else { unreachable!("candidate {id} vanished") };
        file.tear_last_write(&mut self.rng)
    }

    /// Writes `data` meant for file `id` at `offset` somewhere else on the platter.
    fn misdirect(&mut self, id: u64, offset: u64, data: &[u8]) {
        let sector = self.sector_bytes;
        let others: Vec<u64> = self.dir.live.values().copied().filter(|other| *other != id).collect();
        let (target, at) = if !others.is_empty() && self.rng.chance(1, 2) {
            (others[self.rng.below(others.len() as u64) as usize], offset)
        } else {
            let shift = (1 + self.rng.below(8)) * sector;
            let at = if offset >= shift && self.rng.chance(1, 2) { offset - shift } else { offset + shift };
            (id, at)
        };
        let file = self.file_mut(target);
        let at = at.min(file.data.len);
        file.data.write(at, data);
        if file.durable.len < at {
            file.durable.set_len(at);
        }
        file.durable.write(at, data);
        let name = |dir: &Directory, id| dir.name_of(id).unwrap_or("<unnamed>").to_owned();
        let misdirection = Misdirection {
            intended_file: name(&self.dir, id),
            intended_offset: offset,
            file: name(&self.dir, target),
            offset: at,
            len: data.len() as u64,
        };
        self.misdirections.push(misdirection);
        self.misdirect_armed = false;
    }

    fn named_file(&mut self, name: &str, call: &str) -> &mut FileState {
        let id = self.dir.live.get(name).copied().unwrap_or_else(|| panic!("{call}: no file {name}"));
        self.file_mut(id)
    }
}

impl FaultDisk {
    /// A new empty disk whose random choices (its sector size included) all derive from `seed`.
    pub fn new(seed: u64) -> FaultDisk {
        let mut rng = Rng::new(seed);
        let sector_bytes = if rng.chance(1, 2) { 512 } else { 4096 };
        let state = FaultState {
            rng,
            sector_bytes,
            epoch: 0,
            next_file_id: 1,
            dir: Directory::default(),
            files: BTreeMap::new(),
            syncs: 0,
            fail_countdown: None,
            failed: false,
            misdirect_armed: false,
            misdirections: Vec::new(),
        };
        FaultDisk { state: Arc::new(Mutex::new(state)) }
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        // A panic while holding the lock (a failed assertion in a test) must not hide the state
        // from the test's own report, so a poisoned lock is still used.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The sector size (512 or 4096 bytes, from the seed): the unit of tearing and of sector faults.
    pub fn sector_bytes(&self) -> u64 {
        self.lock().sector_bytes
    }

    /// Gentle power loss: every file goes back to its synced bytes, unsynced directory changes are
    /// undone, open handles go stale, and any injected sync failure is cleared.
    pub fn crash(&self) {
        self.lock().lose_unsynced();
    }

    /// Harsh power loss (see the module documentation): any subset of the unsynced writes of every file
    /// survives, each whole or torn at sector granularity with lost and garbage sectors, and any subset of
    /// the unsynced directory changes. Open handles go stale and any injected sync failure is cleared.
    pub fn power_loss(&self) -> PowerLoss {
        self.lock().power_loss()
    }

    /// Like [`FaultDisk::crash`], but the last unsynced write of one file (chosen from the seed)
    /// survives partially: a strict prefix of it, whose last bytes may be garbage. Returns
    /// whether there was a write to tear. Kept for targeted tests; [`FaultDisk::power_loss`] is the
    /// general model.
    pub fn crash_tearing(&self) -> bool {
        let mut state = self.lock();
        let torn = state.tear_one_write();
        state.lose_unsynced();
        torn
    }

    /// Process crash without power loss: the page cache survives (reads still see unsynced writes, which
    /// stay exactly as non-durable as they were), open handles go stale, and an injected sync failure is
    /// cleared. A later power loss loses whatever was never made durable.
    pub fn crash_process(&self) {
        self.lock().reboot();
    }

    /// Makes the `(n + 1)`-th sync from now (file or directory) fail, without making anything
    /// durable; after it every mutating call fails until a crash.
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
        let file = state.named_file(name, "flip_bit");
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

    /// A latent sector error: from now on every read of file `name` that touches the sector holding
    /// `offset` fails with an I/O error, across crashes, until a write to that sector.
    ///
    /// # Panics
    /// If the file does not exist.
    pub fn latent_sector_error(&self, name: &str, offset: u64) {
        let mut state = self.lock();
        let sector = state.sector_bytes;
        state.named_file(name, "latent_sector_error").unreadable.insert(offset / sector);
    }

    /// Arms a misdirected write: the next write that stays inside its file lands elsewhere on the platter
    /// (another offset of the same file, or the same offset of another file, from the seed), and the place
    /// it was meant for keeps its old bytes. See [`FaultDisk::misdirections`] for where it went.
    pub fn misdirect_next_write(&self) {
        self.lock().misdirect_armed = true;
    }

    /// The misdirected writes so far, oldest first.
    pub fn misdirections(&self) -> Vec<Misdirection> {
        self.lock().misdirections.clone()
    }

    /// Damage after acknowledgement: zeroes or garbles (from the seed) the bytes of the most recent synced
    /// non-zero write of file `name` within its last sector (where a log's last batch ends), in the page cache
    /// and on the platter. Zeros only inside the write's first record (when the write fits in one sector):
    /// from a sector boundary, zeros could erase whole batches and leave a log that simply ends early.
    /// Returns the damaged byte range, or `None` if the file has no such write (or it was truncated away).
    ///
    /// # Panics
    /// If the file does not exist.
    pub fn damage_last_synced_write(&self, name: &str) -> Option<(u64, u64)> {
        let mut state = self.lock();
        let sector = state.sector_bytes;
        let id =
            state.dir.live.get(name).copied().unwrap_or_else(|| panic!("damage_last_synced_write: no file {name}"));
        let FaultState { rng, files, .. } = &mut *state;
        let file = files.get_mut(&id).unwrap_or_else(|| unreachable!("directory reaches missing file {id}"));
        file.damage_last_synced_write(rng, sector)
    }

    /// File and directory syncs attempted so far: the crash points of a workload are `0..syncs()`.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// The names in the live directory, sorted.
    pub fn file_names(&self) -> Vec<String> {
        self.lock().dir.live.keys().cloned().collect()
    }

    /// The current (written) contents of file `name`, if it exists: lets a test find offsets.
    pub fn read_file(&self, name: &str) -> Option<Vec<u8>> {
        let state = self.lock();
        let id = state.dir.live.get(name)?;
        state.files.get(id).map(|file| file.data.to_vec())
    }
}

impl std::fmt::Debug for FaultDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // File contents can be megabytes: show the shape, not the bytes.
        let state = self.lock();
        f.debug_struct("FaultDisk")
            .field("files", &state.dir.live.keys().collect::<Vec<_>>())
            .field("sector_bytes", &state.sector_bytes)
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
        if state.dir.live.contains_key(name) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{name} exists")));
        }
        let id = state.next_file_id;
        state.next_file_id += 1;
        state.files.insert(id, FileState::default());
        state.dir.create(name, id);
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
        state.file_id(from)?;
        state.dir.rename(from, to);
        state.collect_garbage();
        Ok(())
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        let mut state = self.lock();
        state.attempt_sync()?;
        state.dir.sync();
        state.collect_garbage();
        Ok(())
    }

    fn new_log_id(&mut self) -> u64 {
        let mut state = self.lock();
        loop {
            let id = state.rng.next();
            if id != 0 {
                return id;
            }
        }
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
    /// Runs `f` on the disk state after the checks every call makes (stale handle; for writes, an
    /// injected failure; a removed file).
    fn with_state<T>(&self, write: bool, f: impl FnOnce(&mut FaultState) -> io::Result<T>) -> io::Result<T> {
        let mut state = self.disk.lock();
        if state.epoch != self.epoch {
            return Err(io::Error::other("fault disk: stale file handle from before a crash"));
        }
        if write {
            state.check_writable()?;
        }
        if !state.files.contains_key(&self.id) {
            return Err(io::Error::other("fault disk: file was removed"));
        }
        f(&mut state)
    }
}

impl DiskFile for FaultFile {
    fn len(&self) -> u64 {
        self.with_state(false, |state| Ok(state.file_mut(self.id).data.len)).unwrap_or(0)
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.with_state(false, |state| {
            let sector = state.sector_bytes;
            let file = state.file_mut(self.id);
            if offset.checked_add(buf.len() as u64).is_none_or(|end| end > file.data.len) {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the file"));
            }
            if file.hits_unreadable(offset, buf.len() as u64, sector) {
                return Err(io::Error::other("fault disk: latent sector error (EIO)"));
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
        self.with_state(true, |state| {
            let sector = state.sector_bytes;
            let len = state.file_mut(self.id).data.len;
            if offset > len {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "write starts past the end of the file"));
            }
            if state.misdirect_armed && !data.is_empty() && offset + data.len() as u64 <= len {
                state.misdirect(self.id, offset, data);
            } else {
                state.file_mut(self.id).write(offset, data, sector);
            }
            Ok(())
        })
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.with_state(true, |state| {
            let sector = state.sector_bytes;
            state.file_mut(self.id).set_len(len, sector);
            Ok(())
        })
    }

    fn sync(&mut self) -> io::Result<()> {
        self.with_state(false, |state| {
            if let Err(error) = state.attempt_sync() {
                // Linux marks the pages of a failed writeback clean: a later fsync will not write them.
                state.file_mut(self.id).mark_clean();
                return Err(error);
            }
            state.file_mut(self.id).sync();
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;
