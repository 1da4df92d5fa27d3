//! The learned predictor from Python: `baler.Model` (a `baler train` model file's contents)
//! and `baler.train`, and the model `compress` trains for a table by default (`model="auto"`,
//! at `effort`), as the command line's `compress` does.

use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use baler::model::Model;
use baler::model::budget::{TrainBudget, sample_slice};
use baler::model::train::{TrainOptions, fit_table};
use baler::{ArraySpec, Bounds, CompressOptions, Element, Layout};

use crate::{BalerError, err};

/// A learned predictor for tables of one shape of columns: what `baler train` writes, what
/// `compress(model=...)` reads. `Model.load(path)`, `Model.from_bytes(data)`, `save(path)`,
/// `to_bytes()`.
#[pyclass(name = "Model", module = "baler", frozen)]
pub struct PyModel {
    pub inner: Model,
}

#[pymethods]
impl PyModel {
    /// Reads a model file (`baler train`'s, or `Model.save`'s).
    #[staticmethod]
    fn load(path: std::path::PathBuf) -> PyResult<PyModel> {
        let inner = Model::load(&path)
            .map_err(|e| BalerError::new_err(format!("{}: {e}", path.display())))?;
        Ok(PyModel { inner })
    }

    /// A model from a model file's contents.
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<PyModel> {
        let inner = Model::from_file_bytes(data)
            .map_err(|e| BalerError::new_err(format!("the model: {e}")))?;
        Ok(PyModel { inner })
    }

    /// Writes the model file (read by `Model.load`, `compress(model=path)` and `baler
    /// compress --model`).
    fn save(&self, path: std::path::PathBuf) -> PyResult<()> {
        self.inner
            .save(&path)
            .map_err(|e| BalerError::new_err(format!("writing {}: {e}", path.display())))
    }

    /// The model file's contents.
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.inner.to_file_bytes()))
    }

    /// Columns of the tables the model is for.
    #[getter]
    fn columns(&self) -> usize {
        self.inner.columns.len()
    }

    /// Columns it predicts from the others.
    #[getter]
    fn predicted(&self) -> usize {
        self.inner.active_columns()
    }

    /// Its weights.
    #[getter]
    fn parameters(&self) -> usize {
        self.inner.parameters()
    }

    /// The coding order of the columns (0-based).
    #[getter]
    fn order(&self) -> Vec<u32> {
        self.inner.order.clone()
    }

    /// Per column, the model's inputs (input i < columns is column i; the others are derived
    /// features of earlier columns) and hidden units.
    fn inputs(&self, column: usize) -> PyResult<(Vec<u32>, usize)> {
        let c = self.inner.columns.get(column).ok_or_else(|| {
            BalerError::new_err(format!(
                "column {column}: the model has {}",
                self.inner.columns.len()
            ))
        })?;
        Ok((c.inputs.clone(), c.hidden))
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
        let from = py.get_type::<PyModel>().getattr("from_bytes")?;
        Ok((from, (slf.get().to_bytes(py)?,)))
    }

    fn __repr__(&self) -> String {
        format!(
            "baler.Model({} columns, {} predicted, {} parameters)",
            self.inner.columns.len(),
            self.inner.active_columns(),
            self.inner.parameters()
        )
    }
}

/// How to train: the sample and epochs, from an effort level (as `compress` trains) or given
/// (as `baler train`, whose defaults are 200,000 records and 12 epochs).
pub struct Training {
    pub sample: usize,
    pub epochs: usize,
    pub hidden: usize,
    pub inputs: usize,
    pub seed: u64,
    /// Records the model will code (`u64::MAX`: many files, as `baler train`).
    pub records: u64,
}

impl Training {
    /// What `compress` affords at `effort` for `records` records.
    pub fn for_effort(effort: u8, records: u64) -> Training {
        let b = TrainBudget::new(effort, records);
        Training {
            sample: b.sample,
            epochs: b.epochs,
            hidden: 0,
            inputs: TrainOptions::default().max_inputs,
            seed: 1,
            records,
        }
    }
}

