//! Error-bounded compression of large floating-point arrays, in one streaming pass (plus a fast
//! range pre-pass over files compressed with `rel` bounds).
//!
//! baler compresses `f32`/`f64` arrays — tables of physics objects (rows × columns, one bound
//! per column) or fields (any shape, one bound) — so that every finite value comes back within
//! an absolute bound `E` of the original, checked exactly in the data's own precision, and NaN,
//! ±Inf and −0.0 come back bit for bit. Bounds are absolute (`abs:E`), relative to each
//! column's range (`rel:R`), or `lossless`.
//!
//! Two APIs drive one engine:
//!
//! * one-shot: [`compress_slice`] and [`decompress_to_vec`];
//! * streaming: [`Compressor`] (a writer of values; `finish` writes the end mark and returns
//!   the inner writer) and [`Decompressor`] (chunks in order, or [`std::io::Read`]), both
//!   running their chunks on worker threads in bounded memory.
//!
//! ```
//! use baler::{ArrayData, ArraySpec, BoundSpec, Bounds, CompressOptions, DType};
//!
//! // 10 000 rows of 3 columns: energy-like, angle-like, and an integer category.
//! let data: Vec<f32> = (0..30_000)
//!     .map(|i| match i % 3 {
//!         0 => 50.0 + (i as f32 * 0.37).sin() * 20.0,
//!         1 => (i as f32 * 0.011).cos() * 3.14,
//!         _ => (i % 7) as f32,
//!     })
//!     .collect();
//! let spec = ArraySpec::new(DType::F32, vec![10_000, 3]);
//! // 1e-3 of each column's range, the angle to 10 mantissa bits, the category exactly.
//! let bounds = Bounds::new(BoundSpec::Rel(1e-3))
//!     .with_override_str("1=bits:10")?
//!     .with_override_str("2=lossless")?;
//! let packed = baler::compress_slice(&data, &spec, &CompressOptions::new(bounds))?;
//! assert!(packed.len() * 4 < data.len() * 4);
//!
//! let (header, back) = baler::decompress_to_vec(&packed)?;
//! let ArrayData::F32(back) = back else { unreachable!() };
//! for (i, (x, y)) in data.iter().zip(&back).enumerate() {
//!     // Every value within its column's bound, checked exactly as the encoder does.
//!     assert!(header.bounds[i % 3].bound.check(*x, *y));
//! }
//! # Ok::<(), baler::Error>(())
//! ```
//!
//! The path of the data, the threads, the container format byte by byte and where the learned
//! predictor plugs in are described in `ARCHITECTURE.md`.
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[macro_use]
pub mod element;

pub mod alloc;
pub mod array;
pub mod bound;
mod bytes;
pub mod chunk;
pub mod column;
pub mod compress;
pub mod container;
pub mod decompress;
mod disjoint;
pub(crate) mod entropy;
pub mod error;
pub mod evaluate;
pub mod io;
mod lossless;
pub mod model;
pub mod normalize;
mod pipeline;
pub mod plan;
pub mod predict;
mod relation;
pub mod residual;
mod segments;
pub mod shard;
mod simd;
mod spare;
#[doc(hidden)]
pub mod stages;
mod threads;
mod transpose;

pub use array::{ArraySpec, Layout, UNKNOWN};
pub use bound::{Bound, BoundSpec, Bounds, BoundsFile, ColumnRef, ResolvedBound};
pub use compress::{CompressOptions, Compressor, Finished, compress_slice};
pub use container::Header;
pub use decompress::{
    DecompressOptions, Decompressor, container_values, decompress_chunk, decompress_into,
    decompress_to_vec, decompress_to_vec_with_threads,
};
pub use element::{ArrayData, DType, Element};
pub use error::{Error, Result};
pub use pipeline::DEFAULT_MEMORY_LIMIT;
pub use pipeline::release_scratch;
pub use plan::Plan;
