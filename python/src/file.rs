//! Files from Python: `compress_file` and `decompress_file` stream any input the command line
//! reads (`.npy`, raw values with `dtype` and `shape`; HDF5 where the wheel is built with it)
//! in bounded memory, the GIL released; `evaluate` gives the command line's figures of a
//! container against its original.

use std::fs::File;
use std::io::{BufReader, Cursor, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use baler::container::SourceFormat;
use baler::evaluate::{ColumnMetrics, Evaluation};
use baler::io::output::{OutputFile, ValueFormat, ValueWriter};
use baler::io::{Input, RawFormat};
use baler::{CompressOptions, DType, DecompressOptions, Decompressor, Element, Layout};

use crate::model::{Training, train_sample};
use crate::{BalerError, ModelArg, err};

/// The file an input argument reads: `FILE.h5:/dataset` reads `FILE.h5`.
fn input_file(arg: &str) -> &str {
    baler::io::hdf5::split_dataset_path(arg).map_or(arg, |(f, _)| f)
}

fn dtype_of(s: &str) -> PyResult<DType> {
    match s {
        "f4" | "<f4" | "float32" | "f32" => Ok(DType::F32),
        "f8" | "<f8" | "float64" | "f64" => Ok(DType::F64),
        _ => Err(BalerError::new_err(format!(
            "dtype={s:?}: baler reads float32 or float64 values"
        ))),
    }
}

/// `baler.compress_file` (see pysrc/baler/__init__.py).
#[pyfunction]
#[pyo3(signature = (src, dst=None, bound=None, bounds=None, names=None, model=None, effort=3, threads=None, layout=None, chunk_size=None, dtype=None, shape=None, dataset=None, force=false))]
#[allow(clippy::too_many_arguments)]
pub fn compress_file<'py>(
    py: Python<'py>,
    src: PathBuf,
    dst: Option<PathBuf>,
    bound: Option<&str>,
    bounds: Option<&Bound<'py, PyAny>>,
    names: Option<Vec<String>>,
    model: Option<&Bound<'py, PyAny>>,
    effort: u8,
    threads: Option<usize>,
    layout: Option<&str>,
    chunk_size: Option<usize>,
    dtype: Option<&str>,
    shape: Option<Vec<i64>>,
    dataset: Option<String>,
    force: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let effort = crate::check_effort(effort)?;
    let bounds = crate::bounds_from(bound, bounds)?;
    let model = ModelArg::from_py(model)?;
    let layout: Option<Layout> = layout.map(str::parse).transpose().map_err(err)?;
    let raw = RawFormat {
        dtype: dtype.map(dtype_of).transpose()?,
        shape,
        dataset,
    };
    let src_s = src.to_string_lossy().into_owned();
    let open = || Input::open(&src_s, &raw).map_err(err);
    let job = Job {
        src: &src_s,
        dst,
        bounds,
        names,
        model,
        effort,
        threads,
        layout,
        chunk_size,
        force,
    };
    run(py, job, open)
}

/// `_baler.compress_stream`: values read from a Python object's `read(n)` (little-endian
/// bytes of `dtype`, `shape`), as `baler compress -` reads standard input: one pass, the
/// ranges of a `rel` bound from the first chunks. `baler.compress_file` feeds HDF5 datasets
/// read by h5py through it.
#[pyfunction]
#[pyo3(signature = (reader, name, dst, dtype, shape, bound=None, bounds=None, names=None, model=None, threads=None, layout=None, chunk_size=None, force=false))]
#[allow(clippy::too_many_arguments)]
pub fn compress_stream<'py>(
    py: Python<'py>,
    reader: Py<PyAny>,
    name: String,
    dst: PathBuf,
    dtype: &str,
    shape: Vec<i64>,
    bound: Option<&str>,
    bounds: Option<&Bound<'py, PyAny>>,
    names: Option<Vec<String>>,
    model: Option<&Bound<'py, PyAny>>,
    threads: Option<usize>,
    layout: Option<&str>,
    chunk_size: Option<usize>,
    force: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let bounds = crate::bounds_from(bound, bounds)?;
    let model = ModelArg::from_py(model)?;
    let layout: Option<Layout> = layout.map(str::parse).transpose().map_err(err)?;
    let raw = RawFormat {
        dtype: Some(dtype_of(dtype)?),
        shape: Some(shape),
        dataset: None,
    };
    let open = move || {
        let r = std::io::BufReader::with_capacity(1 << 20, PyReader(reader));
        Input::from_stream(name, Box::new(r), &raw).map_err(err)
    };
    let job = Job {
        src: "-",
        dst: Some(dst),
        bounds,
        names,
        model,
        effort: 1,
        threads,
        layout,
        chunk_size,
        force,
    };
    run(py, job, open)
}

