//! Storage errors with a stable, matchable kind.
//!
//! Callers (the node and API layers) decide what to answer a client from [`ErrorKind`] alone:
//! a full disk becomes a clear "insufficient storage" reply rather than a crash or an opaque
//! I/O failure. The message is for logs. Errors are `Clone` because one failed group commit
//! is reported to every waiter that shared it.

use std::io;

/// What went wrong, in terms a caller can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ErrorKind {
    /// The disk (or quota) is full. Writes fail until space is freed; with the fjall backend,
    /// until the node is also restarted (see [`crate::FjallBackend`]).
    NoSpace,
    /// Any other I/O failure.
    Io,
    /// Data read from disk failed its checksum or could not be decoded.
    Corruption,
    /// The partition was dropped or the backend is shutting down.
    Closed,
    /// An earlier write failed in a way that left the engine refusing all writes until restart.
    Poisoned,
    /// The request cannot be stored as given (empty or oversized key, oversized value).
    InvalidInput,
}

/// A storage failure: a stable [`ErrorKind`] plus a human-readable message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("{kind:?}: {message}")]
pub struct StorageError {
    kind: ErrorKind,
    message: String,
}

impl StorageError {
    /// Builds an error of `kind` with a message for logs.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        StorageError {
            kind,
            message: message.into(),
        }
    }

    /// The stable kind of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message for logs.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn closed(what: &str) -> Self {
        StorageError::new(ErrorKind::Closed, format!("{what} is closed"))
    }
}

/// Classifies an I/O error: disk-full and quota-exceeded are `NoSpace`, data-shape errors are
/// `Corruption`, everything else `Io`.
pub(crate) fn io_kind(err: &io::Error) -> ErrorKind {
    match err.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => ErrorKind::NoSpace,
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => ErrorKind::Corruption,
        _ => ErrorKind::Io,
    }
}

impl From<io::Error> for StorageError {
    fn from(err: io::Error) -> Self {
        StorageError::new(io_kind(&err), err.to_string())
    }
}

impl From<fjall::Error> for StorageError {
    fn from(err: fjall::Error) -> Self {
        let kind = match &err {
            fjall::Error::Io(io) => io_kind(io),
            fjall::Error::Storage(lsm) => lsm_kind(lsm),
            fjall::Error::Poisoned => ErrorKind::Poisoned,
            fjall::Error::KeyspaceDeleted => ErrorKind::Closed,
            // Another process holds the database's lock file: an operational I/O problem.
            fjall::Error::Locked => ErrorKind::Io,
            // Recovery, version, decoding and checksum failures: the files are not what we wrote.
            _ => ErrorKind::Corruption,
        };
        let message = match &err {
            fjall::Error::Locked => {
                "the data directory is locked by another process (is another node using it?)"
                    .to_string()
            }
            other => other.to_string(),
        };
        StorageError::new(kind, message)
    }
}

/// The kind of an error raised inside fjall's LSM tree.
fn lsm_kind(err: &fjall::LsmError) -> ErrorKind {
    match err {
        fjall::LsmError::Io(io) => io_kind(io),
        _ => ErrorKind::Corruption,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ENOSPC as the kernel reports it (errno 28 on Linux).
    const ENOSPC: i32 = 28;
    /// EDQUOT on Linux.
    const EDQUOT: i32 = 122;

    #[test]
    fn disk_full_errno_maps_to_no_space() {
        let err = StorageError::from(io::Error::from_raw_os_error(ENOSPC));
        assert_eq!(err.kind(), ErrorKind::NoSpace);
        let err = StorageError::from(io::Error::from_raw_os_error(EDQUOT));
        assert_eq!(err.kind(), ErrorKind::NoSpace);
    }

    #[test]
    fn fjall_errors_keep_their_meaning() {
        let full = fjall::Error::Io(io::Error::from_raw_os_error(ENOSPC));
        assert_eq!(StorageError::from(full).kind(), ErrorKind::NoSpace);
        let nested =
            fjall::Error::Storage(fjall::LsmError::Io(io::Error::from_raw_os_error(ENOSPC)));
        assert_eq!(StorageError::from(nested).kind(), ErrorKind::NoSpace);
        let bad = fjall::Error::Storage(fjall::LsmError::InvalidTrailer);
        assert_eq!(StorageError::from(bad).kind(), ErrorKind::Corruption);
        assert_eq!(
            StorageError::from(fjall::Error::Poisoned).kind(),
            ErrorKind::Poisoned
        );
        assert_eq!(
            StorageError::from(fjall::Error::KeyspaceDeleted).kind(),
            ErrorKind::Closed
        );
        let other = fjall::Error::Io(io::Error::other("boom"));
        assert_eq!(StorageError::from(other).kind(), ErrorKind::Io);
    }
}
