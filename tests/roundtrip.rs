//! The bound holds, strictly, over random data, shapes, chunk sizes, thread counts and bounds,
//! special values included; and the output does not depend on the thread count.

mod common;

use baler::{ArraySpec, BoundSpec, Bounds, CompressOptions, DType, Element, Layout};
use common::{Lcg, round_trip};
use proptest::prelude::*;

fn special_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        10 => -1e3f32..1e3,
        3 => -1e-3f32..1e-3,
        2 => any::<f32>(),
        1 => prop_oneof![
            Just(f32::NAN),
            Just(f32::from_bits(0x7fc0_dead)),
            Just(f32::from_bits(0xff80_0001)),
            Just(-0.0f32),
            Just(0.0f32),
            Just(f32::INFINITY),
            Just(f32::NEG_INFINITY),
            Just(1e-40f32),
            Just(-1.4e-45f32),
            Just(f32::MAX),
            Just(f32::MIN),
            Just(f32::MIN_POSITIVE),
        ],
    ]
}

fn special_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        10 => -1e6f64..1e6,
        2 => any::<f64>(),
        1 => prop_oneof![
            Just(f64::NAN),
            Just(f64::from_bits(0x7ff8_0000_dead_beef)),
            Just(-0.0f64),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(5e-324f64),
            Just(f64::MAX),
            Just(-f64::MAX),
        ],
    ]
}