/// Trains on a sample of a table's records (`values`, row-major); `None` where the table is
/// too small or no column could be predicted. The GIL is released by the caller.
pub fn train_table<T: Element>(
    values: &[T],
    spec: &ArraySpec,
    options: &CompressOptions,
    t: &Training,
) -> baler::Result<Option<Model>> {
    if spec.layout != Layout::Table || spec.shape.len() != 2 || t.sample == 0 {
        return Ok(None);
    }
    let sample = sample_slice(values, spec.shape[1] as usize, t.sample, t.seed);
    train_sample(
        &sample,
        spec,
        options,
        std::mem::size_of_val(values) as u64,
        t,
    )
}

/// Trains on sampled records (`sample`, row-major `f64`) of a table of `raw_bytes`, as the
/// command line's `compress` and `train` do.
pub fn train_sample(
    sample: &[f64],
    spec: &ArraySpec,
    options: &CompressOptions,
    raw_bytes: u64,
    t: &Training,
) -> baler::Result<Option<Model>> {
    let width = spec.shape[1] as usize;
    let specs = options.bounds.per_column(width, &spec.column_names, true)?;
    let opts = TrainOptions {
        hidden: t.hidden,
        max_inputs: t.inputs,
        epochs: t.epochs,
        seed: t.seed,
        records: t.records,
        ..Default::default()
    };
    let (model, _) = fit_table(
        sample,
        spec,
        options,
        &specs,
        raw_bytes,
        &opts,
        |_, _, _| {},
    )?;
    Ok((model.active_columns() > 0).then_some(model))
}

/// `baler.train`: a model for tables like `array` (see pysrc/baler/__init__.py).
#[pyfunction]
#[pyo3(signature = (array, bound=None, bounds=None, names=None, sample=None, epochs=None, hidden=None, inputs=None, seed=1))]
#[allow(clippy::too_many_arguments)]
pub fn train<'py>(
    py: Python<'py>,
    array: &Bound<'py, PyAny>,
    bound: Option<&str>,
    bounds: Option<&Bound<'py, PyAny>>,
    names: Option<Vec<String>>,
    sample: Option<usize>,
    epochs: Option<usize>,
    hidden: Option<usize>,
    inputs: Option<usize>,
    seed: u64,
) -> PyResult<PyModel> {
    let bounds = crate::bounds_from(bound, bounds)?;
    let t = Training {
        sample: sample.unwrap_or(200_000),
        epochs: epochs.unwrap_or(12),
        hidden: hidden.unwrap_or(0),
        inputs: inputs.unwrap_or(TrainOptions::default().max_inputs),
        seed,
        records: u64::MAX,
    };
    fn go<T: Element + numpy::Element>(
        py: Python<'_>,
        a: &PyReadonlyArrayDyn<'_, T>,
        bounds: &Bounds,
        names: Option<Vec<String>>,
        t: &Training,
    ) -> PyResult<Option<Model>> {
        if a.ndim() != 2 {
            return Err(BalerError::new_err(format!(
                "the learned predictor is for tables (2-D arrays: rows x columns); this array \
                 has shape {:?}",
                a.shape()
            )));
        }
        let mut spec = ArraySpec::new(T::DTYPE, a.shape().iter().map(|&d| d as u64).collect());
        spec.layout = Layout::Table;
        spec.column_names = names.unwrap_or_default();
        spec.validate().map_err(err)?;
        let values = crate::in_place(a)?;
        let options = CompressOptions::new(bounds.clone());
        py.detach(|| train_table(values, &spec, &options, t))
            .map_err(err)
    }
    let model = if let Ok(a) = array.extract::<PyReadonlyArrayDyn<'py, f32>>() {
        go(py, &a, &bounds, names, &t)?
    } else if let Ok(a) = array.extract::<PyReadonlyArrayDyn<'py, f64>>() {
        go(py, &a, &bounds, names, &t)?
    } else {
        return Err(BalerError::new_err(
            "baler trains on numpy arrays of float32 or float64",
        ));
    };
    model.map(|inner| PyModel { inner }).ok_or_else(|| {
        BalerError::new_err(
            "no column could be predicted from the others (too few records, or nothing to learn)",
        )
    })
}
