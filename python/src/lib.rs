//! `baler._baler`: the engine's calls for the `baler` Python package (`pysrc/baler/`), which
//! documents them. NumPy arrays come in without a copy (C-contiguous float32/float64 buffers),
//! the GIL is released while the engine runs, and the engine's errors are raised as
//! `baler.BalerError` (a `ValueError`) with the command line's messages.

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use baler::{ArrayData, ArraySpec, BoundSpec, Bounds, BoundsFile, CompressOptions, DType, Element};

create_exception!(
    _baler,
    BalerError,
    PyValueError,
    "An error of the baler engine (bad input, a damaged container, a bound that cannot be parsed)."
);

fn err(e: baler::Error) -> PyErr {
    BalerError::new_err(e.to_string())
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

/// What an array's dtype and shape make of the call's arguments: its spec and the options.
type Prepare<'a> = dyn Fn(DType, &[usize]) -> PyResult<(ArraySpec, CompressOptions)> + 'a;

/// Compresses an array in place (its buffer, read without a copy), the GIL released; `prepare`
/// gives its spec and options from its dtype and shape.
fn compress_array<T: Element + numpy::Element>(
    py: Python<'_>,
    a: &PyReadonlyArrayDyn<'_, T>,
    prepare: &Prepare<'_>,
) -> PyResult<Vec<u8>> {
    let (spec, options) = prepare(T::DTYPE, a.shape())?;
    let values = a.as_slice().map_err(|_| {
        BalerError::new_err("the array is not C-contiguous (numpy.ascontiguousarray makes it so)")
    })?;
    py.detach(|| baler::compress_slice(values, &spec, &options))
        .map_err(err)
}

#[pyfunction]
#[pyo3(signature = (array, bound=None, bounds=None, names=None, model=None, threads=None, layout=None, chunk_size=None))]
#[allow(clippy::too_many_arguments)]
fn compress<'py>(
    py: Python<'py>,
    array: &Bound<'py, PyAny>,
    bound: Option<&str>,
    bounds: Option<&Bound<'py, PyAny>>,
    names: Option<Vec<String>>,
    model: Option<&Bound<'py, PyAny>>,
    threads: Option<usize>,
    layout: Option<&str>,
    chunk_size: Option<usize>,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut options = CompressOptions::new(bounds_from(bound, bounds)?);
    options.threads = threads.unwrap_or(0);
    if let Some(n) = chunk_size {
        options = options.chunk_bytes(n);
    }
    let spec_of = |dtype: DType, shape: &[usize]| -> PyResult<ArraySpec> {
        let mut spec = ArraySpec::new(dtype, shape.iter().map(|&d| d as u64).collect());
        if let Some(l) = layout {
            spec.layout = l.parse().map_err(err)?;
        }
        spec.column_names = names.clone().unwrap_or_default();
        Ok(spec)
    };
    let with_model =
        |mut options: CompressOptions, spec: &ArraySpec| -> PyResult<CompressOptions> {
            if let Some(model) = model {
                // A model file's path, or its contents (bytes).
                let (m, path) = if model.is_instance_of::<PyBytes>() {
                    let bytes: Vec<u8> = model.extract()?;
                    (
                        baler::model::Model::from_file_bytes(&bytes),
                        std::path::PathBuf::from("the model"),
                    )
                } else {
                    let path: std::path::PathBuf = model.extract()?;
                    (baler::model::Model::load(&path), path)
                };
                let m = m.map_err(|e| BalerError::new_err(format!("{}: {e}", path.display())))?;
                if spec.layout != baler::Layout::Table
                    || spec.shape.get(1) != Some(&(m.columns.len() as u64))
                {
                    return Err(BalerError::new_err(format!(
                        "{}: the model is for tables of {} columns; the array is {}",
                        path.display(),
                        m.columns.len(),
                        spec.shape_string()
                    )));
                }
                options = options.model(m);
            }
            Ok(options)
        };
    let prepare = |dtype: DType, shape: &[usize]| -> PyResult<(ArraySpec, CompressOptions)> {
        let spec = spec_of(dtype, shape)?;
        let options = with_model(options.clone(), &spec)?;
        Ok((spec, options))
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

#[pyfunction]
fn decompress<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let (header, values) = py.detach(|| baler::decompress_to_vec(data)).map_err(err)?;
    let shape: Vec<usize> = header.spec.shape.iter().map(|&d| d as usize).collect();
    Ok(match values {
        ArrayData::F32(v) => PyArray1::from_vec(py, v).reshape(shape)?.into_any(),
        ArrayData::F64(v) => PyArray1::from_vec(py, v).reshape(shape)?.into_any(),
    })
}

#[pymodule]
fn _baler(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(compress, m)?)?;
    m.add_function(wrap_pyfunction!(decompress, m)?)?;
    m.add("BalerError", m.py().get_type::<BalerError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
