//! Writing decoded values into a new HDF5 file, block by block.

use hdf5::types::{CompoundField, CompoundType, FloatSize, TypeDescriptor, VarLenUnicode};
use hdf5::{Dataset, Datatype, Extent, File, SimpleExtents};

use super::ffi;
use super::slab::blocks;
use crate::array::UNKNOWN;
use crate::element::DType;
use crate::error::{Error, Result};
use crate::io::output::{OutputPath, ValueSink};

/// Target bytes of one chunk of a dataset baler writes (h5py's heuristic aims near 1 MiB too).
const CHUNK_TARGET: u64 = 1 << 20;

/// The chunk shape baler writes `shape` with (first dimension possibly [`UNKNOWN`]): whole
/// trailing axes while they fit in about 1 MiB, then as many slices of the next axis as fit.
pub fn chunk_shape(shape: &[u64], elem_bytes: u64) -> Vec<u64> {
    let target = (CHUNK_TARGET / elem_bytes.max(1)).max(1);
    let mut chunk = vec![1u64; shape.len()];
    let mut prod = 1u64;
    for ax in (0..shape.len()).rev() {
        let d = shape[ax].max(1);
        if prod.saturating_mul(d) <= target {
            chunk[ax] = d;
            prod *= d;
        } else {
            chunk[ax] = (target / prod).clamp(1, d);
            break;
        }
    }
    chunk
}

/// Writes a stream of values (little-endian, C order) into one chunked dataset of a new HDF5
/// file: the dataset is created up front (growing along its first axis when the length is not
/// known), each write goes straight to the file as hyperslabs, and the file gets its final name
/// only in [`finish`](Self::finish).
pub struct H5Writer {
    // Field order is drop order: the dataset, then the file, then the temporary path.
    ds: Option<Dataset>,
    file: Option<File>,
    out: OutputPath,
    name: String,
    memtype: Datatype,
    /// The dataset's shape so far (its first dimension grows when the length was unknown).
    shape: Vec<u64>,
    growing: bool,
    /// Bytes per dataset element in memory (a compound record holds every column).
    elem_bytes: usize,
    written: u64,
    pending: Vec<u8>,
}

impl std::fmt::Debug for H5Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H5Writer")
            .field("name", &self.name)
            .field("shape", &self.shape)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

fn err(name: &str, what: &str, e: hdf5::Error) -> Error {
    Error::InvalidInput(format!("{name}: {what}: {e}"))
}

/// What to write.
#[derive(Debug, Clone)]
pub struct DatasetSpec<'a> {
    /// Path of the dataset in the new file.
    pub path: &'a str,
    /// Element type of the values.
    pub dtype: DType,
    /// The array's shape (first dimension [`UNKNOWN`] for a stream of unknown length).
    pub shape: &'a [u64],
    /// Column names of a table (written as the `columns` attribute, or as the fields).
    pub columns: &'a [String],
    /// Write a table as a 1-D compound dataset, one field per column (needs the names).
    pub compound: bool,
}

impl H5Writer {
    /// Creates the file at `out`'s temporary path and the dataset in it.
    pub fn create(out: OutputPath, spec: &DatasetSpec<'_>) -> Result<Self> {
        let name = format!("{}:{}", out.path().display(), spec.path);
        if out.is_stream() {
            return Err(Error::InvalidOption(format!(
                "{name}: an HDF5 file cannot be written to a device or FIFO; name a regular file"
            )));
        }
        let compound = spec.compound && spec.shape.len() == 2 && !spec.columns.is_empty();
        let size = spec.dtype.size();
        let float = match spec.dtype {
            DType::F32 => TypeDescriptor::Float(FloatSize::U4),
            DType::F64 => TypeDescriptor::Float(FloatSize::U8),
        };
        let (desc, shape, elem_bytes) = if compound {
            let fields = spec
                .columns
                .iter()
                .enumerate()
                .map(|(j, c)| CompoundField::new(c, float.clone(), j * size, j))
                .collect::<Vec<_>>();
            let width = fields.len();
            let desc = TypeDescriptor::Compound(CompoundType {
                fields,
                size: size * width,
            });
            (desc, vec![spec.shape[0]], size * width)
        } else {
            (float, spec.shape.to_vec(), size)
        };
        let memtype = Datatype::from_descriptor(&desc).map_err(|e| err(&name, "type", e))?;
        let growing = shape[0] == UNKNOWN;
        let extents: Vec<Extent> = shape
            .iter()
            .enumerate()
            .map(|(ax, &d)| {
                if ax == 0 && (growing || d == 0) {
                    Extent::resizable(if growing { 0 } else { d as usize })
                } else {
                    Extent::fixed(d as usize)
                }
            })
            .collect();
        let chunk: Vec<usize> = chunk_shape(&shape, elem_bytes as u64)
            .into_iter()
            .map(|c| c as usize)
            .collect();
        let file = File::create(out.tmp()).map_err(|e| {
            Error::InvalidInput(format!("cannot create {}: {e}", out.path().display()))
        })?;
        let mut builder = file.new_dataset_builder();
        // Room for the chunks a decoded chunk's edges leave half-written (a band of chunks
        // along the first axis, twice over) until the next decoded chunk completes them.
        let band = shape[1..]
            .iter()
            .fold(chunk[0] as u64, |a, &d| a.saturating_mul(d))
            .saturating_mul(elem_bytes as u64);
        let cache = band.saturating_mul(2).clamp(4 << 20, 32 << 20) as usize;
        builder.dapl().chunk_cache(1021, cache, 1.0);
        let ds = builder
            .empty_as(&memtype)
            .shape(SimpleExtents::from_vec(extents))
            .chunk(chunk)
            .create(spec.path)
            .map_err(|e| err(&name, "creating the dataset", e))?;
        if !compound && !spec.columns.is_empty() {
            write_columns(&ds, spec.columns).map_err(|e| err(&name, "writing `columns`", e))?;
        }
        let shape = if growing {
            let mut s = shape;
            s[0] = 0;
            s
        } else {
            shape
        };
        Ok(H5Writer {
            ds: Some(ds),
            file: Some(file),
            out,
            name,
            memtype,
            shape,
            growing,
            elem_bytes,
            written: 0,
            pending: Vec::new(),
        })
    }