/// A Python object's `read(n)` as a reader (the GIL taken for each call).
struct PyReader(Py<PyAny>);

impl Read for PyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        Python::attach(|py| {
            let got = self
                .0
                .call_method1(py, "read", (buf.len(),))
                .and_then(|b| b.extract::<Vec<u8>>(py))
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let n = got.len().min(buf.len());
            buf[..n].copy_from_slice(&got[..n]);
            Ok(n)
        })
    }
}

/// What to compress, and how (the arguments of `compress_file` and `compress_stream`).
struct Job<'a> {
    src: &'a str,
    dst: Option<PathBuf>,
    bounds: baler::Bounds,
    names: Option<Vec<String>>,
    model: Option<ModelArg>,
    effort: u8,
    threads: Option<usize>,
    layout: Option<Layout>,
    chunk_size: Option<usize>,
    force: bool,
}

/// Opens the input, trains and scans it where it is a file, compresses it into the output
/// file (committed when complete), the GIL released; returns the summary.
fn run<'py>(
    py: Python<'py>,
    job: Job<'_>,
    open: impl FnOnce() -> PyResult<Input> + Send,
) -> PyResult<Bound<'py, PyDict>> {
    let Job {
        src: src_s,
        dst,
        bounds,
        names,
        model,
        effort,
        threads,
        layout,
        chunk_size,
        force,
    } = job;
    let started = Instant::now();
    let done = py.detach(|| -> PyResult<_> {
        let mut input = open()?;
        let spec = input.spec(layout, names.unwrap_or_default()).map_err(err)?;
        let mut options = CompressOptions::new(bounds).threads(threads.unwrap_or(0));
        if let Some(n) = chunk_size {
            options = options.chunk_bytes(n);
        }
        options.source = input.format;
        options.source_path = input.source_path.clone();
        match model {
            None => {}
            Some(ModelArg::Given(m, name)) => {
                ModelArg::check(&m, &name, &spec)?;
                options = options.model(m);
            }
            // As `baler compress`: a table file's records sampled where they lie, a stream's
            // first records read ahead.
            Some(ModelArg::Auto) if spec.layout == Layout::Table && spec.shape.len() == 2 => {
                let mut t = Training::for_effort(effort, spec.shape[0]);
                let width = spec.shape[1] as usize;
                if t.sample > 0 {
                    let sample = input
                        .training_sample(width, t.sample, t.seed)
                        .map_err(err)?;
                    let raw_bytes;
                    (t.records, raw_bytes) = input.coded_extent(sample.len());
                    options.model =
                        train_sample(&sample, &spec, &options, raw_bytes, &t).map_err(err)?;
                }
            }
            Some(ModelArg::Auto) => {}
        }
        // A `rel` bound needs each column's range: a file gets a pre-pass for it.
        if input.can_scan() && options.bounds.needs_range() {
            options.stats = Some(
                input
                    .scan_stats(
                        spec.bound_columns(),
                        baler::compress::resolve_threads(threads.unwrap_or(0)),
                    )
                    .map_err(err)?,
            );
        }
        let dst = dst.unwrap_or_else(|| format!("{}.baler", input_file(src_s)).into());
        if src_s != "-" {
            baler::io::output::refuse_input_as_output(Path::new(input_file(src_s)), &dst)
                .map_err(err)?;
        }
        let out = OutputFile::create(&dst, force).map_err(err)?;
        let mut c = baler::Compressor::new(out, spec, options).map_err(err)?;
        let name = input.name.clone();
        c.read_from(input.into_reader())
            .map_err(|e| BalerError::new_err(format!("reading {name}: {e}")))?;
        let f = c
            .finish_detailed()
            .map_err(|e| BalerError::new_err(format!("compressing {name}: {e}")))?;
        let bytes_in = f.records * f.header.record_len * f.header.spec.dtype.size() as u64;
        let summary = (
            dst.clone(),
            f.records,
            f.chunks,
            bytes_in,
            f.bytes_out,
            f.header.model.len(),
        );
        f.writer
            .commit()
            .map_err(|e| BalerError::new_err(format!("writing {}: {e}", dst.display())))?;
        Ok(summary)
    })?;
    let (dst, records, chunks, bytes_in, bytes_out, model_bytes) = done;
    let d = PyDict::new(py);
    d.set_item("output", dst)?;
    d.set_item("records", records)?;
    d.set_item("chunks", chunks)?;
    d.set_item("bytes_in", bytes_in)?;
    d.set_item("bytes_out", bytes_out)?;
    d.set_item("ratio", bytes_in as f64 / bytes_out.max(1) as f64)?;
    d.set_item("model_bytes", model_bytes)?;
    d.set_item("seconds", started.elapsed().as_secs_f64())?;
    Ok(d)
}

