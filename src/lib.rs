//! baler: error-bounded compression of large floating-point arrays.
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[macro_use]
pub mod element;

pub mod array;
pub mod bound;
mod bytes;
pub mod chunk;
pub mod compress;
pub mod container;
pub mod decompress;
pub(crate) mod entropy;
pub mod error;
pub mod io;
mod lossless;
pub mod normalize;
mod pipeline;
pub mod predict;
pub mod residual;
#[doc(hidden)]
pub mod stages;

pub use array::{ArraySpec, Layout, UNKNOWN};
pub use bound::{BoundSpec, Bounds, ColumnRef, ResolvedBound};
pub use compress::{CompressOptions, Compressor, Finished, compress_slice};
pub use container::Header;
pub use decompress::{Decompressor, decompress_to_vec};
pub use element::{ArrayData, DType, Element};
pub use error::{Error, Result};