    /// The dataset's name in messages, `FILE:/dataset`.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn write_elements(&mut self, bytes: &[u8]) -> Result<()> {
        let n = (bytes.len() / self.elem_bytes) as u64;
        if n == 0 {
            return Ok(());
        }
        let ds = self.ds.as_ref().expect("open until finish");
        let end = self.written + n;
        let inner: u64 = self.shape[1..].iter().product::<u64>().max(1);
        if self.growing {
            let rows = end.div_ceil(inner);
            if rows > self.shape[0] {
                self.shape[0] = rows;
                let dims: Vec<usize> = self.shape.iter().map(|&d| d as usize).collect();
                ds.resize(dims)
                    .map_err(|e| err(&self.name, "growing the dataset", e))?;
            }
        } else if end > self.shape.iter().product::<u64>() {
            return Err(Error::InvalidInput(format!(
                "{}: more values than the dataset's shape holds",
                self.name
            )));
        }
        let mut at = 0;
        for block in blocks(&self.shape, self.written, end) {
            let len = block.elements() as usize * self.elem_bytes;
            ffi::write_block(ds, &self.memtype, &block, &bytes[at..at + len])
                .map_err(|e| err(&self.name, "writing", e))?;
            at += len;
        }
        self.written = end;
        Ok(())
    }

    /// Closes the file and gives it its final name; fails if fewer values came than the shape
    /// holds.
    pub fn finish(mut self) -> Result<()> {
        if !self.pending.is_empty() {
            return Err(Error::InvalidInput(format!(
                "{}: the values end inside a record",
                self.name
            )));
        }
        let inner: u64 = self.shape[1..].iter().product::<u64>().max(1);
        if self.growing && !self.written.is_multiple_of(inner) {
            return Err(Error::InvalidInput(format!(
                "{}: {} values are not a whole number of slices of {inner}",
                self.name, self.written
            )));
        }
        if !self.growing && self.written != self.shape.iter().product::<u64>() {
            return Err(Error::InvalidInput(format!(
                "{}: {} of {} values written",
                self.name,
                self.written,
                self.shape.iter().product::<u64>()
            )));
        }
        drop(self.ds.take());
        let file = self.file.take().expect("open until finish");
        file.close()
            .map_err(|e| err(&self.name, "closing the file", e))?;
        self.out.commit()
    }
}

impl ValueSink for H5Writer {
    fn write_le(&mut self, bytes: &[u8]) -> Result<()> {
        if self.pending.is_empty() && bytes.len().is_multiple_of(self.elem_bytes) {
            return self.write_elements(bytes);
        }
        // A record split between two writes: join it (rare: decoded chunks hold whole records).
        let mut joined = std::mem::take(&mut self.pending);
        joined.extend_from_slice(bytes);
        let whole = joined.len() - joined.len() % self.elem_bytes;
        self.write_elements(&joined[..whole])?;
        self.pending = joined[whole..].to_vec();
        Ok(())
    }
}

/// The `columns` attribute: one comma-separated string (as h5py users write it, and as
/// baler's `--names` takes it), or an array of strings when a name holds a comma.
fn write_columns(ds: &Dataset, columns: &[String]) -> hdf5::Result<()> {
    let to_vlen = |s: &str| -> hdf5::Result<VarLenUnicode> {
        s.parse::<VarLenUnicode>()
            .map_err(|e| hdf5::Error::from(e.to_string()))
    };
    if columns.iter().any(|c| c.contains(',')) {
        let v = columns
            .iter()
            .map(|c| to_vlen(c))
            .collect::<hdf5::Result<Vec<_>>>()?;
        ds.new_attr::<VarLenUnicode>()
            .shape(v.len())
            .create("columns")?
            .write_raw(&v)
    } else {
        let v = to_vlen(&columns.join(","))?;
        ds.new_attr::<VarLenUnicode>()
            .create("columns")?
            .write_scalar(&v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_hold_whole_trailing_axes_near_a_mebibyte() {
        assert_eq!(chunk_shape(&[77394, 16], 4), vec![16384, 16]);
        assert_eq!(chunk_shape(&[3, 17, 96, 192], 4), vec![1, 14, 96, 192]);
        assert_eq!(chunk_shape(&[10, 5], 8), vec![10, 5]);
        assert_eq!(chunk_shape(&[UNKNOWN, 24], 4), vec![10922, 24]);
        assert_eq!(chunk_shape(&[4, 1 << 20], 4), vec![1, 262_144]);
        assert_eq!(chunk_shape(&[100], 64), vec![100]);
    }
}
