//! Opening a dataset, listing a file's datasets, and reading values by hyperslabs.

use std::io::{self, Read};
use std::path::Path;

use hdf5::types::{
    CompoundField, CompoundType, FixedAscii, FixedUnicode, FloatSize, TypeDescriptor, VarLenAscii,
    VarLenUnicode,
};
use hdf5::{Dataset, Datatype, File, Group};

use crate::element::DType;
use crate::error::{Error, Result};

use super::ffi;
use super::slab::{self, blocks};

/// Attributes whose value names the columns of a 2-D dataset, in the order looked for.
pub const COLUMN_ATTRIBUTES: &[&str] = &["columns", "column_names"];

/// What a dataset holds, as baler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Floating-point values of one type.
    Floats(DType),
    /// A 1-D compound of float fields: a table with one column per field, as `dtype` (float64
    /// when the fields mix float32 and float64: every value is kept exactly).
    Compound {
        /// The type of every column.
        dtype: DType,
        /// The fields, in the order of the type.
        fields: Vec<String>,
    },
    /// Something baler does not compress, and why.
    Other(String),
}

/// One dataset of a file: what `baler info` lists and error messages suggest.
#[derive(Debug, Clone)]
pub struct DatasetInfo {
    /// Absolute path inside the file (`/group/dataset`).
    pub path: String,
    /// The dataset's shape.
    pub shape: Vec<u64>,
    /// The HDF5 element type, described.
    pub type_name: String,
    /// What baler makes of it.
    pub content: Content,
    /// Chunk shape, for a chunked dataset.
    pub chunks: Option<Vec<u64>>,
    /// The filters on its chunks (gzip, shuffle, …).
    pub filters: Vec<String>,
}

impl DatasetInfo {
    /// Whether baler can compress it.
    pub fn is_float(&self) -> bool {
        !matches!(self.content, Content::Other(_))
    }

    /// The element type in a few words: `float32`, `compound of 16 float fields`.
    pub fn short_type(&self) -> String {
        match &self.content {
            Content::Compound { fields, .. } => {
                format!("compound of {} float fields", fields.len())
            }
            _ if self.type_name.starts_with("compound") => "compound".into(),
            _ => self.type_name.clone(),
        }
    }

    /// The shape, `scalar` for none.
    pub fn shape_string(&self) -> String {
        if self.shape.is_empty() {
            "scalar".into()
        } else {
            crate::array::shape_string(&self.shape)
        }
    }

    /// `shape, type`, for messages: `2048 × 16, float32`.
    pub fn summary(&self) -> String {
        format!("{}, {}", self.shape_string(), self.short_type())
    }
}

fn h5err(file: &str, what: &str, e: hdf5::Error) -> Error {
    Error::InvalidInput(format!("{file}: {what}: {e}"))
}

fn open_file(path: &Path, name: &str) -> Result<File> {
    File::open(path).map_err(|e| {
        let locked = e.to_string().contains("unable to lock file");
        let mut err = h5err(name, "cannot open it as an HDF5 file", e);
        if locked {
            err = Error::InvalidInput(format!(
                "{err} (another program has it open for writing: wait until it is done, or set \
                 HDF5_USE_FILE_LOCKING=FALSE to read it anyway)"
            ));
        }
        err
    })
}

/// The float type of an HDF5 numeric type, if it is one.
fn float_of(td: &TypeDescriptor) -> Option<DType> {
    match td {
        TypeDescriptor::Float(FloatSize::U4) => Some(DType::F32),
        TypeDescriptor::Float(FloatSize::U8) => Some(DType::F64),
        _ => None,
    }
}

fn describe(td: &TypeDescriptor) -> String {
    match td {
        TypeDescriptor::Compound(c) => {
            let fields: Vec<String> = c
                .fields
                .iter()
                .map(|f| format!("{}: {}", f.name, describe(&f.ty)))
                .collect();
            format!("compound {{{}}}", fields.join(", "))
        }
        other => other.to_string(),
    }
}

