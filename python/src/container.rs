//! `baler.open(path)`: a container file read lazily. The header is read at once; values are
//! decoded only for the chunks a read needs, found through the footer index (random access by
//! record range), each chunk's checksums verified as it is read.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::Mutex;

use numpy::{PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PySlice, PyTuple};

use baler::container::{Header, Trailer, read_chunk_at, read_trailer, verify_trailer};
use baler::{DType, Element, Layout, UNKNOWN, decompress_chunk};

use crate::{BalerError, model::PyModel};

/// NumPy's name of an element type.
pub fn numpy_dtype(d: DType) -> &'static str {
    match d {
        DType::F32 => "float32",
        DType::F64 => "float64",
    }
}

/// A shape as a tuple, an unknown first dimension resolved from the values held.
pub fn shape_tuple(shape: &[u64], values: u64) -> Vec<u64> {
    let mut s = shape.to_vec();
    if s.first() == Some(&UNKNOWN) {
        let rest: u64 = s[1..].iter().product();
        s[0] = values / rest.max(1);
    }
    s
}

/// A baler container opened for reading (`baler.open(path)`). `c[a:b]` (or `c.read(a, b)`)
/// decodes the rows `a..b` along the first axis (a table's records, a field's slices) from the
/// chunks that hold them; `c[:]` the whole array; `c.chunk(k)` one chunk's records.
#[pyclass(name = "Container", module = "baler")]
pub struct Container {
    path: PathBuf,
    header: Header,
    trailer: Trailer,
    /// The first dimension, resolved for a container written from a stream.
    rows: u64,
    file: Mutex<Option<File>>,
}

impl Container {
    /// Values per row (the product of the shape's other dimensions).
    fn row_len(&self) -> u64 {
        self.header.spec.shape[1..].iter().product::<u64>()
    }

    fn dims(&self) -> Vec<u64> {
        let mut s = self.header.spec.shape.clone();
        s[0] = self.rows;
        s
    }

    /// Decodes the values `first..end` (flat) into `out`.
    fn decode_into<T: Element>(&self, first: u64, end: u64, out: &mut Vec<T>) -> PyResult<()> {
        let mut guard = self.file.lock().expect("the file's lock");
        let f = guard.as_mut().ok_or_else(|| {
            BalerError::new_err(format!("{}: the container is closed", self.path.display()))
        })?;
        let record_len = self.header.record_len.max(1);
        let name = self.path.display();
        for (k, e) in self.trailer.index.iter().enumerate() {
            let (a, b) = (
                e.first_record * record_len,
                (e.first_record + u64::from(e.records)) * record_len,
            );
            if b <= first || a >= end {
                continue;
            }
            let frame = read_chunk_at(f, k as u64, e)
                .map_err(|e| BalerError::new_err(format!("{name}: {e}")))?;
            let chunk = decompress_chunk(&self.header, frame)
                .map_err(|e| BalerError::new_err(format!("{name}: chunk {k}: {e}")))?;
            let v: &[T] = chunk.values().expect("the container's element type");
            let (lo, hi) = (first.max(a) - a, end.min(b) - a);
            let part = v.get(lo as usize..hi as usize).ok_or_else(|| {
                BalerError::new_err(format!(
                    "{name}: chunk {k} holds {} values, not the {} its index says",
                    v.len(),
                    b - a
                ))
            })?;
            out.extend_from_slice(part);
        }
        Ok(())
    }

    fn read_rows<'py>(
        &self,
        py: Python<'py>,
        start: u64,
        stop: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let row = self.row_len();
        let (first, end) = (start * row, stop.max(start) * row);
        let mut shape: Vec<usize> = self.dims().iter().map(|&d| d as usize).collect();
        shape[0] = (stop.max(start) - start) as usize;
        Ok(match self.header.spec.dtype {
            DType::F32 => {
                let mut v = Vec::<f32>::with_capacity((end - first) as usize);
                py.detach(|| self.decode_into(first, end, &mut v))?;
                PyArray1::from_vec(py, v).reshape(shape)?.into_any()
            }
            DType::F64 => {
                let mut v = Vec::<f64>::with_capacity((end - first) as usize);
                py.detach(|| self.decode_into(first, end, &mut v))?;
                PyArray1::from_vec(py, v).reshape(shape)?.into_any()
            }
        })
    }
}

#[pymethods]
impl Container {
    #[new]
    fn new(path: PathBuf) -> PyResult<Container> {
        let name = path.display().to_string();
        let open = || -> baler::Result<(Header, Trailer, File)> {
            let mut f = File::open(&path).map_err(|e| {
                baler::Error::InvalidInput(format!("cannot open: {}", baler::io::io_reason(&e)))
            })?;
            let header = Header::read_from(&mut BufReader::new(&mut f))?;
            let trailer = read_trailer(&mut f)?;
            // The footer's index is checked against the chunks' own headers before it is used.
            verify_trailer(&mut f, &trailer)?;
            Ok((header, trailer, f))
        };
        let (header, trailer, f) =
            open().map_err(|e| BalerError::new_err(format!("{name}: {e}")))?;
        let values = trailer.records.saturating_mul(header.record_len);
        let rows = shape_tuple(&header.spec.shape, values)[0];
        Ok(Container {
            path,
            header,
            trailer,
            rows,
            file: Mutex::new(Some(f)),
        })
    }

