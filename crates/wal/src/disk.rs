//! The byte-level storage the WAL runs on.
//!
//! Deliberately small (a flat directory of files, positional writes, fsync) so that a test can
//! implement it in memory and crash it at any point: [`crate::RealDisk`] is the production
//! implementation, [`crate::FaultDisk`] the crashable one, and `testing::suite` checks that both
//! keep the contract written on each method here.

use std::io;

/// A flat directory of files: the unit of durability for names.
///
/// Contract for implementers: creating, removing and renaming a file changes the directory at
/// once for every later call, but is only durable (survives a power loss) after a successful
/// [`Disk::sync_dir`]. A crash may undo any directory change made since the last successful
/// `sync_dir`.
pub trait Disk {
    /// The handle of one open file.
    type File: DiskFile;

    /// Creates a new, empty file and opens it for reading and writing.
    ///
    /// # Errors
    /// Fails with [`io::ErrorKind::AlreadyExists`] if `name` exists, or on any I/O failure.
    fn create(&mut self, name: &str) -> Result<Self::File, io::Error>;

    /// Opens an existing file for reading and writing.
    ///
    /// # Errors
    /// Fails with [`io::ErrorKind::NotFound`] if `name` does not exist, or on any I/O failure.
    fn open(&mut self, name: &str) -> Result<Self::File, io::Error>;

    /// The names of all files in the directory, sorted bytewise.
    ///
    /// # Errors
    /// Fails on any I/O failure.
    fn list(&mut self) -> Result<Vec<String>, io::Error>;

    /// Removes a file. Durable after the next [`Disk::sync_dir`].
    ///
    /// # Errors
    /// Fails with [`io::ErrorKind::NotFound`] if `name` does not exist, or on any I/O failure.
    fn remove(&mut self, name: &str) -> Result<(), io::Error>;

    /// Renames `from` to `to`, atomically replacing `to` if it exists: after a crash the
    /// directory holds either the old or the new binding of `to`, never neither. Durable after the
    /// next [`Disk::sync_dir`].
    ///
    /// # Errors
    /// Fails if `from` does not exist, or on any I/O failure.
    fn rename(&mut self, from: &str, to: &str) -> Result<(), io::Error>;

    /// Makes every create, remove and rename done so far durable (fsync of the directory).
    ///
    /// # Errors
    /// Fails on any I/O failure; the caller must then assume none of them is durable.
    fn sync_dir(&mut self) -> Result<(), io::Error>;

    /// A new random id for a log created on this disk. The WAL writes it into every segment header
    /// and seeds every record checksum with it, so a record of another log (or a stale block of an
    /// earlier log in the same directory) never verifies.
    ///
    /// The default mixes the standard library's per-process random hash keys with the time, so it
    /// needs no dependency. A simulated disk overrides it to derive the id from its seed, so one
    /// seed replays the same bytes. Any value is valid; ids only need to differ between logs.
    fn new_log_id(&mut self) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        hasher.write_u128(now.map_or(0, |elapsed| elapsed.as_nanos()));
        hasher.write_u32(std::process::id());
        hasher.finish()
    }
}

/// One open file.
///
/// Contract for implementers: writes change the file at once for every later read, but are only
/// durable after a successful [`DiskFile::sync`]. A crash may lose or tear any write made since
/// the last successful sync, and may keep or lose a length change made since then.
pub trait DiskFile {
    /// The file's current length in bytes (including writes not yet synced).
    fn len(&self) -> u64;

    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads exactly `buf.len()` bytes at `offset`.
    ///
    /// # Errors
    /// Fails with [`io::ErrorKind::UnexpectedEof`] if the range passes the end of the file, or on
    /// any I/O failure.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), io::Error>;

    /// Appends `data` at the end of the file.
    ///
    /// # Errors
    /// Fails on any I/O failure; the file may then hold any prefix of `data`.
    fn append(&mut self, data: &[u8]) -> Result<(), io::Error>;

    /// Writes `data` at `offset`, overwriting what is there and extending the file if the write
    /// passes its end. `offset` must not be past the end of the file.
    ///
    /// The WAL writes its records into zero-filled, preallocated segment space with this call,
    /// so an fdatasync has no file size to persist (a metadata journal commit on most file
    /// systems, which costs more than the data write itself).
    ///
    /// # Errors
    /// Fails with [`io::ErrorKind::InvalidInput`] if `offset > len()`, or on any I/O failure.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), io::Error>;

    /// Cuts the file to `len` bytes (or extends it with zeros).
    ///
    /// # Errors
    /// Fails on any I/O failure.
    fn truncate(&mut self, len: u64) -> Result<(), io::Error>;

    /// Makes the file's data and length durable (fdatasync).
    ///
    /// # Errors
    /// Fails on any I/O failure. After a failure the caller must not retry: the kernel may have
    /// dropped the unwritten pages and marked them clean.
    fn sync(&mut self) -> Result<(), io::Error>;
}
