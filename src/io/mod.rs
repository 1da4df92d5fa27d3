//! Reading inputs and writing outputs: `.npy` and raw files (memory-mapped windows), HDF5
//! datasets (hyperslabs, cargo feature `hdf5`), standard input and output (buffered streams),
//! and output files that appear only when complete.

pub mod hdf5;
pub mod mmap;
pub mod npy;
pub mod output;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use crate::array::{ArraySpec, Layout, UNKNOWN};
use crate::container::SourceFormat;
use crate::element::{DType, Element};
use crate::error::{Error, Result};
use crate::normalize::{ColumnStats, StatsAccumulator};

use mmap::{RegionReader, WINDOW};

/// What the file itself does not say: the element type and shape of raw input, and which
/// dataset of an HDF5 file to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawFormat {
    /// Element type of raw input (`--dtype`); with `shape`, marks the input as raw.
    pub dtype: Option<DType>,
    /// Shape of raw input (`--shape`), the first dimension may be `-1` (as many as there are).
    pub shape: Option<Vec<i64>>,
    /// The dataset of an HDF5 file (`--dataset`), when the path does not name one
    /// (`FILE.h5:/group/dataset`).
    pub dataset: Option<String>,
}

impl RawFormat {
    fn is_raw(&self) -> bool {
        self.dtype.is_some() || self.shape.is_some()
    }
}

/// Parses `ROWS,COLS` or `D0,D1,...` (first entry may be `-1`).
pub fn parse_shape(s: &str) -> Result<Vec<i64>> {
    let dims: std::result::Result<Vec<i64>, _> = s
        .split([',', 'x', '×'])
        .map(|d| d.trim().parse::<i64>())
        .collect();
    let dims = dims.map_err(|_| {
        Error::InvalidOption(format!(
            "invalid shape '{s}': expected e.g. 1000,24 or -1,24"
        ))
    })?;
    if dims.is_empty() || dims.iter().skip(1).any(|&d| d < 0) || dims[0] < -1 {
        return Err(Error::InvalidOption(format!(
            "invalid shape '{s}': dimensions must be non-negative (only the first may be -1)"
        )));
    }
    Ok(dims)
}

/// An opened input: what it holds, and a reader of its values as little-endian bytes.
pub struct Input {
    /// The name used in messages (the path, or `<stdin>`).
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape; the first dimension is [`UNKNOWN`] for a raw stream of unknown length.
    pub shape: Vec<u64>,
    /// File format.
    pub format: SourceFormat,
    /// Bytes of values, where known.
    pub data_bytes: Option<u64>,
    /// Column names the file carries (an HDF5 attribute, or a compound dataset's fields).
    pub column_names: Vec<String>,
    /// Where those names come from (the attribute's name, or `fields`), for messages.
    pub names_source: Option<String>,
    /// The path of the values inside their file (an HDF5 dataset), if any.
    pub source_path: Option<String>,
    reader: Box<dyn Read + Send>,
    rescan: Option<Rescan>,
}