/// `baler.decompress_file` (see pysrc/baler/__init__.py).
#[pyfunction]
#[pyo3(signature = (src, dst=None, force=false, threads=None))]
pub fn decompress_file<'py>(
    py: Python<'py>,
    src: PathBuf,
    dst: Option<PathBuf>,
    force: bool,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    let started = Instant::now();
    let dst = match dst {
        Some(d) => d,
        None => match src.to_str().and_then(|s| s.strip_suffix(".baler")) {
            Some(stem) if !stem.is_empty() => stem.into(),
            _ => {
                return Err(BalerError::new_err(format!(
                    "cannot name the output of {}: it does not end in .baler; give dst=",
                    src.display()
                )));
            }
        },
    };
    let (values, dtype, shape) = py.detach(|| -> PyResult<_> {
        let f = File::open(&src).map_err(|e| {
            BalerError::new_err(format!(
                "cannot open {}: {}",
                src.display(),
                baler::io::io_reason(&e)
            ))
        })?;
        let options = DecompressOptions {
            threads: threads.unwrap_or(0),
            ..Default::default()
        };
        let name = src.display().to_string();
        let ctx = |e: baler::Error| BalerError::new_err(format!("decompressing {name}: {e}"));
        let mut d = Decompressor::with_options(BufReader::with_capacity(1 << 20, f), options)
            .map_err(|e| BalerError::new_err(format!("reading {name}: {e}")))?;
        let header = d.header().clone();
        let format = ValueFormat::from_extension(&dst).unwrap_or(match header.source {
            SourceFormat::Npy => ValueFormat::Npy,
            _ => ValueFormat::Raw,
        });
        if format == ValueFormat::Hdf5 {
            return Err(BalerError::new_err(format!(
                "{}: HDF5 outputs are written through h5py (baler.decompress_file does so when \
                 h5py is installed)",
                dst.display()
            )));
        }
        baler::io::output::refuse_input_as_output(&src, &dst).map_err(err)?;
        let out = OutputFile::create(&dst, force).map_err(err)?;
        let mut w = ValueWriter::new(out, format, header.spec.dtype, header.spec.shape.clone())
            .map_err(err)?;
        let mut values = 0u64;
        while let Some(chunk) = d.next_chunk().map_err(ctx)? {
            w.write_le(&chunk.as_le_bytes()).map_err(ctx)?;
            values += chunk.len() as u64;
            d.recycle(chunk);
        }
        d.finish().map_err(ctx)?;
        w.finish_seekable()
            .map_err(ctx)?
            .commit()
            .map_err(|e| BalerError::new_err(format!("writing {}: {e}", dst.display())))?;
        Ok((values, header.spec.dtype, header.spec.shape.clone()))
    })?;
    let d = PyDict::new(py);
    d.set_item("output", dst)?;
    d.set_item("values", values)?;
    d.set_item("bytes_out", values * dtype.size() as u64)?;
    d.set_item("dtype", crate::container::numpy_dtype(dtype))?;
    d.set_item("shape", crate::container::shape_tuple(&shape, values))?;
    d.set_item("seconds", started.elapsed().as_secs_f64())?;
    Ok(d)
}

