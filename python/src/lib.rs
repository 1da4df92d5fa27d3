//! `baler._baler`: the engine's calls for the `baler` Python package (`pysrc/baler/`), which
//! documents them. NumPy arrays come in without a copy (C-contiguous float32/float64 buffers),
//! the GIL is released while the engine runs, and the engine's errors are raised as
//! `baler.BalerError` (a `ValueError`) with the command line's messages.

mod container;
mod file;
mod model;

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use baler::{ArrayData, ArraySpec, BoundSpec, Bounds, BoundsFile, CompressOptions, DType, Element};

/// The engine's large blocks (chunk buffers, a worker's scratch) on transparent huge pages, as
/// in the command line (`baler::alloc`): the module's own Rust allocations only.
#[global_allocator]
static ALLOCATOR: baler::alloc::HugePages = baler::alloc::HugePages;

create_exception!(
    _baler,
    BalerError,
    PyValueError,
    "An error of the baler engine (bad input, a damaged container, a bound that cannot be parsed)."
);

fn err(e: baler::Error) -> PyErr {
    BalerError::new_err(e.to_string())
}

/// An array's values, read in place (no copy).
fn in_place<'a, T: numpy::Element>(a: &'a PyReadonlyArrayDyn<'_, T>) -> PyResult<&'a [T]> {
    a.as_slice().map_err(|_| {
        BalerError::new_err(
            "the array is not C-contiguous and aligned (numpy.require(a, requirements='CA') \
             makes it so)",
        )
    })
}

/// The bounds: `bound` for every column, then `bounds` (a bounds file's path, or a mapping of
/// column (index, name or glob) to spec), later entries winning, as the command line's
/// `--bound`, `--bounds` and `--bound-col`.
fn bounds_from(bound: Option<&str>, bounds: Option<&Bound<'_, PyAny>>) -> PyResult<Bounds> {
    let default = match bound {
        Some(b) => Some(b.parse::<BoundSpec>().map_err(err)?),
        None => None,
    };
    let mut out = Bounds::new(default.unwrap_or(BoundSpec::Lossless));
    let Some(bounds) = bounds else {
        if default.is_none() {
            return Err(BalerError::new_err(
                "a bound is required: bound='rel:1e-3' (abs:E, rel:R, pwrel:R, bits:N or lossless)",
            ));
        }
        return Ok(out);
    };
    if let Ok(map) = bounds.cast::<PyDict>() {
        if default.is_none() {
            return Err(BalerError::new_err(
                "give bound= for the columns the mapping does not name",
            ));
        }
        for (k, v) in map.iter() {
            let key = k.str()?.to_string();
            let spec: String = v.extract()?;
            out = out
                .with_override_str(&format!("{key}={spec}"))
                .map_err(err)?;
        }
        return Ok(out);
    }
    let path: std::path::PathBuf = bounds.extract().map_err(|_| {
        BalerError::new_err("bounds= takes a bounds file's path or a mapping {column: spec}")
    })?;
    let file = BoundsFile::read(&path).map_err(err)?;
    if default.is_none() && file.default.is_none() {
        return Err(BalerError::new_err(format!(
            "{} has no 'default SPEC' line: give one there, or bound= for the columns it does not name",
            path.display()
        )));
    }
    out = out.with_file(file);
    if let Some(d) = default {
        out.default = d;
    }
    Ok(out)
}

/// What an array's dtype and shape make of the call's arguments: its spec, the options, and
/// the training of its learned predictor where one is to be trained (`model="auto"`).
type Prepare<'a> =
    dyn Fn(DType, &[usize]) -> PyResult<(ArraySpec, CompressOptions, Option<model::Training>)> + 'a;

/// Compresses an array in place (its buffer, read without a copy), the GIL released; `prepare`
/// gives its spec and options from its dtype and shape.
fn compress_array<T: Element + numpy::Element>(
    py: Python<'_>,
    a: &PyReadonlyArrayDyn<'_, T>,
    prepare: &Prepare<'_>,
) -> PyResult<Vec<u8>> {
    let (spec, mut options, training) = prepare(T::DTYPE, a.shape())?;
    let values = in_place(a)?;
    py.detach(|| {
        if let Some(t) = &training {
            options.model = model::train_table(values, &spec, &options, t)?;
        }
        baler::compress_slice(values, &spec, &options)
    })
    .map_err(err)
}

