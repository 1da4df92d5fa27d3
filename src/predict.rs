//! The prediction slot: what the residual stage subtracts before quantizing.
//!
//! Each column of each chunk names its predictor by a one-byte id in the chunk, so predictors can
//! be added without breaking old files, and the encoder can choose per column and per chunk.
//! This build has the plain predictor: after normalization it predicts 0, i.e. the column
//! centre, which makes the codes plain uniform quantization `round((x − centre) / 2E)`. The
//! learned predictor (an autoencoder whose decoder ships in the container's model section)
//! fills this slot next: it will produce [`Prediction::Values`](crate::residual) from the
//! values already reconstructed, computed bit-identically by encoder and decoder.

use crate::normalize::Normalization;
use crate::residual::Prediction;

/// How a column's values are predicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Predictor {
    /// The column centre (normalization offset): plain uniform quantization.
    Centre,
}

impl Predictor {
    /// The id stored in the chunk.
    pub(crate) fn id(self) -> u8 {
        match self {
            Predictor::Centre => 0,
        }
    }

    pub(crate) fn from_id(id: u8) -> Option<Self> {
        match id {
            0 => Some(Predictor::Centre),
            _ => None,
        }
    }

    /// The prediction for a column quantized with step `step` under this predictor.
    ///
    /// The centre is snapped to the quantization grid (a multiple of the step), so the plain
    /// codes are exactly `round(x / step)` shifted by an integer. For continuous data the offset
    /// does not matter; for discrete values (PID, charge, status, integer counts) an off-grid
    /// centre can split values that the grid through 0 keeps together, costing bits.
    pub(crate) fn predict(self, norm: &Normalization, step: f64) -> Prediction<'static> {
        match self {
            Predictor::Centre => {
                let snapped = (norm.offset / step).round() * step;
                Prediction::Constant(if snapped.is_finite() {
                    snapped
                } else {
                    norm.offset
                })
            }
        }
    }
}