    /// The values' NumPy dtype name ("float32" or "float64").
    #[getter]
    fn dtype(&self) -> &'static str {
        numpy_dtype(self.header.spec.dtype)
    }

    /// The array's shape.
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.dims())
    }

    /// "table" or "field".
    #[getter]
    fn layout(&self) -> String {
        self.header.spec.layout.to_string()
    }

    /// A table's column names (empty if none were given).
    #[getter]
    fn names(&self) -> Vec<String> {
        self.header.spec.column_names.clone()
    }

    /// Each bound column's bound as resolved (a table's columns; one for a field).
    #[getter]
    fn bounds(&self) -> Vec<String> {
        self.header.bounds.iter().map(|b| b.to_string()).collect()
    }

    /// Chunks in the file.
    #[getter]
    fn chunks(&self) -> u64 {
        self.trailer.chunks
    }

    /// Per chunk: its first row and rows (along the first axis).
    #[getter]
    fn chunk_rows(&self) -> Vec<(u64, u64)> {
        let (rl, row) = (self.header.record_len.max(1), self.row_len().max(1));
        self.trailer
            .index
            .iter()
            .map(|e| (e.first_record * rl / row, u64::from(e.records) * rl / row))
            .collect()
    }

    /// The learned predictor the file carries, or None.
    #[getter]
    fn model(&self) -> PyResult<Option<PyModel>> {
        if self.header.model.is_empty() || self.header.spec.layout != Layout::Table {
            return Ok(None);
        }
        let width = self.header.spec.shape[1] as usize;
        baler::model::Model::read(&self.header.model, width)
            .map(|inner| Some(PyModel { inner }))
            .map_err(|e| BalerError::new_err(format!("{}: its model: {e}", self.path.display())))
    }

    /// The container format version and the baler that wrote it.
    #[getter]
    fn version(&self) -> (u16, String) {
        (self.header.version, self.header.writer.clone())
    }

    /// Bytes of the decoded array.
    #[getter]
    fn nbytes(&self) -> u64 {
        self.dims().iter().product::<u64>() * self.header.spec.dtype.size() as u64
    }

    /// Rows `start..stop` along the first axis, decoded from the chunks that hold them.
    #[pyo3(signature = (start=0, stop=None))]
    fn read<'py>(
        &self,
        py: Python<'py>,
        start: u64,
        stop: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let stop = stop.unwrap_or(self.rows).min(self.rows);
        self.read_rows(py, start.min(stop), stop)
    }

    /// Chunk `k`'s rows.
    fn chunk<'py>(&self, py: Python<'py>, k: usize) -> PyResult<Bound<'py, PyAny>> {
        let rows = self.chunk_rows();
        let &(first, n) = rows.get(k).ok_or_else(|| {
            pyo3::exceptions::PyIndexError::new_err(format!(
                "chunk {k}: the file has {}",
                rows.len()
            ))
        })?;
        self.read_rows(py, first, first + n)
    }

    fn __len__(&self) -> usize {
        self.rows as usize
    }

    /// `c[a:b]`, `c[i]`, `c[a:b, ...]` (the first axis decoded, the rest applied by NumPy).
    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (first, rest) = match key.cast::<PyTuple>() {
            Ok(t) if !t.is_empty() => (t.get_item(0)?, Some(t.get_slice(1, t.len()))),
            _ => (key.clone(), None),
        };
        let n = self.rows as isize;
        let part = if let Ok(s) = first.cast::<PySlice>() {
            let ind = s.indices(n)?;
            if ind.step == 1 {
                let (a, b) = (ind.start as u64, (ind.stop.max(ind.start)) as u64);
                self.read_rows(py, a, b)?
            } else {
                // Steps other than 1: the span decoded, then stepped by NumPy.
                let (lo, hi) = if ind.step > 0 {
                    (ind.start, ind.stop.max(ind.start))
                } else {
                    (ind.stop + 1, ind.start + 1)
                };
                let span = self.read_rows(py, lo.max(0) as u64, hi.max(lo).max(0) as u64)?;
                let local = PySlice::new(
                    py,
                    ind.start - lo,
                    if ind.stop - lo < 0 && ind.step < 0 {
                        isize::MIN / 2
                    } else {
                        ind.stop - lo
                    },
                    ind.step,
                );
                span.get_item(local)?
            }
        } else {
            let i: isize = first.extract().map_err(|_| {
                pyo3::exceptions::PyTypeError::new_err(
                    "a container is indexed by an integer or a slice along its first axis",
                )
            })?;
            let i = if i < 0 { i + n } else { i };
            if !(0..n).contains(&i) {
                return Err(pyo3::exceptions::PyIndexError::new_err(format!(
                    "index {i} is out of range for {n} rows"
                )));
            }
            self.read_rows(py, i as u64, i as u64 + 1)?.get_item(0)?
        };
        match rest {
            Some(rest) if !rest.is_empty() => {
                let all = PySlice::full(py);
                let mut items = vec![all.into_any()];
                if part.getattr("ndim")?.extract::<usize>()? < self.header.spec.shape.len() {
                    items.clear();
                }
                items.extend(rest.iter());
                part.get_item(PyTuple::new(py, items)?)
            }
            _ => Ok(part),
        }
    }

    /// Closes the file (reads then fail).
    fn close(&self) {
        *self.file.lock().expect("the file's lock") = None;
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        _t: &Bound<'_, PyAny>,
        _v: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> bool {
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "<baler.Container {}: {} {} {}, {} chunks>",
            self.path.display(),
            self.header.spec.layout,
            numpy_dtype(self.header.spec.dtype),
            baler::array::shape_string(&self.dims()),
            self.trailer.chunks
        )
    }
}