/// The model argument of `compress` and `compress_file`: `"auto"` (trained at `effort` for a
/// table), `"none"`/`None`, a model file's path, its bytes, or a `baler.Model`.
pub(crate) enum ModelArg {
    Auto,
    Given(baler::model::Model, String),
}

impl ModelArg {
    fn from_py(model: Option<&Bound<'_, PyAny>>) -> PyResult<Option<ModelArg>> {
        let Some(model) = model else {
            return Ok(None);
        };
        if let Ok(m) = model.cast::<model::PyModel>() {
            return Ok(Some(ModelArg::Given(
                m.get().inner.clone(),
                "the model".into(),
            )));
        }
        if model.is_instance_of::<PyBytes>() {
            let bytes: Vec<u8> = model.extract()?;
            let m = baler::model::Model::from_file_bytes(&bytes)
                .map_err(|e| BalerError::new_err(format!("the model: {e}")))?;
            return Ok(Some(ModelArg::Given(m, "the model".into())));
        }
        if let Ok(s) = model.extract::<String>() {
            match s.as_str() {
                "auto" => return Ok(Some(ModelArg::Auto)),
                "none" => return Ok(None),
                _ => {}
            }
        }
        let path: std::path::PathBuf = model.extract().map_err(|_| {
            BalerError::new_err(
                "model= takes \"auto\", \"none\", a model file's path or contents, or a baler.Model",
            )
        })?;
        let m = baler::model::Model::load(&path)
            .map_err(|e| BalerError::new_err(format!("{}: {e}", path.display())))?;
        Ok(Some(ModelArg::Given(m, path.display().to_string())))
    }

    /// A given model, checked against the table it is to code.
    fn check(m: &baler::model::Model, name: &str, spec: &ArraySpec) -> PyResult<()> {
        if spec.layout != baler::Layout::Table
            || spec.shape.get(1) != Some(&(m.columns.len() as u64))
        {
            return Err(BalerError::new_err(format!(
                "{name}: the model is for tables of {} columns; the array is {}",
                m.columns.len(),
                spec.shape_string()
            )));
        }
        Ok(())
    }
}

#[pyfunction]
#[pyo3(signature = (array, bound=None, bounds=None, names=None, model=None, effort=3, threads=None, layout=None, chunk_size=None))]
#[allow(clippy::too_many_arguments)]
fn compress<'py>(
    py: Python<'py>,
    array: &Bound<'py, PyAny>,
    bound: Option<&str>,
    bounds: Option<&Bound<'py, PyAny>>,
    names: Option<Vec<String>>,
    model: Option<&Bound<'py, PyAny>>,
    effort: u8,
    threads: Option<usize>,
    layout: Option<&str>,
    chunk_size: Option<usize>,
) -> PyResult<Bound<'py, PyBytes>> {
    let effort = check_effort(effort)?;
    let mut options = CompressOptions::new(bounds_from(bound, bounds)?);
    options.threads = threads.unwrap_or(0);
    if let Some(n) = chunk_size {
        options = options.chunk_bytes(n);
    }
    let model = ModelArg::from_py(model)?;
    let prepare = |dtype: DType,
                   shape: &[usize]|
     -> PyResult<(ArraySpec, CompressOptions, Option<model::Training>)> {
        let mut spec = ArraySpec::new(dtype, shape.iter().map(|&d| d as u64).collect());
        if let Some(l) = layout {
            spec.layout = l.parse().map_err(err)?;
        }
        spec.column_names = names.clone().unwrap_or_default();
        let mut options = options.clone();
        let mut training = None;
        match &model {
            None => {}
            Some(ModelArg::Auto)
                if spec.layout == baler::Layout::Table && spec.shape.len() == 2 =>
            {
                training = Some(model::Training::for_effort(effort, spec.shape[0]));
            }
            Some(ModelArg::Auto) => {}
            Some(ModelArg::Given(m, name)) => {
                ModelArg::check(m, name, &spec)?;
                options = options.model(m.clone());
            }
        }
        Ok((spec, options, training))
    };
    let bytes = if let Ok(a) = array.extract::<PyReadonlyArrayDyn<'py, f32>>() {
        compress_array(py, &a, &prepare)?
    } else if let Ok(a) = array.extract::<PyReadonlyArrayDyn<'py, f64>>() {
        compress_array(py, &a, &prepare)?
    } else {
        return Err(BalerError::new_err(
            "baler compresses numpy arrays of float32 or float64",
        ));
    };
    Ok(PyBytes::new(py, &bytes))
}