fn bound_spec() -> impl Strategy<Value = BoundSpec> {
    prop_oneof![
        3 => (1e-7f64..10.0).prop_map(BoundSpec::Abs),
        3 => (1e-7f64..0.3).prop_map(BoundSpec::Rel),
        1 => Just(BoundSpec::Lossless),
        1 => Just(BoundSpec::Abs(0.0)),
        2 => (1u32..=52).prop_map(BoundSpec::Bits),
        2 => (1e-9f64..0.5).prop_map(BoundSpec::PwRel),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    shape: Vec<u64>,
    layout: Layout,
    bounds: Bounds,
    chunk_bytes: usize,
    threads: usize,
    constant_col: Option<usize>,
}

fn case() -> impl Strategy<Value = Case> {
    let table = (0u64..400, 1u64..7).prop_map(|(r, c)| (vec![r, c], Layout::Table));
    let field = prop::collection::vec(1u64..12, 1..4).prop_map(|s| (s, Layout::Field));
    (
        prop_oneof![table, field],
        bound_spec(),
        prop::collection::vec((0usize..7, bound_spec()), 0..3),
        prop_oneof![Just(4096usize), Just(8192), Just(100_000), Just(4 << 20)],
        1usize..5,
        prop::option::of(0usize..7),
    )
        .prop_map(
            |((shape, layout), default, overrides, chunk_bytes, threads, constant_col)| {
                let mut bounds = Bounds::new(default);
                if layout == Layout::Table {
                    for (c, s) in overrides {
                        if (c as u64) < shape[1] {
                            bounds.overrides.push((baler::ColumnRef::Index(c), s));
                        }
                    }
                }
                Case {
                    shape,
                    layout,
                    bounds,
                    chunk_bytes,
                    threads,
                    constant_col,
                }
            },
        )
}

fn run_case<T: Element>(case: &Case, mut values: Vec<T>) {
    let dtype = T::DTYPE;
    let mut spec = ArraySpec::new(dtype, case.shape.clone());
    spec.layout = case.layout;
    if let (Some(c), Layout::Table) = (case.constant_col, case.layout) {
        let width = case.shape[1] as usize;
        if c < width {
            for row in values.chunks_mut(width) {
                row[c] = T::from_f64(42.5);
            }
        }
    }
    let opts = CompressOptions::new(case.bounds.clone())
        .threads(case.threads)
        .chunk_bytes(case.chunk_bytes);
    round_trip(&values, &spec, &opts);
}

fn f32_case() -> impl Strategy<Value = (Case, Vec<f32>)> {
    case().prop_flat_map(|c| {
        let n = c.shape.iter().product::<u64>() as usize;
        (Just(c), prop::collection::vec(special_f32(), n))
    })
}

fn f64_case() -> impl Strategy<Value = (Case, Vec<f64>)> {
    case().prop_flat_map(|c| {
        let n = c.shape.iter().product::<u64>() as usize;
        (Just(c), prop::collection::vec(special_f64(), n))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn bound_holds_f32((case, values) in f32_case()) {
        run_case::<f32>(&case, values);
    }

    #[test]
    fn bound_holds_f64((case, values) in f64_case()) {
        run_case::<f64>(&case, values);
    }
}

/// A value of any magnitude `T` holds, log-uniformly (f32: 1e-38..1e38, f64: 1e-308..1e308),
/// either sign, with zeros, −0.0, subnormals, NaN and ±Inf mixed in.
fn any_magnitude(max_exp: f64, subnormal: f64) -> impl Strategy<Value = f64> {
    prop_oneof![
        12 => (-max_exp..max_exp, any::<bool>())
            .prop_map(|(e, neg)| if neg { -(10f64.powf(e)) } else { 10f64.powf(e) }),
        2 => Just(0.0),
        1 => Just(-0.0),
        1 => (1.0f64..1000.0, any::<bool>())
            .prop_map(move |(m, neg)| if neg { -m * subnormal } else { m * subnormal }),
        1 => prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)],
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// `pwrel:R` and `bits:N` over every magnitude: every finite value within `R·|x|` (checked
    /// independently), zeros, −0.0, subnormals and non-finite values bit for bit, tables and
    /// fields, f32 and f64, any thread count (the independent check is `common::round_trip`).
    #[test]
    fn pointwise_relative_bounds_hold_over_every_magnitude(
        f32_values in prop::collection::vec(any_magnitude(38.0, 1e-42), 0..3000),
        f64_values in prop::collection::vec(any_magnitude(308.0, 1e-320), 0..3000),
        bound in prop_oneof![
            (1u32..=52).prop_map(BoundSpec::Bits),
            (1e-12f64..0.9).prop_map(BoundSpec::PwRel),
            Just(BoundSpec::Bits(10)),
            Just(BoundSpec::Bits(7)),
        ],
        width in 1usize..6,
        table in any::<bool>(),
        threads in 1usize..4,
        chunk_bytes in prop_oneof![Just(4096usize), Just(1 << 20)],
    ) {
        let opts = CompressOptions::new(Bounds::new(bound)).chunk_bytes(chunk_bytes).threads(threads);
        let f32s: Vec<f32> = f32_values.iter().map(|&v| v as f32).collect();
        let rows = f32s.len() / width;
        let mut spec = ArraySpec::new(DType::F32, vec![rows as u64, width as u64]);
        spec.layout = if table { Layout::Table } else { Layout::Field };
        round_trip(&f32s[..rows * width], &spec, &opts);
        let rows = f64_values.len() / width;
        let mut spec = ArraySpec::new(DType::F64, vec![rows as u64, width as u64]);
        spec.layout = if table { Layout::Table } else { Layout::Field };
        round_trip(&f64_values[..rows * width], &spec, &opts);
    }
}

/// A smooth field (so the neighbour predictors are chosen) of `shape`, with the special values
/// of `specials` planted at the given positions: they become exceptions in the middle of the
/// Lorenzo recurrences.
fn smooth_field(shape: &[u64], noise: f64, specials: &[(usize, f64)]) -> Vec<f64> {
    let n: u64 = shape.iter().product();
    let last = *shape.last().unwrap_or(&1) as usize;
    let mut rng = Lcg(n ^ 0x5eed);
    let mut v: Vec<f64> = (0..n as usize)
        .map(|i| {
            let (x, y) = ((i % last) as f64, (i / last) as f64);
            50.0 * (x * 0.13).sin() * (y * 0.07).cos() + 0.2 * y + noise * rng.normal()
        })
        .collect();
    for &(p, s) in specials {
        if !v.is_empty() {
            let i = p % v.len();
            v[i] = s;
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn bound_holds_on_smooth_fields_with_exceptions(
        shape in prop::collection::vec(1u64..40, 1..5),
        noise in prop_oneof![Just(0.0), 0.0f64..2.0],
        specials in prop::collection::vec(
            (any::<usize>(), prop_oneof![
                Just(f64::NAN), Just(f64::INFINITY), Just(-0.0), Just(1e300), Just(-1e-300)
            ]),
            0..12,
        ),
        bound in prop_oneof![
            (1e-6f64..0.5).prop_map(BoundSpec::Rel),
            (1e-4f64..5.0).prop_map(BoundSpec::Abs),
            (4u32..24).prop_map(BoundSpec::Bits),
        ],
        chunk_bytes in prop_oneof![Just(4096usize), Just(20_000), Just(1 << 20)],
        f32_data in any::<bool>(),
    ) {
        let data = smooth_field(&shape, noise, &specials);
        let opts = CompressOptions::new(Bounds::new(bound)).chunk_bytes(chunk_bytes).threads(2);
        if f32_data {
            let data: Vec<f32> = data.iter().map(|&v| v as f32).collect();
            let mut spec = ArraySpec::new(DType::F32, shape);
            spec.layout = Layout::Field;
            round_trip(&data, &spec, &opts);
        } else {
            let mut spec = ArraySpec::new(DType::F64, shape);
            spec.layout = Layout::Field;
            round_trip(&data, &spec, &opts);
        }
    }
}

/// Smooth, noisy, heavy-tailed and spiky columns, at many sizes.
fn physics_like(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    let mut rng = Lcg(seed);
    let mut v = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            let x = match c % 5 {
                0 => (r as f64 * 0.01).sin() * 50.0 + rng.normal(),
                1 => -20.0 * rng.unit().max(1e-12).ln(), // falling spectrum
                2 => {
                    if rng.unit() < 0.01 {
                        999.9
                    } else {
                        rng.normal() * 2.0
                    }
                }
                3 => (rng.next_u64() % 5) as f64 - 2.0,
                _ => 1e12 * (1.0 + 40.0 * rng.unit()),
            };
            v.push(x as f32);
        }
    }
    v
}

#[test]
fn output_is_the_same_for_every_thread_count() {
    let data = physics_like(20_000, 7, 5);
    let spec = ArraySpec::new(DType::F32, vec![20_000, 7]);
    let base = CompressOptions::new(Bounds::new(BoundSpec::Rel(1e-3))).chunk_bytes(64 << 10);
    let one = baler::compress_slice(&data, &spec, &base.clone().threads(1)).unwrap();
    for t in [2, 3, 8] {
        let many = baler::compress_slice(&data, &spec, &base.clone().threads(t)).unwrap();
        assert!(
            one == many,
            "{t} threads wrote different bytes than 1 thread"
        );
    }
    // And the decoder gives the same bits whatever its thread count.
    assert_eq!(decoded_bits(&one, 1), decoded_bits(&one, 4));

    // A smooth 3-D field (interpolation, coded sequentially; codes by context), with
    // exceptions inside the recurrences: the same bytes and bits too.
    let shape = [24u64, 40, 50];
    let field = smooth_field(&shape, 0.01, &[(777, f64::NAN), (5000, 1e30), (9001, -0.0)]);
    let mut spec = ArraySpec::new(DType::F64, shape.to_vec());
    spec.layout = baler::Layout::Field;
    let one = baler::compress_slice(&field, &spec, &base.clone().threads(1)).unwrap();
    for t in [2, 3, 8] {
        let many = baler::compress_slice(&field, &spec, &base.clone().threads(t)).unwrap();
        assert!(one == many, "field: {t} threads wrote different bytes");
    }
    let bits = decoded_bits(&one, 1);
    assert_eq!(bits.len(), field.len());
    assert_eq!(bits, decoded_bits(&one, 4));
}

#[test]
fn segments_coded_on_lent_threads_change_no_byte() {
    // Chunks of several segments (64 Ki values each), fewer chunks than threads, so workers
    // out of chunks lend their cores to the segments of the others: a 3-D field of three
    // variables (interpolation, codes in decoding order) and a long one-column table (the
    // previous-record predictor, codes by position), both with exceptions.
    let shape = [3u64, 300, 500];
    let specials: Vec<(usize, f64)> = (0..40)
        .map(|i| (i * 11_117, [f64::NAN, 1e30, -0.0, f64::INFINITY][i % 4]))
        .collect();
    let field: Vec<f32> = smooth_field(&shape, 0.05, &specials)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let mut field_spec = ArraySpec::new(DType::F32, shape.to_vec());
    field_spec.layout = baler::Layout::Field;
    let mut rng = Lcg(9);
    let mut walk = 0.0f64;
    let mut column: Vec<f32> = (0..300_000)
        .map(|_| {
            walk += rng.normal();
            walk as f32
        })
        .collect();
    for &(p, v) in &specials {
        column[p % 300_000] = v as f32;
    }
    let column_spec = ArraySpec::new(DType::F32, vec![column.len() as u64, 1]);
    for (data, spec) in [(&field, &field_spec), (&column, &column_spec)] {
        let base = CompressOptions::new(Bounds::new(BoundSpec::Rel(1e-4)));
        let one = baler::compress_slice(data, spec, &base.clone().threads(1)).unwrap();
        for t in [2, 3, 8] {
            let many = baler::compress_slice(data, spec, &base.clone().threads(t)).unwrap();
            assert!(one == many, "{t} threads wrote different bytes");
        }
        let bits = decoded_bits(&one, 1);
        assert_eq!(bits.len(), data.len());
        assert_eq!(bits, decoded_bits(&one, 3));
        for t in [1, 2, 5] {
            let mut into = vec![0f32; data.len()];
            baler::decompress_into(&one, &mut into, t).unwrap();
            let into: Vec<u64> = into.iter().map(|v| u64::from(v.to_bits())).collect();
            assert!(into == bits, "decoded into a buffer on {t} threads");
        }
    }
}

/// The bits of every value a container decodes to, with `threads` decoder threads.
fn decoded_bits(packed: &[u8], threads: usize) -> Vec<u64> {
    let mut d =
        baler::Decompressor::with_threads(std::io::Cursor::new(packed.to_vec()), threads).unwrap();
    let mut all = Vec::new();
    while let Some(chunk) = d.next_chunk().unwrap() {
        match chunk {
            baler::ArrayData::F32(c) => all.extend(c.iter().map(|v| u64::from(v.to_bits()))),
            baler::ArrayData::F64(c) => all.extend(c.iter().map(|v| v.to_bits())),
        }
    }
    all
}

#[test]
fn many_bounds_on_physics_like_tables() {
    for (rows, cols) in [(1, 1), (3, 5), (1000, 5), (50_000, 10)] {
        let data = physics_like(rows, cols, rows as u64);
        let spec = ArraySpec::new(DType::F32, vec![rows as u64, cols as u64]);
        for b in [
            BoundSpec::Rel(1e-2),
            BoundSpec::Rel(1e-4),
            BoundSpec::Abs(1e-6),
            BoundSpec::Lossless,
        ] {
            let opts = CompressOptions::new(Bounds::new(b))
                .chunk_bytes(32 << 10)
                .threads(3);
            round_trip(&data, &spec, &opts);
        }
    }
}

#[test]
fn bounds_near_the_largest_finite_values() {
    // Ranges beyond f64::MAX, and bounds whose step 2E would overflow: found by the proptest
    // above (rel:0.263 on a column holding ±f64::MAX wrote an infinite step).
    let mut data = vec![0.0f64; 8 * 3];
    data[7] = f64::MAX;
    data[22] = -f64::MAX;
    data[3] = 1e300;
    let spec = ArraySpec::new(DType::F64, vec![8, 3]);
    for b in [
        BoundSpec::Rel(0.263),
        BoundSpec::Rel(0.49),
        BoundSpec::Rel(1e-3),
        BoundSpec::Abs(1e308),
        BoundSpec::Abs(f64::MAX),
        BoundSpec::PwRel(0.49),
    ] {
        round_trip(&data, &spec, &CompressOptions::new(Bounds::new(b)));
    }
    // A column spread over ±1e308 (its range beyond f64::MAX) beside an ordinary one: the
    // relative bound is R times the true range at every R.
    let mut rng = Lcg(13);
    let wide: Vec<f64> = (0..4000)
        .flat_map(|_| [1e308 * (2.0 * rng.unit() - 1.0), rng.unit()])
        .collect();
    let wide_spec = ArraySpec::new(DType::F64, vec![2000, 4]);
    for r in [1e-3, 1e-6, 1e-9] {
        let b = Bounds::new(BoundSpec::Rel(r));
        round_trip(&wide, &wide_spec, &CompressOptions::new(b));
    }
    let data32: Vec<f32> = [f32::MAX, -f32::MAX, 0.0, 1.0].repeat(6);
    let spec32 = ArraySpec::new(DType::F32, vec![8, 3]);
    for b in [BoundSpec::Rel(0.49), BoundSpec::Abs(1e38)] {
        round_trip(&data32, &spec32, &CompressOptions::new(Bounds::new(b)));
    }
}

#[test]
fn values_far_outside_the_sampled_range_still_meet_the_bound() {
    // Statistics from the first records only (a stream): later values are 1e6× larger.
    let rows = 40_000usize;
    let mut data = physics_like(rows, 3, 9);
    for v in &mut data[3 * rows / 2..] {
        *v *= 1e6;
    }
    let spec = ArraySpec::new(DType::F32, vec![baler::UNKNOWN, 3]);
    let mut opts = CompressOptions::new(Bounds::new(BoundSpec::Rel(1e-3))).chunk_bytes(16 << 10);
    opts.sample_bytes = 32 << 10;
    let mut c = baler::Compressor::new(Vec::new(), spec, opts).unwrap();
    for part in data.chunks(777) {
        c.write_values(part).unwrap();
    }
    let packed = c.finish().unwrap();
    let (header, back) = baler::decompress_to_vec(&packed).unwrap();
    assert_eq!(header.spec.shape, vec![rows as u64, 3]);
    assert!(matches!(
        header.stats_source,
        baler::container::StatsSource::FirstRecords(_)
    ));
    let bounds: Vec<common::Expected> = header
        .bounds
        .iter()
        .map(|b| common::Expected::Abs(b.bound.value()))
        .collect();
    let baler::ArrayData::F32(back) = back else {
        panic!("dtype")
    };
    common::assert_within(&data, &back, 3, &bounds);
}

#[test]
fn fields_of_every_rank() {
    let mut rng = Lcg(3);
    for shape in [
        vec![100_000u64],
        vec![7, 300, 11],
        vec![2, 3, 4, 5, 6],
        vec![1, 1],
        vec![0, 5],
    ] {
        let n: u64 = shape.iter().product();
        let data: Vec<f64> = (0..n)
            .map(|i| (i as f64 * 0.001).cos() * 100.0 + rng.normal())
            .collect();
        let mut spec = ArraySpec::new(DType::F64, shape);
        spec.layout = Layout::Field;
        for b in [
            BoundSpec::Rel(1e-5),
            BoundSpec::Abs(0.5),
            BoundSpec::Lossless,
        ] {
            round_trip(
                &data,
                &spec,
                &CompressOptions::new(Bounds::new(b)).chunk_bytes(8192),
            );
        }
    }
}

#[test]
fn long_columns_span_several_segments() {
    // One chunk of 300 000 values: five code streams, with exceptions on and around their
    // boundaries.
    let seg = baler::chunk::SEGMENT;
    let mut rng = Lcg(21);
    let mut data: Vec<f32> = (0..300_000)
        .map(|i| (i as f32 * 1e-4).sin() * 100.0 + rng.normal() as f32)
        .collect();
    for p in [0, 1, seg - 1, seg, seg + 1, 2 * seg, 4 * seg + 7, 299_999] {
        data[p] = f32::NAN;
    }
    data[3 * seg] = -0.0;
    data[3 * seg - 1] = f32::INFINITY;
    for (shape, layout) in [
        (vec![300_000u64], Layout::Field),
        (vec![300_000, 1], Layout::Table),
    ] {
        let mut spec = ArraySpec::new(DType::F32, shape);
        spec.layout = layout;
        for b in [
            BoundSpec::Rel(1e-3),
            BoundSpec::Abs(1e-5),
            BoundSpec::Lossless,
        ] {
            round_trip(
                &data,
                &spec,
                &CompressOptions::new(Bounds::new(b))
                    .chunk_bytes(8 << 20)
                    .threads(2),
            );
        }
    }
}
