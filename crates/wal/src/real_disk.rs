//! [`Disk`] on a real directory of the operating system's file system.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::disk::{Disk, DiskFile};

/// The production [`Disk`]: one directory, files opened read+write (never `O_APPEND`, because
/// Linux `pwrite` ignores the offset on such files), `fdatasync` for file syncs and an fsync of
/// the directory itself for [`Disk::sync_dir`].
#[derive(Debug)]
pub struct RealDisk {
    /// The directory holding every file of this disk; names never contain a path separator.
    dir: PathBuf,
    /// The directory, opened once at [`RealDisk::open`] and kept for [`Disk::sync_dir`]: opening it on every
    /// sync would need a free file descriptor at the worst moment (a segment roll while a flood of
    /// connections has taken them all), and a failed sync poisons the log.
    dir_handle: File,
}

impl RealDisk {
    /// Opens (creating it and its parents if needed) the directory `dir`. A directory it creates
    /// is made durable in its parent (the parent is fsynced), so a power loss right after the
    /// first start cannot lose the whole data directory with the log in it.
    ///
    /// # Errors
    /// Fails if the directory cannot be created or is not a directory, or an fsync fails.
    pub fn open(dir: &Path) -> io::Result<RealDisk> {
        create_dir_durably(dir)?;
        if !fs::metadata(dir)?.is_dir() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} is not a directory", dir.display())));
        }
        let dir_handle = File::open(dir)?;
        Ok(RealDisk { dir: dir.to_path_buf(), dir_handle })
    }

    /// The directory this disk lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> io::Result<PathBuf> {
        if name.is_empty() || name.contains('/') || name.contains('\\') || name == "." || name == ".." {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad file name {name:?}")));
        }
        Ok(self.dir.join(name))
    }
}

/// Creates `dir` and its missing ancestors, then fsyncs the parent of each directory it created,
/// from the deepest up, so every new name is durable in its parent.
fn create_dir_durably(dir: &Path) -> io::Result<()> {
    let missing: Vec<&Path> =
        dir.ancestors().take_while(|path| !path.as_os_str().is_empty() && !path.exists()).collect();
    fs::create_dir_all(dir)?;
    for created in missing {
        let parent = match created.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

impl Disk for RealDisk {
    type File = RealFile;

    fn create(&mut self, name: &str) -> io::Result<RealFile> {
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(self.path(name)?)?;
        Ok(RealFile { file, len: 0 })
    }

    fn open(&mut self, name: &str) -> io::Result<RealFile> {
        let file = OpenOptions::new().read(true).write(true).open(self.path(name)?)?;
        let len = file.metadata()?.len();
        Ok(RealFile { file, len })
    }

    fn list(&mut self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            // A name that is not UTF-8 was not written by us: skip it rather than fail.
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        fs::remove_file(self.path(name)?)
    }

    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.path(from)?, self.path(to)?)
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        self.dir_handle.sync_all()
    }
}

/// An open file of a [`RealDisk`].
#[derive(Debug)]
pub struct RealFile {
    /// The open file, read+write.
    file: File,
    /// The file's length, tracked here because this handle is the only writer: saves a `stat`
    /// per call.
    len: u64,
}

impl DiskFile for RealFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.len) {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the file"));
        }
        positional::read_exact_at(&self.file, buf, offset)
    }

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let offset = self.len;
        self.write_at(offset, data)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if offset > self.len {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "write starts past the end of the file"));
        }
        positional::write_all_at(&self.file, data, offset)?;
        self.len = self.len.max(offset + data.len() as u64);
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.len = len;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(unix)]
mod positional {
    use std::fs::File;
    use std::io;
    use std::os::unix::fs::FileExt;

    pub(super) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
        file.read_exact_at(buf, offset)
    }

    pub(super) fn write_all_at(file: &File, data: &[u8], offset: u64) -> io::Result<()> {
        file.write_all_at(data, offset)
    }
}

#[cfg(not(unix))]
mod positional {
    use std::fs::File;
    use std::io::{self, Read, Seek, SeekFrom, Write};

    pub(super) fn read_exact_at(mut file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(buf)
    }

    pub(super) fn write_all_at(mut file: &File, data: &[u8], offset: u64) -> io::Result<()> {
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(data)
    }
}