/// An effort level, 1 to 9.
fn check_effort(effort: u8) -> PyResult<u8> {
    baler::model::budget::parse_effort(&effort.to_string()).map_err(BalerError::new_err)
}

/// Frees what the engine keeps between calls (`baler::release_scratch`): the codecs' scratch,
/// and the threads parked for the next call (waited for until they end, so a `fork` after it
/// copies a process with one thread).
#[pyfunction]
fn release_scratch() {
    baler::release_scratch();
}

/// The training sample (records) and network epochs `compress` affords a table of `records`
/// records at `effort` (the engine's budget, for readers that draw the sample themselves).
#[pyfunction]
fn train_budget(effort: u8, records: u64) -> PyResult<(usize, usize)> {
    let b = baler::model::budget::TrainBudget::new(check_effort(effort)?, records);
    Ok((b.sample, b.epochs))
}

#[pyfunction]
fn decompress<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    if let Some((header, values)) = baler::container_values(data) {
        // Decoded straight into NumPy's own buffer (which NumPy allocates with huge pages),
        // each worker writing its chunks' part.
        let mut shape: Vec<usize> = header.spec.shape.iter().map(|&d| d as usize).collect();
        shape[0] = (values / header.spec.slice_len().max(1)) as usize;
        return Ok(match header.spec.dtype {
            DType::F32 => decode_into_numpy::<f32>(py, data, shape)?.into_any(),
            DType::F64 => decode_into_numpy::<f64>(py, data, shape)?.into_any(),
        });
    }
    let (header, values) = py.detach(|| baler::decompress_to_vec(data)).map_err(err)?;
    let shape: Vec<usize> = header.spec.shape.iter().map(|&d| d as usize).collect();
    Ok(match values {
        ArrayData::F32(v) => PyArray1::from_vec(py, v).reshape(shape)?.into_any(),
        ArrayData::F64(v) => PyArray1::from_vec(py, v).reshape(shape)?.into_any(),
    })
}

/// Decodes `data` into a new NumPy array of `shape`, the GIL released.
fn decode_into_numpy<'py, T: Element + numpy::Element>(
    py: Python<'py>,
    data: &[u8],
    shape: Vec<usize>,
) -> PyResult<Bound<'py, numpy::PyArrayDyn<T>>> {
    let arr = numpy::PyArrayDyn::<T>::zeros(py, shape, false);
    {
        let mut rw = arr.readwrite();
        let out = rw.as_slice_mut().expect("a new array is contiguous");
        py.detach(|| baler::decompress_into(data, out, 0))
            .map_err(err)?;
    }
    Ok(arr)
}

#[pymodule]
fn _baler(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(compress, m)?)?;
    m.add_function(wrap_pyfunction!(decompress, m)?)?;
    m.add_function(wrap_pyfunction!(train_budget, m)?)?;
    m.add_function(wrap_pyfunction!(release_scratch, m)?)?;
    m.add_function(wrap_pyfunction!(model::train, m)?)?;
    m.add_function(wrap_pyfunction!(file::compress_file, m)?)?;
    m.add_function(wrap_pyfunction!(file::decompress_file, m)?)?;
    m.add_function(wrap_pyfunction!(file::compress_stream, m)?)?;
    m.add_function(wrap_pyfunction!(file::evaluate, m)?)?;
    m.add_class::<model::PyModel>()?;
    m.add_class::<container::Container>()?;
    m.add("BalerError", m.py().get_type::<BalerError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