/// The container to evaluate: its bytes, or a file.
fn open_compressed(c: &Bound<'_, PyAny>) -> PyResult<(Box<dyn Read + Send>, u64, String)> {
    if let Ok(b) = c.cast::<PyBytes>() {
        let bytes = b.as_bytes().to_vec();
        let n = bytes.len() as u64;
        return Ok((Box::new(Cursor::new(bytes)), n, "the container".into()));
    }
    let path: PathBuf = c.extract().map_err(|_| {
        BalerError::new_err("compressed= takes a container's bytes or a .baler file's path")
    })?;
    let f = File::open(&path).map_err(|e| {
        BalerError::new_err(format!(
            "cannot open {}: {}",
            path.display(),
            baler::io::io_reason(&e)
        ))
    })?;
    let n = f.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((
        Box::new(BufReader::with_capacity(1 << 20, f)),
        n,
        path.display().to_string(),
    ))
}

/// `baler.evaluate` (see pysrc/baler/__init__.py): the original array against the container,
/// chunk by chunk.
#[pyfunction]
#[pyo3(signature = (original, compressed, threads=None))]
pub fn evaluate<'py>(
    py: Python<'py>,
    original: &Bound<'py, PyAny>,
    compressed: &Bound<'py, PyAny>,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    let (reader, compressed_bytes, name) = open_compressed(compressed)?;
    let options = DecompressOptions {
        threads: threads.unwrap_or(0),
        ..Default::default()
    };
    let d = Decompressor::with_options(reader, options)
        .map_err(|e| BalerError::new_err(format!("reading {name}: {e}")))?;
    let header = d.header().clone();
    fn go<T: Element + numpy::Element, R: Read + Send + 'static>(
        py: Python<'_>,
        a: &PyReadonlyArrayDyn<'_, T>,
        mut d: Decompressor<R>,
        name: &str,
    ) -> PyResult<Vec<ColumnMetrics>> {
        let orig = crate::in_place(a)?;
        let header = d.header().clone();
        let expected = header.spec.shape.iter().map(|&s| s as usize);
        if a.shape().len() != header.spec.shape.len()
            || !a.shape()[1..].iter().copied().eq(expected.skip(1))
        {
            return Err(BalerError::new_err(format!(
                "the original ({:?}) is not the array {name} was compressed from ({})",
                a.shape(),
                header.spec.shape_string()
            )));
        }
        py.detach(|| {
            let mut eval = Evaluation::for_header(&header);
            let mut at = 0usize;
            while let Some(chunk) = d
                .next_chunk()
                .map_err(|e| BalerError::new_err(format!("decompressing {name}: {e}")))?
            {
                let decoded: &[T] = chunk.values().expect("the container's element type");
                let Some(part) = orig.get(at..at + decoded.len()) else {
                    return Err(BalerError::new_err(format!(
                        "{name} holds more values than the original's {}: is it the array it \
                         was compressed from?",
                        orig.len()
                    )));
                };
                eval.add(part, decoded);
                at += decoded.len();
                d.recycle(chunk);
            }
            d.finish()
                .map_err(|e| BalerError::new_err(format!("decompressing {name}: {e}")))?;
            if at != orig.len() {
                return Err(BalerError::new_err(format!(
                    "the original holds {} values, {name} {at}: is it the array it was \
                     compressed from?",
                    orig.len()
                )));
            }
            Ok(eval.finish())
        })
    }
    let (columns, itemsize) = match header.spec.dtype {
        DType::F32 => {
            let a = original
                .extract::<PyReadonlyArrayDyn<'py, f32>>()
                .map_err(|_| not_same_dtype(&name, "float32"))?;
            (go(py, &a, d, &name)?, 4u64)
        }
        DType::F64 => {
            let a = original
                .extract::<PyReadonlyArrayDyn<'py, f64>>()
                .map_err(|_| not_same_dtype(&name, "float64"))?;
            (go(py, &a, d, &name)?, 8u64)
        }
    };
    let out = PyDict::new(py);
    let values: u64 = columns.iter().map(|c| c.count).sum();
    let original_bytes = values * itemsize;
    out.set_item("dtype", crate::container::numpy_dtype(header.spec.dtype))?;
    out.set_item(
        "shape",
        crate::container::shape_tuple(&header.spec.shape, values),
    )?;
    out.set_item("layout", header.spec.layout.to_string())?;
    out.set_item("original_bytes", original_bytes)?;
    out.set_item("compressed_bytes", compressed_bytes)?;
    out.set_item(
        "ratio",
        original_bytes as f64 / compressed_bytes.max(1) as f64,
    )?;
    out.set_item("model_bytes", header.model.len())?;
    out.set_item("bound_met", columns.iter().all(ColumnMetrics::bound_met))?;
    out.set_item(
        "worst_error_over_bound",
        columns
            .iter()
            .map(ColumnMetrics::error_over_bound)
            .fold(0.0f64, f64::max),
    )?;
    let list = PyList::empty(py);
    for (j, c) in columns.iter().enumerate() {
        let m = PyDict::new(py);
        let name = match header.spec.layout {
            Layout::Table => header
                .spec
                .column_names
                .get(j)
                .cloned()
                .unwrap_or_else(|| format!("col{j}")),
            Layout::Field => "field".into(),
        };
        m.set_item("name", name)?;
        m.set_item("bound", header.bounds[j].to_string())?;
        m.set_item("count", c.count)?;
        m.set_item("finite", c.finite)?;
        m.set_item("nonfinite", c.nonfinite)?;
        m.set_item("special_mismatches", c.special_mismatches)?;
        m.set_item("violations", c.violations)?;
        m.set_item("first_violation_at", c.first_violation_at)?;
        m.set_item("bound_met", c.bound_met())?;
        m.set_item("max_abs_error", c.max_abs_error)?;
        m.set_item("max_error_at", c.max_error_at)?;
        m.set_item("max_rel_error", c.max_rel_error)?;
        m.set_item("max_error_over_bound", c.error_over_bound())?;
        m.set_item("min", c.min)?;
        m.set_item("max", c.max)?;
        m.set_item("rmse", c.rmse())?;
        m.set_item("psnr_db", c.psnr_db())?;
        m.set_item("residual_mean", c.residual_mean())?;
        m.set_item("residual_rms", c.residual_rms())?;
        m.set_item("response_mean", c.response_mean())?;
        m.set_item("response_rms", c.response_rms())?;
        list.append(m)?;
    }
    out.set_item("columns", list)?;
    Ok(out)
}

fn not_same_dtype(name: &str, dtype: &str) -> PyErr {
    BalerError::new_err(format!(
        "{name} holds {dtype} values: the original must be a numpy array of {dtype}"
    ))
}