/// What baler makes of a dataset of `shape` and element type `td`.
fn content_of(shape: &[u64], td: &TypeDescriptor) -> Content {
    if let Some(d) = float_of(td) {
        return Content::Floats(d);
    }
    let TypeDescriptor::Compound(c) = td else {
        return Content::Other(format!(
            "its values are {td}, not floating point: baler compresses float32 and float64 \
             (convert it, e.g. with h5py: f['new'] = f['old'][...].astype('f4'))"
        ));
    };
    if shape.len() != 1 {
        return Content::Other(format!(
            "a compound dataset of rank {} (only 1-D compound datasets are tables)",
            shape.len()
        ));
    }
    let mut dtypes = Vec::new();
    for f in &c.fields {
        match float_of(&f.ty) {
            Some(d) => dtypes.push(d),
            None => {
                return Content::Other(format!(
                    "its field '{}' is {}, not float32 or float64: baler compresses compound \
                     datasets whose fields are all floats",
                    f.name, f.ty
                ));
            }
        }
    }
    if dtypes.is_empty() {
        return Content::Other("a compound type without fields".into());
    }
    let dtype = if dtypes.iter().all(|&d| d == DType::F32) {
        DType::F32
    } else {
        DType::F64
    };
    Content::Compound {
        dtype,
        fields: c.fields.iter().map(|f| f.name.clone()).collect(),
    }
}

/// A filter's name in listings, from its id (and gzip's level).
fn filter_name(id: i32, cd: &[u32]) -> String {
    match id {
        1 => format!("gzip {}", cd.first().copied().unwrap_or(0)),
        2 => "shuffle".into(),
        3 => "fletcher32".into(),
        4 => "szip".into(),
        5 => "nbit".into(),
        6 => "scaleoffset".into(),
        32000 => "lzf".into(),
        32001 => "blosc".into(),
        32004 => "lz4".into(),
        32008 => "bitshuffle".into(),
        32013 => "zfp".into(),
        32015 => "zstd".into(),
        32017 => "sz".into(),
        32024 => "sz3".into(),
        // baler's own filter plugin (hdf5-filter/, libh5baler.so).
        47646 => "baler".into(),
        id => format!("filter {id}"),
    }
}

fn info_of(ds: &Dataset) -> Result<DatasetInfo> {
    let path = ds.name();
    let td = ds
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| e.to_string());
    let shape: Vec<u64> = ds.shape().iter().map(|&d| d as u64).collect();
    let filters = ffi::filter_pipeline(ds)
        .map_err(|e| h5err(&ds.filename(), &format!("{path}: reading its filters"), e))?
        .iter()
        .map(|(id, cd, _)| filter_name(*id, cd))
        .collect();
    let (type_name, content) = match td {
        Ok(td) => (describe(&td), content_of(&shape, &td)),
        Err(e) => (
            "an unsupported type".into(),
            Content::Other(format!("its element type is not one baler reads ({e})")),
        ),
    };
    Ok(DatasetInfo {
        path,
        shape,
        type_name,
        content,
        chunks: ds
            .chunk()
            .map(|c| c.into_iter().map(|d| d as u64).collect()),
        filters,
    })
}

/// Every dataset of an opened file, depth first, in name order.
fn walk(group: &Group, depth: usize, out: &mut Vec<DatasetInfo>) -> Result<()> {
    // A file can link a group into itself; no real file nests this deep.
    if depth > 64 || out.len() > 100_000 {
        return Ok(());
    }
    let name = group.filename();
    for ds in group
        .datasets()
        .map_err(|e| h5err(&name, "listing datasets", e))?
    {
        out.push(info_of(&ds)?);
    }
    for g in group
        .groups()
        .map_err(|e| h5err(&name, "listing groups", e))?
    {
        walk(&g, depth + 1, out)?;
    }
    Ok(())
}