/// How to read a file input again (the range pre-pass, the training sample).
#[derive(Debug, Clone)]
enum Rescan {
    /// Bytes `[start, end)` of a file, values big-endian or not.
    Region {
        path: std::path::PathBuf,
        start: u64,
        end: u64,
        big_endian: bool,
    },
    /// An HDF5 dataset.
    #[cfg(feature = "hdf5")]
    Hdf5(hdf5::Source),
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("name", &self.name)
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

fn resolve_shape(
    dims: &[i64],
    dtype: DType,
    data_bytes: Option<u64>,
    name: &str,
) -> Result<Vec<u64>> {
    let slice: u64 = dims[1..].iter().map(|&d| d as u64).product();
    let size = dtype.size() as u64;
    let mut shape: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
    if dims[0] == -1 {
        match data_bytes {
            Some(bytes) => {
                let per = slice * size;
                if per == 0 || bytes % per != 0 {
                    return Err(Error::InvalidInput(format!(
                        "{name}: {bytes} bytes is not a whole number of {}-byte slices of shape {}",
                        per,
                        dims.iter()
                            .map(|d| d.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    )));
                }
                shape[0] = bytes / per;
            }
            None => shape[0] = UNKNOWN,
        }
    } else if let Some(bytes) = data_bytes {
        let want = shape.iter().product::<u64>() * size;
        if want != bytes {
            return Err(Error::InvalidInput(format!(
                "{name}: --shape {} of {dtype} needs {want} bytes but the file holds {bytes}",
                dims.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            )));
        }
    }
    Ok(shape)
}

impl Input {
    /// Opens a file, or standard input for `-`. An HDF5 file is recognized by its signature;
    /// `FILE:/group/dataset` names one of its datasets (as does `raw.dataset`).
    pub fn open(path: &str, raw: &RawFormat) -> Result<Input> {
        if path == "-" {
            if raw.dataset.is_some() {
                return Err(Error::InvalidOption(
                    "--dataset applies to HDF5 files; standard input cannot be read as HDF5 \
                     (the library needs to seek)"
                        .into(),
                ));
            }
            return Self::open_stdin(raw);
        }
        let (path, dataset) = match hdf5::split_dataset_path(path) {
            Some((file, ds)) => {
                if raw.dataset.as_deref().is_some_and(|d| d != ds) {
                    return Err(Error::InvalidOption(format!(
                        "two datasets named: {ds} in the path and {} with --dataset",
                        raw.dataset.as_deref().unwrap_or_default()
                    )));
                }
                (file, Some(ds.to_string()))
            }
            None => (path, raw.dataset.clone()),
        };
        let name = path.to_string();
        let mut file = File::open(path).map_err(|e| {
            // `missing.h5:/data`: name the file that is missing.
            let shown = path
                .match_indices(':')
                .map(|(i, _)| &path[..i])
                .find(|f| hdf5::is_hdf5_path(Path::new(f)))
                .unwrap_or(path);
            Error::Io(io::Error::new(
                e.kind(),
                format!("cannot open {shown}: {}", io_reason(&e)),
            ))
        })?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(Error::InvalidInput(format!("{path} is a directory")));
        }
        let size = meta.len();
        if !meta.is_file() {
            // A FIFO or device: read it as a stream.
            let reader = BufReader::with_capacity(1 << 20, file);
            return Self::from_stream(name, Box::new(reader), raw);
        }
        if raw.is_raw() {
            if dataset.is_some() {
                return Err(Error::InvalidOption(format!(
                    "{path}: a dataset is named, but --dtype/--shape ask to read the file as raw \
                     values; drop one or the other"
                )));
            }
            let (dtype, dims) = raw_parts(raw)?;
            let shape = resolve_shape(&dims, dtype, Some(size), &name)?;
            let reader = RegionReader::new(file, 0, size, WINDOW)?;
            return Ok(Input {
                name,
                dtype,
                shape,
                format: SourceFormat::Raw,
                data_bytes: Some(size),
                column_names: Vec::new(),
                names_source: None,
                source_path: None,
                reader: Box::new(reader),
                rescan: Some(Rescan::Region {
                    path: path.into(),
                    start: 0,
                    end: size,
                    big_endian: false,
                }),
            });
        }
        if hdf5::has_signature(&file) {
            drop(file);
            return Self::open_hdf5(path, dataset.as_deref());
        }
        if let Some(ds) = dataset {
            return Err(Error::InvalidInput(format!(
                "{path} is not an HDF5 file (it has no HDF5 signature), so it has no dataset {ds}"
            )));
        }
        let h = npy::read_header(&mut file).map_err(|e| with_name(e, path))?;
        let bytes = h.data_bytes().map_err(|e| with_name(e, path))?;
        if bytes > size.saturating_sub(h.data_offset) {
            return Err(Error::InvalidInput(format!(
                "{path}: truncated .npy file: its header declares {bytes} bytes of data but only {} follow",
                size.saturating_sub(h.data_offset)
            )));
        }
        let end = h.data_offset + bytes;
        let reader = RegionReader::new(file, h.data_offset, end, WINDOW)?;
        let reader: Box<dyn Read + Send> = if h.big_endian {
            Box::new(SwapReader::new(reader, h.dtype.size()))
        } else {
            Box::new(reader)
        };
        Ok(Input {
            name,
            dtype: h.dtype,
            shape: h.shape,
            format: SourceFormat::Npy,
            data_bytes: Some(bytes),
            column_names: Vec::new(),
            names_source: None,
            source_path: None,
            reader,
            rescan: Some(Rescan::Region {
                path: path.into(),
                start: h.data_offset,
                end,
                big_endian: h.big_endian,
            }),
        })
    }

    /// Opens a dataset of an HDF5 file (or its only float dataset).
    #[cfg(feature = "hdf5")]
    fn open_hdf5(path: &str, dataset: Option<&str>) -> Result<Input> {
        let o = hdf5::open(Path::new(path), path, dataset)?;
        let (names_source, column_names) = match o.columns {
            Some((from, names)) => (Some(from), names),
            None => (None, Vec::new()),
        };
        Ok(Input {
            name: o.source.name.clone(),
            dtype: o.dtype,
            data_bytes: Some(o.shape.iter().product::<u64>() * o.dtype.size() as u64),
            shape: o.shape,
            format: if o.compound {
                SourceFormat::Hdf5Compound
            } else {
                SourceFormat::Hdf5
            },
            column_names,
            names_source,
            source_path: Some(o.source.path.clone()),
            reader: Box::new(o.source.reader()),
            rescan: Some(Rescan::Hdf5(o.source)),
        })
    }

    #[cfg(not(feature = "hdf5"))]
    fn open_hdf5(path: &str, _dataset: Option<&str>) -> Result<Input> {
        Err(Error::InvalidInput(format!(
            "{path} is an HDF5 file, but this baler was built without HDF5 support; rebuild it \
             with the default features (cargo build --release)"
        )))
    }

    fn open_stdin(raw: &RawFormat) -> Result<Input> {
        let reader = BufReader::with_capacity(1 << 20, io::stdin());
        Self::from_stream("<stdin>".into(), Box::new(reader), raw)
    }

    /// Reads `.npy` or raw values from a stream (no pre-pass is possible).
    pub fn from_stream(
        name: String,
        mut reader: Box<dyn BufReadSend>,
        raw: &RawFormat,
    ) -> Result<Input> {
        if raw.is_raw() {
            let (dtype, dims) = raw_parts(raw)?;
            let shape = resolve_shape(&dims, dtype, None, &name)?;
            let data_bytes =
                (shape[0] != UNKNOWN).then(|| shape.iter().product::<u64>() * dtype.size() as u64);
            return Ok(Input {
                name,
                dtype,
                shape,
                format: SourceFormat::Raw,
                data_bytes,
                column_names: Vec::new(),
                names_source: None,
                source_path: None,
                reader: Box::new(reader),
                rescan: None,
            });
        }
        let peek = reader.fill_buf()?;
        if peek.is_empty() {
            return Err(Error::InvalidInput(format!("{name} is empty")));
        }
        if !peek.starts_with(b"\x93NUMPY") {
            return Err(Error::InvalidInput(format!(
                "{name} does not start with a .npy header; for raw values give --dtype and --shape (e.g. --dtype f32 --shape -1,24)"
            )));
        }
        let h = npy::read_header(&mut reader).map_err(|e| with_name(e, &name))?;
        let data_bytes = Some(h.data_bytes().map_err(|e| with_name(e, &name))?);
        let reader: Box<dyn Read + Send> = if h.big_endian {
            Box::new(SwapReader::new(reader, h.dtype.size()))
        } else {
            Box::new(reader)
        };
        Ok(Input {
            name,
            dtype: h.dtype,
            shape: h.shape,
            format: SourceFormat::Npy,
            data_bytes,
            column_names: Vec::new(),
            names_source: None,
            source_path: None,
            reader,
            rescan: None,
        })
    }

    /// The array spec for this input with the given layout (default: by rank). `names` (from
    /// `--names`) win over the names the file carries.
    pub fn spec(&self, layout: Option<Layout>, names: Vec<String>) -> Result<ArraySpec> {
        let mut spec = ArraySpec::new(self.dtype, self.shape.clone());
        if let Some(l) = layout {
            spec.layout = l;
        }
        spec.column_names = names;
        if spec.column_names.is_empty()
            && spec.layout == Layout::Table
            && !self.column_names.is_empty()
        {
            let width = spec.shape.get(1).copied().unwrap_or(0);
            if self.column_names.len() as u64 != width {
                return Err(Error::InvalidInput(format!(
                    "{}: its `{}` attribute names {} columns, but the table has {width}; fix \
                     the attribute, or give the names with --names",
                    self.name,
                    self.names_source.as_deref().unwrap_or("columns"),
                    self.column_names.len()
                )));
            }
            spec.column_names = self.column_names.clone();
        }
        spec.validate().map_err(|e| with_name(e, &self.name))?;
        Ok(spec)
    }

    /// Whether [`scan_stats`](Self::scan_stats) can run (a regular file).
    pub fn can_scan(&self) -> bool {
        self.rescan.is_some()
    }

    /// [`scan_stats`](Self::scan_stats) to be run later, on another thread (its readers opened
    /// now): the CLI's range pre-pass runs while the model trains.
    pub fn stats_scan(
        &self,
        columns: usize,
        threads: usize,
    ) -> Result<impl FnOnce() -> Result<Vec<ColumnStats>> + Send + 'static> {
        let parts = self.scan_parts(columns, threads)?;
        let dtype = self.dtype;
        Ok(move || match dtype {
            DType::F32 => scan_parts::<f32>(parts, columns),
            DType::F64 => scan_parts::<f64>(parts, columns),
        })
    }

