//! The process's file descriptor limit (`RLIMIT_NOFILE`): read to derive connection caps, raised at the start
//! of the long-running commands.

/// The soft limit on open file descriptors, if it can be read and is finite.
pub fn soft_limit() -> Option<u64> {
    let (soft, _hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).ok()?;
    (soft != nix::sys::resource::RLIM_INFINITY).then_some(soft)
}

/// Raises the soft limit on open file descriptors to the hard limit; returns the soft limit now in force.
///
/// # Errors
/// The limit cannot be read or set.
pub fn raise_soft_limit() -> std::io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(std::io::Error::from)?;
    }
    Ok(hard.max(soft))
}