/// Lists the datasets of an HDF5 file (`name` is used in messages).
pub fn list_datasets(path: &Path, name: &str) -> Result<Vec<DatasetInfo>> {
    let file = open_file(path, name)?;
    let mut out = Vec::new();
    walk(&file, 0, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The column names a dataset's attributes give, with the attribute's name.
pub fn column_names(ds: &Dataset) -> Option<(String, Vec<String>)> {
    let names = ds.attr_names().ok()?;
    let attr_name = COLUMN_ATTRIBUTES
        .iter()
        .find(|a| names.iter().any(|n| n == *a))?;
    let attr = ds.attr(attr_name).ok()?;
    let td = attr.dtype().ok()?.to_descriptor().ok()?;
    let scalar = attr.ndim() == 0;
    // Every value of the attribute (one for a scalar) as text.
    fn all<T: hdf5::H5Type + std::fmt::Display>(a: &hdf5::Attribute) -> Option<Vec<String>> {
        Some(a.read_raw::<T>().ok()?.iter().map(T::to_string).collect())
    }
    let strings = match td {
        TypeDescriptor::VarLenUnicode => all::<VarLenUnicode>(&attr)?,
        TypeDescriptor::VarLenAscii => all::<VarLenAscii>(&attr)?,
        // Fixed-length strings convert to a longer fixed length (the library pads them).
        TypeDescriptor::FixedAscii(n) if n <= 1024 => all::<FixedAscii<1024>>(&attr)?,
        TypeDescriptor::FixedUnicode(n) if n <= 1024 => all::<FixedUnicode<1024>>(&attr)?,
        _ => return None,
    };
    if strings.is_empty() {
        return None;
    }
    let names: Vec<String> = if scalar {
        strings[0]
            .split(',')
            .map(|s| s.trim().to_string())
            .collect()
    } else {
        strings
            .iter()
            .map(|s| s.trim_end_matches('\0').trim().to_string())
            .collect()
    };
    Some((attr_name.to_string(), names))
}

/// Levenshtein distance, for suggesting the dataset a typo meant.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The listed datasets closest to `wanted`: a small edit distance on the path or on its last
/// component, or the same last component elsewhere.
fn close_names<'a>(wanted: &str, all: &'a [DatasetInfo]) -> Vec<&'a DatasetInfo> {
    let base = |p: &str| p.rsplit('/').next().unwrap_or("").to_ascii_lowercase();
    let (w, wb) = (wanted.to_ascii_lowercase(), base(wanted));
    let mut scored: Vec<(usize, &DatasetInfo)> = all
        .iter()
        .filter_map(|d| {
            let full = edit_distance(&w, &d.path.to_ascii_lowercase());
            let last = edit_distance(&wb, &base(&d.path));
            let dist = full.min(last);
            (dist <= 2.max(wb.chars().count() / 3)).then_some((dist, d))
        })
        .collect();
    scored.sort_by_key(|(d, i)| (*d, i.path.clone()));
    scored.into_iter().take(5).map(|(_, d)| d).collect()
}

fn listing(items: &[&DatasetInfo], file: &str) -> String {
    items
        .iter()
        .map(|d| format!("\n    {file}:{}  ({})", d.path, d.summary()))
        .collect()
}

/// An opened dataset: what it holds, and the handles to read it (cheap to clone: the handles
/// are reference-counted).
#[derive(Clone)]
pub struct Source {
    /// `FILE:/dataset`, for messages.
    pub name: String,
    /// Path of the dataset inside the file.
    pub path: String,
    ds: Dataset,
    memtype: Datatype,
    /// Bytes of one dataset element in memory (a compound record holds several values).
    elem_bytes: usize,
    values_per_elem: usize,
    shape: Vec<u64>,
    chunk: Option<Vec<u64>>,
    filters: Vec<String>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("name", &self.name)
            .field("shape", &self.shape)
            .field("chunk", &self.chunk)
            .finish_non_exhaustive()
    }
}

/// What [`open`] found.
#[derive(Debug)]
pub struct Opened {
    /// The handles to read the values.
    pub source: Source,
    /// Element type of the values handed out.
    pub dtype: DType,
    /// Shape as an array: the dataset's, or `(records, fields)` for a compound dataset.
    pub shape: Vec<u64>,
    /// Column names and where they come from (an attribute's name, or `fields`).
    pub columns: Option<(String, Vec<String>)>,
    /// Whether the dataset is a compound of float fields.
    pub compound: bool,
}