    /// A pre-pass over a file input: statistics of `columns` columns (1 for a whole field),
    /// read on up to `threads` threads.
    pub fn scan_stats(&self, columns: usize, threads: usize) -> Result<Vec<ColumnStats>> {
        self.stats_scan(columns, threads)?()
    }

    /// Readers of contiguous runs of whole records (the last to the end), one per thread: for
    /// a plain file as many as [`crate::normalize::parallel_parts`] gives, else one.
    /// The statistics (least and greatest value, counts) do not depend on the split.
    fn scan_parts(&self, columns: usize, threads: usize) -> Result<Vec<Box<dyn Read + Send>>> {
        let bytes = self.data_bytes.filter(|_| self.can_scan()).ok_or_else(|| {
            Error::InvalidInput(format!("{}: a stream cannot be scanned twice", self.name))
        })?;
        let size = self.dtype.size() as u64;
        let values = bytes / size;
        let width = columns.max(1) as u64;
        let records = values / width;
        let plain = matches!(self.rescan, Some(Rescan::Region { .. }));
        let n = if plain {
            (crate::normalize::parallel_parts(bytes, threads) as u64).min(records.max(1))
        } else {
            1
        };
        (0..n)
            .map(|i| {
                let first = records * i / n * width;
                let end = if i + 1 == n {
                    values
                } else {
                    records * (i + 1) / n * width
                };
                self.range_reader(first, end - first)
            })
            .collect()
    }

