//! The one place where failures become errno values.
//!
//! | cause | errno |
//! |---|---|
//! | repo, revision or path does not exist (locally, or the remote says so) | `ENOENT` |
//! | offline and the store does not hold the file at all | `ENOENT` |
//! | stored or fetched bytes do not verify, index damaged | `EIO` |
//! | remote unreachable after its retries, or no answer within the fetch timeout | `EIO` |
//! | bytes absent offline (a partly fetched file) | `EIO` |
//! | write access to this read-only filesystem | `EROFS` |
//!
//! Nothing here is cached: an error is an answer to one request, never a negative entry.

use tessera_store::{SourceError, StoreError};

/// A filesystem error, as the kernel will see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Errno {
    /// `ENOENT`: no such repo, revision or path.
    #[error("not found")]
    NotFound,
    /// `EIO`: corrupt data, or the remote could not deliver in time.
    #[error("input/output error")]
    Io,
    /// `ENOTDIR`: a directory operation on a file.
    #[error("not a directory")]
    NotDir,
    /// `EISDIR`: a file operation on a directory.
    #[error("is a directory")]
    IsDir,
    /// `EROFS`: the mount is read-only.
    #[error("read-only filesystem")]
    ReadOnly,
    /// `ENODATA`: no such extended attribute.
    #[error("no such attribute")]
    NoAttr,
    /// `ERANGE`: the caller's buffer is too small.
    #[error("buffer too small")]
    Range,
    /// `EINVAL`: a malformed request.
    #[error("invalid argument")]
    Invalid,
}

impl Errno {
    /// The raw errno value.
    pub fn raw(self) -> i32 {
        match self {
            Errno::NotFound => libc::ENOENT,
            Errno::Io => libc::EIO,
            Errno::NotDir => libc::ENOTDIR,
            Errno::IsDir => libc::EISDIR,
            Errno::ReadOnly => libc::EROFS,
            Errno::NoAttr => libc::ENODATA,
            Errno::Range => libc::ERANGE,
            Errno::Invalid => libc::EINVAL,
        }
    }
}

impl From<&StoreError> for Errno {
    fn from(e: &StoreError) -> Self {
        match e {
            StoreError::UnknownFile(_) => Errno::NotFound,
            StoreError::OutOfRange { .. } => Errno::Invalid,
            // Missing bytes reach here only when nothing can fetch them.
            _ => Errno::Io,
        }
    }
}

impl From<&SourceError> for Errno {
    fn from(e: &SourceError) -> Self {
        match e {
            SourceError::NotFound(_) | SourceError::Offline(_) => Errno::NotFound,
            SourceError::Store(s) => Errno::from(s),
            _ => Errno::Io,
        }
    }
}

impl From<StoreError> for Errno {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "store error");
        Errno::from(&e)
    }
}

impl From<SourceError> for Errno {
    fn from(e: SourceError) -> Self {
        tracing::warn!(error = %e, "remote error");
        Errno::from(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_xet::hash::XorbHash;

    #[test]
    fn mapping_is_the_documented_one() {
        assert_eq!(Errno::from(&SourceError::NotFound("x".into())), Errno::NotFound);
        assert_eq!(Errno::from(&SourceError::Unavailable("x".into())), Errno::Io);
        assert_eq!(Errno::from(&SourceError::Corrupt("x".into())), Errno::Io);
        let missing = StoreError::Missing { xorb: XorbHash::ZERO, chunk_start: 0, chunk_end: 1 };
        assert_eq!(Errno::from(&missing), Errno::Io);
        assert_eq!(Errno::NotFound.raw(), libc::ENOENT);
        assert_eq!(Errno::Io.raw(), libc::EIO);
    }
}