/// Opens `dataset` (absolute or relative to the root) of the HDF5 file at `path`, or, without
/// one, the file's only float dataset. `name` is the file's name in messages.
pub fn open(path: &Path, name: &str, dataset: Option<&str>) -> Result<Opened> {
    let file = open_file(path, name)?;
    let ds = match dataset {
        Some(d) => {
            let full = if d.starts_with('/') {
                d.to_string()
            } else {
                format!("/{d}")
            };
            match file.dataset(&full) {
                Ok(ds) => ds,
                Err(_) => return Err(missing_dataset(&file, name, &full)),
            }
        }
        None => {
            let mut all = Vec::new();
            walk(&file, 0, &mut all)?;
            let floats: Vec<&DatasetInfo> = all.iter().filter(|d| d.is_float()).collect();
            match floats.as_slice() {
                [one] => file
                    .dataset(&one.path)
                    .map_err(|e| h5err(name, &format!("opening {}", one.path), e))?,
                [] if all.is_empty() => {
                    return Err(Error::InvalidInput(format!(
                        "{name}: the HDF5 file holds no dataset"
                    )));
                }
                [] => {
                    let refs: Vec<&DatasetInfo> = all.iter().take(20).collect();
                    return Err(Error::InvalidInput(format!(
                        "{name}: no float32 or float64 dataset in this HDF5 file; it holds:{}",
                        listing(&refs, name)
                    )));
                }
                many => {
                    return Err(Error::InvalidInput(format!(
                        "{name} holds {} float datasets; name the one to compress, as \
                         {name}:/path or with --dataset /path:{}",
                        many.len(),
                        listing(&many[..many.len().min(20)], name)
                    )));
                }
            }
        }
    };
    let info = info_of(&ds)?;
    let display = format!("{name}:{}", info.path);
    let (dtype, shape, columns, compound, memtype, values_per_elem) = match &info.content {
        Content::Other(why) => {
            return Err(Error::InvalidInput(format!("{display}: {why}")));
        }
        Content::Floats(d) => {
            let memtype = match d {
                DType::F32 => Datatype::from_type::<f32>(),
                DType::F64 => Datatype::from_type::<f64>(),
            }
            .map_err(|e| h5err(&display, "memory type", e))?;
            let columns = if info.shape.len() == 2 {
                column_names(&ds)
            } else {
                None
            };
            (*d, info.shape.clone(), columns, false, memtype, 1)
        }
        Content::Compound { dtype, fields } => {
            // A packed record of the fields in their order, each as `dtype`: the library
            // matches fields by name and converts each one.
            let size = dtype.size();
            let ty = match dtype {
                DType::F32 => TypeDescriptor::Float(FloatSize::U4),
                DType::F64 => TypeDescriptor::Float(FloatSize::U8),
            };
            let desc = TypeDescriptor::Compound(CompoundType {
                fields: fields
                    .iter()
                    .enumerate()
                    .map(|(j, f)| CompoundField::new(f, ty.clone(), j * size, j))
                    .collect(),
                size: size * fields.len(),
            });
            let memtype =
                Datatype::from_descriptor(&desc).map_err(|e| h5err(&display, "memory type", e))?;
            (
                *dtype,
                vec![info.shape[0], fields.len() as u64],
                Some(("fields".to_string(), fields.clone())),
                true,
                memtype,
                fields.len(),
            )
        }
    };
    let elem_bytes = dtype.size() * values_per_elem;
    Ok(Opened {
        source: Source {
            name: display,
            path: info.path.clone(),
            ds,
            memtype,
            elem_bytes,
            values_per_elem,
            shape: info.shape.clone(),
            chunk: info.chunks.clone(),
            filters: info.filters.clone(),
        },
        dtype,
        shape,
        columns,
        compound,
    })
}

/// The error for a dataset path that does not name a dataset: a group's contents, close names,
/// or the float datasets there are.
fn missing_dataset(file: &File, name: &str, wanted: &str) -> Error {
    let mut all = Vec::new();
    let _ = walk(file, 0, &mut all);
    all.sort_by(|a, b| a.path.cmp(&b.path));
    if file.group(wanted).is_ok() {
        let inside: Vec<&DatasetInfo> = all
            .iter()
            .filter(|d| {
                d.path
                    .starts_with(&format!("{}/", wanted.trim_end_matches('/')))
            })
            .take(20)
            .collect();
        return Error::InvalidInput(format!(
            "{name}:{wanted} is a group, not a dataset; name one of its datasets:{}",
            listing(&inside, name)
        ));
    }
    let close = close_names(wanted, &all);
    if !close.is_empty() {
        return Error::InvalidInput(format!(
            "{name}: no dataset {wanted}; did you mean:{}",
            listing(&close, name)
        ));
    }
    let floats: Vec<&DatasetInfo> = all.iter().filter(|d| d.is_float()).take(20).collect();
    if floats.is_empty() {
        Error::InvalidInput(format!(
            "{name}: no dataset {wanted}, and no float dataset in the file"
        ))
    } else {
        Error::InvalidInput(format!(
            "{name}: no dataset {wanted}; its float datasets are:{}",
            listing(&floats, name)
        ))
    }
}

impl Source {
    /// The dataset's own element type, shape, chunks and filters in one line, for messages.
    pub fn describe(&self) -> String {
        let mut s = crate::array::shape_string(&self.shape);
        match &self.chunk {
            Some(c) => s.push_str(&format!(", chunks {}", crate::array::shape_string(c))),
            None => s.push_str(", contiguous"),
        }
        if !self.filters.is_empty() {
            s.push_str(&format!(", {}", self.filters.join(" + ")));
        }
        s
    }