    /// Reads `buf.len()` bytes of values, little-endian, from value `first` of a file input
    /// (a plain file through `file`, opened on the first read and kept for the next).
    fn read_values_at(&self, file: &mut Option<File>, first: u64, buf: &mut [u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let size = self.dtype.size();
        match &self.rescan {
            Some(Rescan::Region {
                path,
                start,
                big_endian,
                ..
            }) => {
                let f = match file {
                    Some(f) => f,
                    None => file.insert(File::open(path)?),
                };
                f.read_exact_at(buf, start + first * size as u64)
                    .map_err(|e| Error::InvalidInput(io_reason(&e)))?;
                if *big_endian {
                    buf.chunks_exact_mut(size).for_each(|v| v.reverse());
                }
                Ok(())
            }
            #[cfg(feature = "hdf5")]
            Some(Rescan::Hdf5(source)) => source.read_values(first, buf),
            None => Err(Error::InvalidInput("a stream cannot be read twice".into())),
        }
    }

    /// A uniform random sample of about `max_records` records of `record_len` values from a
    /// file input, as `f64`, row-major: blocks of 256 consecutive records at positions drawn
    /// with `seed` from the whole file, read directly (a 1 TB file is not read whole). `None`
    /// for a stream.
    pub fn sample_records(
        &self,
        record_len: usize,
        max_records: usize,
        seed: u64,
    ) -> Result<Option<Vec<f64>>> {
        let (Some(bytes), true) = (self.data_bytes, self.can_scan()) else {
            return Ok(None);
        };
        let size = self.dtype.size();
        let record_bytes = (record_len * size) as u64;
        let records = bytes / record_bytes.max(1);
        if records == 0 {
            return Ok(Some(Vec::new()));
        }
        let blocks = crate::model::budget::sample_blocks(records, max_records, seed);
        let total: u64 = blocks.iter().map(|&(_, n)| n).sum();
        let mut out = Vec::with_capacity((total * record_len as u64) as usize);
        let mut buf = Vec::new();
        let mut file = None;
        for (first, n) in blocks {
            buf.resize((n * record_bytes) as usize, 0);
            self.read_values_at(&mut file, first * record_len as u64, &mut buf)
                .map_err(|e| {
                    Error::InvalidInput(format!(
                        "{}: reading records {first}.. for the training sample: {e}",
                        self.name,
                    ))
                })?;
            extend_as_f64(self.dtype, &buf, &mut out);
        }
        Ok(Some(out))
    }

    /// What identifies this file input for a plan ([`crate::plan::Fingerprint`]): its size,
    /// and a CRC-32 of its values (little-endian, so a big-endian copy has the same) in 16
    /// windows of 64 KiB spread evenly over it (all of it up to 1 MiB).
    pub fn fingerprint(&self) -> Result<crate::plan::Fingerprint> {
        let Some(bytes) = self.data_bytes.filter(|_| self.can_scan()) else {
            return Err(Error::InvalidInput(format!(
                "{}: a plan needs a file it can read again (each shard reads its part of it); \
                 a stream cannot be planned",
                self.name
            )));
        };
        let size = self.dtype.size() as u64;
        // A compound HDF5 dataset is read by whole records.
        let unit = match self.format {
            SourceFormat::Hdf5Compound => self.shape.get(1).copied().unwrap_or(1).max(1),
            _ => 1,
        };
        let values = bytes / size;
        let window = (((64 << 10) / size) / unit).max(1) * unit;
        const WINDOWS: u64 = 16;
        let mut crc = crc32fast::Hasher::new();
        let mut buf = Vec::new();
        let mut file = None;
        let mut read = |first: u64, n: u64, crc: &mut crc32fast::Hasher| -> Result<()> {
            buf.resize((n * size) as usize, 0);
            self.read_values_at(&mut file, first, &mut buf)
                .map_err(|e| {
                    Error::InvalidInput(format!("{}: reading values {first}..: {e}", self.name))
                })?;
            crc.update(&buf);
            Ok(())
        };
        if values <= WINDOWS * window {
            let mut at = 0;
            while at < values {
                let n = window.min(values - at);
                read(at, n, &mut crc)?;
                at += n;
            }
        } else {
            let units = (values - window) / unit;
            for k in 0..WINDOWS {
                let first = units * k / (WINDOWS - 1) * unit;
                read(first, window, &mut crc)?;
            }
        }
        Ok(crate::plan::Fingerprint {
            name: self.name.clone(),
            bytes,
            digest: crc.finalize(),
        })
    }

    /// A reader of values `first .. first + count` of a file input, little-endian (a shard's
    /// records; `first` a whole number of records).
    pub fn range_reader(&self, first: u64, count: u64) -> Result<Box<dyn Read + Send>> {
        let size = self.dtype.size() as u64;
        match self.rescan.clone() {
            Some(Rescan::Region {
                path,
                start,
                end,
                big_endian,
            }) => {
                let a = start + first * size;
                let b = a + count * size;
                if b > end {
                    return Err(Error::InvalidInput(format!(
                        "{}: values {first}..{} lie past its end",
                        self.name,
                        first + count
                    )));
                }
                let reader = RegionReader::new(File::open(&path)?, a, b, WINDOW)?;
                Ok(if big_endian {
                    Box::new(SwapReader::new(reader, self.dtype.size()))
                } else {
                    Box::new(reader)
                })
            }
            #[cfg(feature = "hdf5")]
            Some(Rescan::Hdf5(source)) => Ok(Box::new(source.range_reader(first, count)?)),
            None => Err(Error::InvalidInput(format!(
                "{}: a stream cannot be read in parts",
                self.name
            ))),
        }
    }

    /// The first records of the input (at most `max_records` of `record_len` values, and at
    /// most [`STREAM_HEAD_BYTES`] of them as `f64`; fewer where it ends sooner), as `f64`,
    /// row-major: a stream's training sample, which cannot be drawn from the whole of it.
    /// They stay in front of the rest, so the values are still read once, in order, whole;
    /// memory holds those records only.
    pub fn head_records(&mut self, record_len: usize, max_records: usize) -> Result<Vec<f64>> {
        let size = self.dtype.size();
        let max_records = max_records.min(STREAM_HEAD_BYTES / (8 * record_len.max(1)));
        let want = max_records.saturating_mul(record_len).saturating_mul(size);
        let mut head = Vec::new();
        let reader = std::mem::replace(&mut self.reader, Box::new(io::empty()));
        let mut reader = reader.take(want as u64);
        let read = reader.read_to_end(&mut head);
        let rest = reader.into_inner();
        let whole = head.len() - head.len() % (record_len * size).max(1);
        let mut out = Vec::with_capacity(whole / size);
        extend_as_f64(self.dtype, &head[..whole], &mut out);
        // Whatever was read goes back in front, even on an error (the next read reports it).
        self.reader = Box::new(io::Cursor::new(head).chain(rest));
        read.map_err(|e| {
            Error::InvalidInput(format!(
                "{}: reading its first records for the training sample: {e}",
                self.name
            ))
        })?;
        Ok(out)
    }

    /// What a model trained on `sample` values of this input, to compress it, is priced on:
    /// the input's records and its bytes of values, where it tells them. A stream that does
    /// not say how long it is gives no records (the model is priced on its sample alone) and
    /// the sample's bytes (it is at least its head).
    pub fn coded_extent(&self, sample: usize) -> (u64, u64) {
        let records = self
            .shape
            .first()
            .copied()
            .filter(|&n| n != UNKNOWN)
            .unwrap_or(0);
        let bytes = self
            .data_bytes
            .unwrap_or((sample * self.dtype.size()) as u64);
        (records, bytes)
    }

    /// The training sample of about `max_records` records of `record_len` values, as `f64`,
    /// row-major: drawn from the whole of a file ([`sample_records`](Self::sample_records)),
    /// a stream's first records ([`head_records`](Self::head_records)).
    pub fn training_sample(
        &mut self,
        record_len: usize,
        max_records: usize,
        seed: u64,
    ) -> Result<Vec<f64>> {
        match self.sample_records(record_len, max_records, seed)? {
            Some(sample) => Ok(sample),
            None => self.head_records(record_len, max_records),
        }
    }

    /// The reader of the values, little-endian.
    pub fn into_reader(self) -> Box<dyn Read + Send> {
        self.reader
    }
}

/// Most bytes of a stream's first records [`Input::head_records`] holds (as `f64`): the default
/// effort's 25,000 records of a 24-column table take 4.8 MB.
pub const STREAM_HEAD_BYTES: usize = 64 << 20;

/// Appends the little-endian values of `dtype` in `bytes` to `out` as `f64` (the element type
/// chosen once per call, so the conversion loop vectorizes).
fn extend_as_f64(dtype: DType, bytes: &[u8], out: &mut Vec<f64>) {
    match dtype {
        DType::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|v| f64::from(f32::from_le_bytes([v[0], v[1], v[2], v[3]]))),
        ),
        DType::F64 => out.extend(
            bytes
                .chunks_exact(8)
                .map(|v| f64::from_le_bytes(v.try_into().expect("8 bytes"))),
        ),
    }
}

