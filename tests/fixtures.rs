//! Round trips on the real data in fixtures/ at every bound mode, and the entropy stage's
//! efficiency measured against an order-0 entropy computed here.

mod common;

use baler::{ArrayData, ArraySpec, BoundSpec, Bounds, CompressOptions, Layout};
use common::{fixture, load_npy, round_trip};

const FIXTURES: &[(&str, Option<Layout>)] = &[
    ("cms_ak4jets.npy", None),
    ("delphes_16k.npy", None),
    ("nexo_8k.npy", None),
    ("cfd_decay_ux.npy", None),
    ("ocean_temp.npy", Some(Layout::Field)),
    ("ocean_temp.npy", Some(Layout::Table)),
    ("tau_pt_f64.npy", None),
    ("hst_frame.npy", None),
];

#[test]
fn every_fixture_at_every_bound() {
    for &(name, layout) in FIXTURES {
        let (data, shape) = load_npy(&fixture(name));
        let mut spec = ArraySpec::new(data.dtype(), shape);
        if let Some(l) = layout {
            spec.layout = l;
        }
        for b in [
            BoundSpec::Rel(1e-2),
            BoundSpec::Rel(1e-3),
            BoundSpec::Rel(1e-4),
            BoundSpec::Abs(1e-3),
            BoundSpec::Lossless,
            BoundSpec::Bits(12),
            BoundSpec::Bits(10),
            BoundSpec::Bits(7),
            BoundSpec::PwRel(1e-3),
        ] {
            let opts = CompressOptions::new(Bounds::new(b)).chunk_bytes(256 << 10);
            let (packed, _) = match &data {
                ArrayData::F32(v) => round_trip(v, &spec, &opts),
                ArrayData::F64(v) => round_trip(v, &spec, &opts),
            };
            let raw = data.len() * data.dtype().size();
            if b == BoundSpec::Rel(1e-3) {
                assert!(
                    packed.len() < raw / 2,
                    "{name} at {b}: {} of {raw} bytes",
                    packed.len()
                );
            }
            if b.is_pointwise_relative() {
                // Never worse than the raw data (plus framing), even at 12 bits.
                assert!(
                    packed.len() <= raw + 4096,
                    "{name} at {b}: {} of {raw}",
                    packed.len()
                );
            }
            if b == BoundSpec::Lossless {
                // Lossless never costs more than the raw data and a little framing.
                assert!(
                    packed.len() <= raw + 4096,
                    "{name} lossless: {} of {raw}",
                    packed.len()
                );
            }
        }
    }
}

/// Order-0 entropy in bytes of `round(x / 2E)` per column, as the independent check computes it.
#[test]
fn a_frame_error_plane_coded_bit_for_bit_costs_less_beside_its_science_plane() {
    // A telescope frame's science and error planes: one chunk by default, where the error
    // plane is predicted from the science plane; apart (a chunk size asked for), each plane
    // has only its own neighbours.
    let (data, shape) = load_npy(&fixture("hst_frame.npy"));
    let ArrayData::F32(v) = &data else {
        panic!("f32 fixture")
    };
    let spec = ArraySpec::new(data.dtype(), shape);
    let together = CompressOptions::new(Bounds::new(BoundSpec::Lossless));
    let apart = together.clone().chunk_bytes(64 << 10);
    let (paired, _) = round_trip(v, &spec, &together);
    let (alone, _) = round_trip(v, &spec, &apart);
    assert!(
        paired.len() * 100 < alone.len() * 95,
        "{} bytes beside the science plane, {} apart",
        paired.len(),
        alone.len()
    );
}

fn plain_code_entropy(data: &[f32], width: usize, rel: f64) -> f64 {
    let mut total = 0.0;
    for j in 0..width {
        let col: Vec<f64> = data
            .iter()
            .skip(j)
            .step_by(width)
            .map(|&v| v as f64)
            .filter(|v| v.is_finite())
            .collect();
        let (lo, hi) = col
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let e = rel * (hi - lo);
        if e == 0.0 {
            continue;
        }
        let mut codes: Vec<i64> = col.iter().map(|v| (v / (2.0 * e)).round() as i64).collect();
        codes.sort_unstable();
        let n = codes.len() as f64;
        for run in codes.chunk_by(|a, b| a == b) {
            let c = run.len() as f64;
            total += c * (n / c).log2() / 8.0;
        }
    }
    total
}

#[test]
fn coding_is_within_five_percent_of_the_plain_code_entropy() {
    let (data, shape) = load_npy(&fixture("delphes_16k.npy"));
    let ArrayData::F32(v) = &data else {
        panic!("f32 fixture")
    };
    let spec = ArraySpec::new(data.dtype(), shape.clone());
    let opts = CompressOptions::new(Bounds::new(BoundSpec::Rel(1e-3)));
    let packed = baler::compress_slice(v, &spec, &opts).unwrap();
    let h0 = plain_code_entropy(v, shape[1] as usize, 1e-3);
    let ratio = packed.len() as f64 / h0;
    eprintln!(
        "delphes_16k: container {} bytes, order-0 entropy {h0:.0} bytes, ratio {ratio:.4}",
        packed.len()
    );
    assert!(
        ratio <= 1.05,
        "container is {ratio:.4}x the order-0 entropy of the plain codes"
    );
}