    /// Reads the dataset elements `[a, b)` (C order) into `out` (exactly their size).
    fn read_range(&self, a: u64, b: u64, out: &mut [u8]) -> io::Result<()> {
        let mut at = 0;
        for block in blocks(&self.shape, a, b) {
            let n = block.elements() as usize * self.elem_bytes;
            ffi::read_block(&self.ds, &self.memtype, &block, &mut out[at..at + n]).map_err(
                |e| {
                    let hint = if self.filters.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (the dataset is filtered with {}: is the HDF5 filter plugin \
                             installed, and HDF5_PLUGIN_PATH set to it?)",
                            self.filters.join(" + ")
                        )
                    };
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: reading elements {a}..{b}: {e}{hint}", self.name),
                    )
                },
            )?;
            at += n;
        }
        Ok(())
    }

    /// Reads values from `first_value` (a multiple of the values per element; row-major) as
    /// little-endian bytes, filling `out` (a whole number of elements).
    pub fn read_values(&self, first_value: u64, out: &mut [u8]) -> Result<()> {
        let vpe = self.values_per_elem as u64;
        if !first_value.is_multiple_of(vpe) || !out.len().is_multiple_of(self.elem_bytes) {
            return Err(Error::Internal(format!(
                "{}: unaligned read of values from {first_value}",
                self.name
            )));
        }
        let a = first_value / vpe;
        let b = a + (out.len() / self.elem_bytes) as u64;
        Ok(self.read_range(a, b, out)?)
    }

    /// A reader of every value, in C order, as little-endian bytes.
    pub fn reader(&self) -> H5Reader {
        self.reader_with_window(slab::window_elements(
            &self.shape,
            self.elem_bytes as u64,
            self.chunk.as_deref(),
        ))
    }

    /// A reader of values `first .. first + count` (whole dataset elements), in C order, as
    /// little-endian bytes.
    pub fn range_reader(&self, first: u64, count: u64) -> Result<H5Reader> {
        let vpe = self.values_per_elem as u64;
        let total: u64 = self.shape.iter().product();
        if !first.is_multiple_of(vpe) || !count.is_multiple_of(vpe) || (first + count) / vpe > total
        {
            return Err(Error::Internal(format!(
                "{}: a range of values {first}..{} that is not whole elements of the dataset",
                self.name,
                first + count
            )));
        }
        let mut r = self.reader();
        r.pos = first / vpe;
        r.end = (first + count) / vpe;
        Ok(r)
    }

    /// A reader with windows of `window` dataset elements (tests try windows that do not
    /// follow the chunking).
    #[doc(hidden)]
    pub fn reader_with_window(&self, window: u64) -> H5Reader {
        H5Reader {
            source: self.clone(),
            pos: 0,
            end: self.shape.iter().product(),
            window: window.max(1),
            buf: Vec::new(),
            at: 0,
        }
    }
}

/// Reads a dataset's values front to back, in windows that follow its chunking (see
/// [`slab::window_elements`]). A contiguous dataset is read straight into the caller's buffer
/// when it is large enough, with no copy in between.
pub struct H5Reader {
    source: Source,
    pos: u64,
    end: u64,
    window: u64,
    buf: Vec<u8>,
    at: usize,
}

impl std::fmt::Debug for H5Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H5Reader")
            .field("source", &self.source.name)
            .field("pos", &self.pos)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl Read for H5Reader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let eb = self.source.elem_bytes;
        if self.at == self.buf.len() {
            if self.pos == self.end || out.is_empty() {
                return Ok(0);
            }
            if self.source.chunk.is_none() && out.len() >= eb {
                let n = ((out.len() / eb) as u64)
                    .min(self.end - self.pos)
                    .min(self.window);
                let bytes = n as usize * eb;
                self.source
                    .read_range(self.pos, self.pos + n, &mut out[..bytes])?;
                self.pos += n;
                return Ok(bytes);
            }
            let next = self.end.min((self.pos / self.window + 1) * self.window);
            self.buf.resize((next - self.pos) as usize * eb, 0);
            self.source.read_range(self.pos, next, &mut self.buf)?;
            self.pos = next;
            self.at = 0;
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_suggestions() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        let info = |p: &str| DatasetInfo {
            path: p.into(),
            shape: vec![1],
            type_name: "float32".into(),
            content: Content::Floats(DType::F32),
            chunks: None,
            filters: vec![],
        };
        let all = vec![
            info("/tables/gzip"),
            info("/tables/contiguous"),
            info("/x/data"),
        ];
        let close: Vec<&str> = close_names("/tables/gzpi", &all)
            .iter()
            .map(|d| d.path.as_str())
            .collect();
        assert_eq!(close, ["/tables/gzip"]);
        let close: Vec<&str> = close_names("/data", &all)
            .iter()
            .map(|d| d.path.as_str())
            .collect();
        assert_eq!(close, ["/x/data"]);
        assert!(close_names("/something/else", &all).is_empty());
    }
}