/// A buffered, sendable reader (what streams are wrapped in).
pub trait BufReadSend: BufRead + Send {}
impl<T: BufRead + Send> BufReadSend for T {}

/// [`scan`] of each part, on a thread each, merged.
fn scan_parts<T: Element>(
    mut parts: Vec<Box<dyn Read + Send>>,
    columns: usize,
) -> Result<Vec<ColumnStats>> {
    if parts.len() <= 1 {
        let r = parts.pop().expect("one part at least");
        return scan::<T>(r, columns);
    }
    crate::threads::scope(|s| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|r| s.spawn(move || scan::<T>(r, columns)))
            .collect();
        let mut all = Vec::with_capacity(handles.len());
        for h in handles {
            let part = h
                .join()
                .map_err(|_| Error::InvalidInput("the range pre-pass panicked".into()))??;
            all.push(part);
        }
        Ok(crate::normalize::merge_parts(columns.max(1), all))
    })
}

fn scan<T: Element>(mut r: Box<dyn Read + Send>, columns: usize) -> Result<Vec<ColumnStats>> {
    let mut acc = StatsAccumulator::new(columns);
    let width = columns.max(1);
    let per = ((1 << 20) / (width * T::BYTES)).max(1) * width;
    let mut buf = vec![T::from_f64(0.0); per];
    loop {
        let n = read_full(&mut r, bytemuck::cast_slice_mut(&mut buf))?;
        let vals = n / T::BYTES / width * width;
        T::from_le_in_place(&mut buf[..vals]);
        acc.add(&buf[..vals]);
        if n < per * T::BYTES {
            return Ok(acc.finish());
        }
    }
}

