//! The library's one error type.
//!
//! Every failure the library can report is a variant of [`Error`], with the facts a user needs to
//! act on it (which chunk, which column, what was expected). Only the binary wraps these in
//! `anyhow` to add the file name.

use std::io;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while compressing or decompressing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An underlying read or write failed.
    #[error("{0}")]
    Io(#[from] io::Error),

    /// The input does not start with the baler magic bytes.
    #[error("not a baler container (the first bytes are not the baler magic number)")]
    BadMagic,

    /// The container was written in a format version this build cannot read.
    #[error(
        "container format version {found} is not supported by this build (it reads versions 1 to {supported}); \
         upgrade baler to read it"
    )]
    UnsupportedVersion {
        /// The version found in the file.
        found: u16,
        /// The newest version this build reads.
        supported: u16,
    },

    /// The container header failed its checksum or could not be parsed.
    #[error("corrupt container header: {0}")]
    CorruptHeader(String),

    /// A chunk's checksum did not match its contents.
    #[error(
        "chunk {chunk} is corrupt: checksum {found:#010x} does not match the stored {expected:#010x}"
    )]
    ChunkChecksum {
        /// Index of the chunk (0-based) in the container.
        chunk: u64,
        /// The stored checksum.
        expected: u32,
        /// The checksum of the bytes read.
        found: u32,
    },

    /// A chunk passed its checksum but its contents are inconsistent (a bug or a forged file).
    #[error("chunk {chunk} is corrupt: {reason}")]
    CorruptChunk {
        /// Index of the chunk (0-based) in the container.
        chunk: u64,
        /// What is wrong with it.
        reason: String,
    },

    /// The container ends before its end mark.
    #[error("the container is truncated: it ends {where_}; the rest of the file is missing")]
    Truncated {
        /// Where in the stream the data ran out.
        where_: String,
        /// Complete chunks read before the end.
        chunks: u64,
        /// Records in those chunks.
        records: u64,
    },

    /// The footer index or end mark disagrees with the chunks.
    #[error("corrupt container trailer: {0}")]
    CorruptTrailer(String),

    /// A value failed its error bound after reconstruction. The residual stage stores such
    /// values verbatim, so this is only reported by verification code, never by a round trip.
    #[error("value {index} of column {column} misses its bound: |error| = {error:e} > {bound:e}")]
    BoundViolation {
        /// Column of the value.
        column: usize,
        /// Position of the value in its column.
        index: u64,
        /// The absolute error found.
        error: f64,
        /// The bound in effect.
        bound: f64,
    },

    /// Decoding a chunk would take more memory than the decompressor's limit allows.
    #[error(
        "chunk {chunk} needs {} MiB to decode ({records} records), more than the memory limit of {} MiB allows; if the file is trusted, raise the limit to at least {} MiB (--memory-limit)",
        needs.div_ceil(1 << 20), limit.div_ceil(1 << 20), needs.saturating_mul(2).div_ceil(1 << 20)
    )]
    MemoryLimit {
        /// Index of the chunk (0-based) in the container.
        chunk: u64,
        /// Records the chunk declares.
        records: u64,
        /// Bytes decoding it would take.
        needs: u64,
        /// The limit in effect, in bytes.
        limit: u64,
    },

    /// The caller's input does not fit what was declared (shape, dtype, record size).
    #[error("{0}")]
    InvalidInput(String),

    /// An option or bound specification is not valid.
    #[error("{0}")]
    InvalidOption(String),

    /// An error in one of several files (the shards [`crate::shard::concat`] joins).
    #[error("{file}: {source}")]
    InFile {
        /// The file.
        file: String,
        /// What is wrong with it.
        #[source]
        source: Box<Error>,
    },

    /// A bug in baler (a worker panicked); the message says where.
    #[error("internal error: {0} (this is a bug in baler; please report it)")]
    Internal(String),
}

impl Error {
    pub(crate) fn chunk(chunk: u64, reason: impl Into<String>) -> Self {
        Error::CorruptChunk {
            chunk,
            reason: reason.into(),
        }
    }

    /// Whether this error is a broken pipe on output (the reader went away, e.g. `| head`).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Io(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}
