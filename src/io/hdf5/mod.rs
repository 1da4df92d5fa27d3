//! HDF5 datasets in and out, streamed by hyperslabs (cargo feature `hdf5`, on by default).
//!
//! Input is `FILE.h5:/group/dataset` (or `--dataset`, or the file's only float dataset):
//! float32 or float64, any rank, contiguous or chunked, with any filter the HDF5 library
//! decodes (gzip, shuffle, szip, …). A 2-D dataset is a table whose column names may sit in an
//! attribute (`columns` or `column_names`: one comma-separated string, or an array of strings,
//! as h5py users write them); a 1-D compound dataset of float fields is a table with one column
//! per field. The values are read in windows of whole chunk bands (`slab::window_elements`), so
//! every chunk is decompressed once and memory stays bounded whatever the dataset's size; the
//! library converts byte order and compound layout into our buffers as it reads.
//!
//! Output ([`H5Writer`]) is a chunked dataset written block by block as chunks are decoded,
//! into a file that appears under its name only when complete.

#[cfg(feature = "hdf5")]
mod ffi;
#[cfg(feature = "hdf5")]
mod read;
pub mod slab;
#[cfg(feature = "hdf5")]
mod write;

#[cfg(feature = "hdf5")]
pub use read::{
    COLUMN_ATTRIBUTES, Content, DatasetInfo, H5Reader, Opened, Source, column_names, list_datasets,
    open,
};
#[cfg(feature = "hdf5")]
pub use write::{DatasetSpec, H5Writer, chunk_shape};

/// The filters of a dataset, in pipeline order: each one's id, its parameters (the first 256
/// at most: HDF5 hands no more) and their whole number (the `hdf5` crate's `Dataset::filters`
/// reads at most 32 parameters, and panics on more).
#[cfg(feature = "hdf5")]
pub fn filter_pipeline(ds: &hdf5::Dataset) -> Result<Vec<(i32, Vec<u32>, usize)>, crate::Error> {
    ffi::filter_pipeline(ds).map_err(|e| {
        crate::Error::InvalidInput(format!(
            "{}:{}: reading its filters: {e}",
            ds.filename(),
            ds.name()
        ))
    })
}

use std::path::Path;

/// Whether this build reads and writes HDF5 (the `hdf5` cargo feature).
pub const ENABLED: bool = cfg!(feature = "hdf5");

/// Whether `file` starts with the HDF5 signature (at byte 0, or after a user block of 512,
/// 1024, 2048, … bytes).
pub fn has_signature(file: &std::fs::File) -> bool {
    use std::os::unix::fs::FileExt;
    const SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";
    let size = file.metadata().map_or(0, |m| m.len());
    let mut at = 0u64;
    while at + 8 <= size && at <= 1 << 30 {
        let mut buf = [0u8; 8];
        if file.read_exact_at(&mut buf, at).is_err() {
            return false;
        }
        if &buf == SIGNATURE {
            return true;
        }
        at = if at == 0 { 512 } else { at * 2 };
    }
    false
}

/// Splits `FILE:/group/dataset` (or `FILE:dataset`) where `FILE` is a file and the whole
/// argument is not; `None` for anything else.
pub fn split_dataset_path(arg: &str) -> Option<(&str, &str)> {
    if Path::new(arg).exists() {
        return None;
    }
    arg.match_indices(':').find_map(|(i, _)| {
        let (file, rest) = (&arg[..i], &arg[i + 1..]);
        (!rest.is_empty() && Path::new(file).is_file()).then_some((file, rest))
    })
}

/// Whether `path` is written as HDF5, by its extension (`.h5`, `.hdf5`, `.he5`, `.hdf`).
pub fn is_hdf5_path(path: &Path) -> bool {
    super::output::ValueFormat::from_extension(path) == Some(super::output::ValueFormat::Hdf5)
}

/// Splits an output argument `OUT.h5:/group/dataset` (an HDF5 extension before the colon).
pub fn split_output_path(arg: &str) -> (&str, Option<&str>) {
    for (i, _) in arg.match_indices(":/") {
        if is_hdf5_path(Path::new(&arg[..i])) {
            return (&arg[..i], Some(&arg[i + 1..]));
        }
    }
    (arg, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_paths_split_at_an_hdf5_extension() {
        assert_eq!(split_output_path("out.h5:/g/d"), ("out.h5", Some("/g/d")));
        assert_eq!(split_output_path("out.h5"), ("out.h5", None));
        assert_eq!(split_output_path("a:/b.npy"), ("a:/b.npy", None));
    }
}