fn raw_parts(raw: &RawFormat) -> Result<(DType, Vec<i64>)> {
    match (raw.dtype, &raw.shape) {
        (Some(d), Some(s)) => Ok((d, s.clone())),
        (Some(d), None) => Ok((d, vec![-1])),
        (None, Some(_)) => Err(Error::InvalidOption(
            "raw input needs --dtype f32|f64 with --shape".into(),
        )),
        (None, None) => unreachable!("not raw"),
    }
}

fn with_name(e: Error, name: &str) -> Error {
    match e {
        Error::InvalidInput(m) if !m.starts_with(name) => {
            Error::InvalidInput(format!("{name}: {m}"))
        }
        other => other,
    }
}

/// A short reason for an I/O error, without the "(os error N)" suffix.
pub fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file or directory".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Reverses the byte order of each `size`-byte value of a stream (for big-endian `.npy`).
struct SwapReader<R> {
    inner: R,
    size: usize,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<R: Read> SwapReader<R> {
    fn new(inner: R, size: usize) -> Self {
        SwapReader {
            inner,
            size,
            buf: vec![0; 1 << 16],
            start: 0,
            end: 0,
        }
    }
}

impl<R: Read> Read for SwapReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.start == self.end {
            // Refill with whole values only (a partial tail value passes through unswapped and
            // is reported by the compressor as stray bytes).
            let mut n = 0;
            while n < self.buf.len() {
                match self.inner.read(&mut self.buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
                if n % self.size == 0 {
                    break;
                }
            }
            for v in self.buf[..n - n % self.size].chunks_exact_mut(self.size) {
                v.reverse();
            }
            self.start = 0;
            self.end = n;
        }
        let n = out.len().min(self.end - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

/// Reads until `buf` is full or the reader is at its end (retrying interrupted reads); returns
/// the bytes read.
pub fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Whether `path` names standard input or output.
pub fn is_std(path: &Path) -> bool {
    path.as_os_str() == "-"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_stream(bytes: Vec<u8>, dtype: DType) -> Input {
        let raw = RawFormat {
            dtype: Some(dtype),
            shape: Some(vec![-1, 3]),
            dataset: None,
        };
        Input::from_stream("test".into(), Box::new(io::Cursor::new(bytes)), &raw).unwrap()
    }

    /// A stream's first records come back as `f64` (whole records only, fewer where the
    /// stream is shorter), and the stream still reads whole afterwards, byte for byte.
    #[test]
    fn a_streams_head_is_read_ahead_and_kept_in_front() {
        let values: Vec<f64> = (0..1000).map(|i| f64::from(i) * 0.5 - 7.0).collect();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        for (records, expect) in [(10, 30), (0, 0), (5000, 999)] {
            let mut input = raw_stream(bytes.clone(), DType::F64);
            let head = input.head_records(3, records).unwrap();
            assert_eq!(head, values[..expect], "{records} records");
            let mut all = Vec::new();
            input.into_reader().read_to_end(&mut all).unwrap();
            assert_eq!(all, bytes);
        }
        let narrow: Vec<u8> = values
            .iter()
            .flat_map(|&v| (v as f32).to_le_bytes())
            .collect();
        let mut input = raw_stream(narrow.clone(), DType::F32);
        assert_eq!(input.head_records(3, 2).unwrap(), values[..6]);
        let mut all = Vec::new();
        input.into_reader().read_to_end(&mut all).unwrap();
        assert_eq!(all, narrow);
    }

    /// A model for a stream of unknown length is priced on its sample; one for an input that
    /// says how long it is, on the whole of it.
    #[test]
    fn models_are_priced_on_what_the_input_tells() {
        let bytes = vec![0u8; 4 * 3 * 100];
        let stream = raw_stream(bytes.clone(), DType::F32);
        assert_eq!(stream.coded_extent(3 * 40), (0, 4 * 3 * 40));
        let raw = RawFormat {
            dtype: Some(DType::F32),
            shape: Some(vec![100, 3]),
            dataset: None,
        };
        let sized = Input::from_stream("test".into(), Box::new(io::Cursor::new(bytes)), &raw);
        assert_eq!(sized.unwrap().coded_extent(3 * 40), (100, 4 * 3 * 100));
    }
}
