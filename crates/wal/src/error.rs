//! The errors the WAL reports at its boundary.

use std::io;

/// What went wrong in a WAL call.
///
/// The variants split what a caller can act on: [`WalError::Corrupt`] at start means "do not
/// start this node, an operator must look at the named file"; [`WalError::Io`] and
/// [`WalError::Poisoned`] mean "this node must stop accepting writes" (restart it to recover the
/// durable state from disk); [`WalError::NoSpace`] means "the disk is full: nothing was written,
/// retry once space is freed". Programmer errors (a gap in appended indexes, truncating committed
/// entries) are not errors but assertion failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// An I/O call failed. From this point the log is poisoned: every later write refuses with
    /// [`WalError::Poisoned`], because after a failed write or fsync the kernel may have dropped
    /// the dirty pages and marked them clean, so retrying the fsync would report success for data
    /// that is not on disk (the "fsyncgate" lesson).
    #[error("wal i/o error: {operation} {file}: {source}; the log is poisoned and refuses further writes")]
    Io {
        /// The call that failed (`"fsync"`, `"write"`, `"create"`, ...), for the operator.
        operation: &'static str,
        /// The file (or `<directory>`) the call was made on.
        file: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The log refused a write because an earlier I/O call failed. The node must stop accepting
    /// writes; restarting it recovers exactly the state the last successful `sync` made durable.
    #[error("wal is poisoned and refuses writes after an earlier failure ({cause}); restart the node to recover")]
    Poisoned {
        /// The message of the failure that poisoned the log.
        cause: String,
    },
    /// Recovery found damage it must not repair: a bad record before the tail of the log, a
    /// missing range of entries, or a record that contradicts the format. Starting anyway could
    /// silently drop acknowledged data, so the node refuses to start.
    #[error("wal corrupt: {file} at offset {offset}: {reason}; refusing to start")]
    Corrupt {
        /// The file holding the damage.
        file: String,
        /// The byte offset of the damaged record in `file`.
        offset: u64,
        /// What is wrong, in words.
        reason: String,
    },
    /// The file system is full (`ENOSPC`) or over a disk quota (`EDQUOT`) while the log made room for
    /// later writes (the spare segment) or wrote a snapshot. Nothing of the call was written and the log
    /// is **not** poisoned: everything synced so far is intact, and the call can be retried once space is
    /// freed. [`crate::Wal::has_space`] says whether the log can take entries now.
    #[error("no space left: {operation} {file}: {source}; nothing was written, retry once space is freed")]
    NoSpace {
        /// The call that failed (`"create"`, `"preallocate"`, `"write"`, ...).
        operation: &'static str,
        /// The file the call was made on.
        file: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

impl WalError {
    /// Whether this error means the log refuses writes from now on (as opposed to a refusal to
    /// start). The node maps `true` to "stop accepting writes with a clear error".
    pub fn is_poisoning(&self) -> bool {
        matches!(self, WalError::Io { .. } | WalError::Poisoned { .. })
    }
}

/// Whether an I/O error means "the file system is full" (or over a quota) rather than "the disk failed".
pub(crate) fn is_out_of_space(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}

/// Builds a [`WalError::Corrupt`]; recovery reports many of these.
pub(crate) fn corrupt(file: &str, offset: u64, reason: impl Into<String>) -> WalError {
    WalError::Corrupt { file: file.to_owned(), offset, reason: reason.into() }
}
