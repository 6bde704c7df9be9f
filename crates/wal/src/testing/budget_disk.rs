//! [`BudgetDisk`]: a [`Disk`] wrapper that runs out of space, for disk-full tests.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use crate::disk::{Disk, DiskFile};

/// Wraps a [`Disk`] (usually a [`crate::FaultDisk`]) and fails like a full file system once the files
/// together would pass a byte budget: `create` fails when nothing is left, and a write that extends a
/// file writes the prefix that fits and then fails with [`io::ErrorKind::StorageFull`] (`ENOSPC`).
/// Overwriting bytes a file already has never fails (the space is allocated), nor does anything else.
///
/// Cloning gives another handle to the same disk and budget, so a test keeps one to move the budget
/// while the WAL owns another. Usage is measured by listing the inner disk, so it is exact, and slow
/// enough for tests only.
#[derive(Clone)]
pub struct BudgetDisk<D: Disk + Clone> {
    /// The wrapped disk.
    inner: D,
    /// The most bytes all files may hold together; `None`: no limit.
    limit_bytes: Arc<Mutex<Option<u64>>>,
}

impl<D: Disk + Clone> BudgetDisk<D> {
    /// Wraps `inner`, with no limit yet.
    pub fn new(inner: D) -> BudgetDisk<D> {
        BudgetDisk { inner, limit_bytes: Arc::new(Mutex::new(None)) }
    }

    /// Sets the budget: the most bytes all files may hold together (`None`: unlimited). Files already
    /// past it keep their bytes; only growth fails.
    pub fn set_limit(&self, limit_bytes: Option<u64>) {
        *self.limit_bytes.lock().unwrap_or_else(PoisonError::into_inner) = limit_bytes;
    }

    /// The bytes all files hold now.
    ///
    /// # Panics
    /// If the inner disk fails to list or open its files.
    pub fn used_bytes(&self) -> u64 {
        let mut inner = self.inner.clone();
        let names = inner.list().expect("budget disk: list");
        names.iter().map(|name| inner.open(name).expect("budget disk: open").len()).sum()
    }

    /// The wrapped disk (to crash it).
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Bytes that may still be added, `None` for unlimited.
    fn free_bytes(&self) -> Option<u64> {
        let limit = *self.limit_bytes.lock().unwrap_or_else(PoisonError::into_inner);
        limit.map(|limit| limit.saturating_sub(self.used_bytes()))
    }
}

fn no_space() -> io::Error {
    io::Error::new(io::ErrorKind::StorageFull, "budget disk: no space left on device")
}

impl<D: Disk + Clone> Disk for BudgetDisk<D> {
    type File = BudgetFile<D>;

    fn create(&mut self, name: &str) -> io::Result<BudgetFile<D>> {
        if self.free_bytes() == Some(0) {
            return Err(no_space());
        }
        let file = self.inner.create(name)?;
        Ok(BudgetFile { file, disk: self.clone() })
    }

    fn open(&mut self, name: &str) -> io::Result<BudgetFile<D>> {
        let file = self.inner.open(name)?;
        Ok(BudgetFile { file, disk: self.clone() })
    }

    fn list(&mut self) -> io::Result<Vec<String>> {
        self.inner.list()
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        self.inner.remove(name)
    }

    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        self.inner.rename(from, to)
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        self.inner.sync_dir()
    }
}

/// An open file of a [`BudgetDisk`].
pub struct BudgetFile<D: Disk + Clone> {
    /// The inner disk's file.
    file: D::File,
    /// The disk, to measure the budget.
    disk: BudgetDisk<D>,
}

impl<D: Disk + Clone> BudgetFile<D> {
    /// Writes what fits of `data` at `offset` and fails with `ENOSPC` if not all of it did.
    fn write_within_budget(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let growth = (offset + data.len() as u64).saturating_sub(self.file.len());
        let Some(free) = self.disk.free_bytes().filter(|free| *free < growth) else {
            return self.file.write_at(offset, data);
        };
        let fits = (self.file.len() + free - offset) as usize;
        if fits > 0 {
            self.file.write_at(offset, &data[..fits])?;
        }
        Err(no_space())
    }
}

impl<D: Disk + Clone> DiskFile for BudgetFile<D> {
    fn len(&self) -> u64 {
        self.file.len()
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_at(offset, buf)
    }

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let offset = self.file.len();
        self.write_within_budget(offset, data)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if offset > self.file.len() {
            return self.file.write_at(offset, data); // the inner disk refuses it
        }
        self.write_within_budget(offset, data)
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let growth = len.saturating_sub(self.file.len());
        if self.disk.free_bytes().is_some_and(|free| free < growth) {
            return Err(no_space());
        }
        self.file.truncate(len)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync()
    }
}
