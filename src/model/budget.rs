//! How much training a compression affords: an effort level, 1 to 9 (like zstd's levels), and
//! the size of the input decide the learned predictor's sample and epochs, so training costs a
//! small, predictable share of the work whatever the file's size.
//!
//! A network costs at both ends, not only in training: its predictions are evaluated for every
//! record when compressing and decompressing. On Delphes ×40 (198 MB) a network (50,000
//! records × 6 epochs) made the file 0.4% *larger* than the linear parts alone and the
//! compression 30% slower (1.73 against 1.33 s); on Delphes ×400 (1.98 GB, 31 M records) the
//! former default's network (5% of the records as record-epochs: 193,000 × 8) gave 22.60×,
//! the linear parts alone 22.61×. So the default stops at the linear parts; the network is for
//! those who ask for more effort.
//!
//! What the parts cost and bring, measured on this project's 2-core machine (see README,
//! "Effort"): choosing each column's inputs and fitting the linear parts costs a fixed
//! amount whatever the file's size beyond the sample (the Z′ jets, 24 columns, 25,000 records:
//! about 50 ms, of which 35 ms choosing the inputs (25 ms scoring the 6,280 candidate inputs),
//! 5 ms the least squares, 3 ms the noisy sample; the whole default `compress` of those
//! 19.2 MB 0.14 s), and brings most of the gain (the Z′ jets at `rel:1e-3`: 4.20× without a
//! model, 6.78× with the linear parts); the network's epochs cost about 2 µs per record each
//! for a table of 24 columns (the block-sparse kernel on 2 cores) and bring about 1% more
//! (6.87× after 16 epochs over 200,000 records: 6 s). So the network trains only where the
//! input is large enough to repay it: its record-epochs are a share of the input's records
//! that grows with the effort.
//!
//! | effort | learned predictor |
//! |---|---|
//! | 1 | none (plain and neighbour predictors) |
//! | 2 | linear parts, fitted on 10,000 sampled records |
//! | 3 (default) | linear parts on 25,000 |
//! | 4–9 | the same with a network budget of 25%, 1, 2, 4, 8 and 16 times the records |

/// The default effort.
pub const DEFAULT_EFFORT: u8 = 3;
/// The largest effort.
pub const MAX_EFFORT: u8 = 9;

/// Records sampled where only the linear parts are fitted (effort 3 and above). On the Z′ jets,
/// Delphes, nEXO and ATLAS at `rel:1e-3` and `bits:10`, four seeds each, 25,000 gave files
/// within 1.1% of 50,000's either way (0.1% on the jets), for 10 ms less on the jets.
const LINEAR_SAMPLE: usize = 25_000;
/// Records sampled at effort 2: 10,000 made Delphes at `rel:1e-2` 8% larger than 25,000.
const SMALL_LINEAR_SAMPLE: usize = 10_000;
/// Fewest record-epochs worth training a network for.
const MIN_NETWORK_WORK: f64 = 200_000.0;
/// The network's sample: between these, an eighth of its record-epochs.
const NETWORK_SAMPLE: (f64, f64) = (50_000.0, 1_000_000.0);
/// The network's epochs: between these (early stopping may end it sooner).
const NETWORK_EPOCHS: (f64, f64) = (4.0, 30.0);

/// What training an input affords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainBudget {
    /// Records to sample (0: no learned predictor).
    pub sample: usize,
    /// Most epochs of the network (0: the linear parts alone).
    pub epochs: usize,
}

impl TrainBudget {
    /// The budget at `effort` (clamped to 1–[`MAX_EFFORT`]) for an input of `records`
    /// records.
    pub fn new(effort: u8, records: u64) -> Self {
        let effort = effort.clamp(1, MAX_EFFORT);
        let records_f = records as f64;
        let cap = |n: f64| (n.min(records_f)) as usize;
        match effort {
            1 => TrainBudget {
                sample: 0,
                epochs: 0,
            },
            2 => TrainBudget {
                sample: cap(SMALL_LINEAR_SAMPLE as f64),
                epochs: 0,
            },
            _ => {
                let share = [0.0, 0.25, 1.0, 2.0, 4.0, 8.0, 16.0][usize::from(effort - 3)];
                let work = records_f * share;
                if work < MIN_NETWORK_WORK {
                    return TrainBudget {
                        sample: cap(LINEAR_SAMPLE as f64),
                        epochs: 0,
                    };
                }
                let sample = (work / 8.0)
                    .clamp(NETWORK_SAMPLE.0, NETWORK_SAMPLE.1)
                    .min(records_f);
                let epochs = (work / sample).clamp(NETWORK_EPOCHS.0, NETWORK_EPOCHS.1);
                TrainBudget {
                    sample: sample as usize,
                    epochs: epochs as usize,
                }
            }
        }
    }

    /// Whether a learned predictor is trained at all.
    pub fn trains(&self) -> bool {
        self.sample > 0
    }
}

/// Records per block of the training sample: blocks of consecutive records are read, so a
/// sample of a file on disk costs a few hundred reads, not one per record.
pub const SAMPLE_BLOCK: u64 = 256;

/// The blocks of a uniform random sample of about `max_records` of `records` records, drawn
/// with `seed`: `(first record, records)` in order, of [`SAMPLE_BLOCK`] records each (the
/// last one shorter), all of them where the sample is the whole input. Every sampler of
/// baler's (a file's, [`crate::io::Input::sample_records`], or an array's, [`sample_slice`])
/// draws these, so one seed gives one sample whatever holds the records.
pub fn sample_blocks(records: u64, max_records: usize, seed: u64) -> Vec<(u64, u64)> {
    if records == 0 {
        return Vec::new();
    }
    let blocks = records.div_ceil(SAMPLE_BLOCK);
    let want = (max_records as u64).div_ceil(SAMPLE_BLOCK).min(blocks);
    // Block indices: all of them, or `want` distinct ones drawn uniformly (Floyd's method).
    let mut picked: Vec<u64> = if want == blocks {
        (0..blocks).collect()
    } else {
        let mut s = seed ^ 0x5a3c_9e1d_2b47_f680;
        let mut set = std::collections::BTreeSet::new();
        for j in blocks - want..blocks {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let t = ((u128::from(s >> 11) * u128::from(j + 1)) >> 53) as u64;
            if !set.insert(t) {
                set.insert(j);
            }
        }
        set.into_iter().collect()
    };
    picked.sort_unstable();
    picked
        .into_iter()
        .map(|b| {
            let first = b * SAMPLE_BLOCK;
            (first, SAMPLE_BLOCK.min(records - first))
        })
        .collect()
}

/// The training sample of a table held in memory (`values`, row-major records of
/// `record_len`), as `f64`: the records of [`sample_blocks`].
pub fn sample_slice<T: crate::Element>(
    values: &[T],
    record_len: usize,
    max_records: usize,
    seed: u64,
) -> Vec<f64> {
    let records = (values.len() / record_len.max(1)) as u64;
    let mut out = Vec::new();
    for (first, n) in sample_blocks(records, max_records, seed) {
        let (a, b) = (
            first as usize * record_len,
            (first + n) as usize * record_len,
        );
        out.extend(values[a..b].iter().map(|v| v.to_f64()));
    }
    out
}

/// Parses an effort level, `1`–`9`.
pub fn parse_effort(s: &str) -> Result<u8, String> {
    match s.trim().parse::<u8>() {
        Ok(e) if (1..=MAX_EFFORT).contains(&e) => Ok(e),
        _ => Err(format!(
            "invalid effort '{s}': expected a level from 1 (fastest) to {MAX_EFFORT} (most thorough)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_fits_linear_parts_only() {
        // The Z′ jets (200,000 records), Delphes (77,394), nEXO, and up to a terabyte.
        for records in [1_000u64, 77_394, 200_000, 3_999_999, 40_000_000, 1 << 40] {
            let b = TrainBudget::new(DEFAULT_EFFORT, records);
            assert_eq!(b.epochs, 0, "{records}");
            assert_eq!(b.sample as u64, records.min(LINEAR_SAMPLE as u64));
        }
        // More effort on a few hundred MB of such a table: a network, within its bounds.
        let b = TrainBudget::new(DEFAULT_EFFORT + 1, 40_000_000);
        assert!(b.epochs >= 4 && b.sample >= 50_000, "{b:?}");
        assert!(!TrainBudget::new(1, 1 << 40).trains());
        assert_eq!(TrainBudget::new(2, 1 << 40).epochs, 0);
    }

    #[test]
    fn more_effort_never_trains_less() {
        for records in [500u64, 50_000, 200_000, 2_000_000, 1 << 32] {
            let mut last = 0.0;
            for e in 1..=MAX_EFFORT {
                let b = TrainBudget::new(e, records);
                assert!(b.sample as u64 <= records, "{e} {records}: {b:?}");
                // Sampled records, and record-epochs of the network once it trains.
                let work = b.sample as f64 * (1 + b.epochs) as f64;
                assert!(work >= last, "effort {e} on {records} records: {b:?}");
                last = work;
            }
        }
        // Terabytes stay bounded: a million records, thirty epochs.
        let b = TrainBudget::new(MAX_EFFORT, 1 << 40);
        assert_eq!((b.sample, b.epochs), (1_000_000, 30));
    }

    #[test]
    fn samples_are_whole_blocks_drawn_once() {
        assert!(sample_blocks(0, 100, 1).is_empty());
        // Small inputs: everything, the last block short.
        assert_eq!(sample_blocks(300, 1000, 1), vec![(0, 256), (256, 44)]);
        for (records, want) in [(1_000_000u64, 50_000usize), (10_000, 2_000), (257, 1)] {
            let b = sample_blocks(records, want, 7);
            let got: u64 = b.iter().map(|&(_, n)| n).sum();
            assert!(
                got >= want as u64 && got <= want as u64 + SAMPLE_BLOCK,
                "{records}: {got}"
            );
            assert!(
                b.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0),
                "sorted, disjoint"
            );
            assert!(
                b.iter()
                    .all(|&(f, n)| f % SAMPLE_BLOCK == 0 && f + n <= records)
            );
            assert_eq!(b, sample_blocks(records, want, 7), "one seed, one sample");
        }
        assert_ne!(
            sample_blocks(1 << 20, 5_000, 1),
            sample_blocks(1 << 20, 5_000, 2)
        );
        let values: Vec<f32> = (0..3_000).map(|i| i as f32).collect();
        let s = sample_slice(&values, 3, 400, 5);
        let rows: Vec<u64> = sample_blocks(1_000, 400, 5)
            .iter()
            .flat_map(|&(f, n)| f..f + n)
            .collect();
        assert_eq!(s.len(), rows.len() * 3);
        assert!(
            rows.iter()
                .enumerate()
                .all(|(k, &r)| s[k * 3] == (r * 3) as f64)
        );
    }

    #[test]
    fn efforts_parse_within_range_only() {
        assert_eq!(parse_effort("1"), Ok(1));
        assert_eq!(parse_effort(" 9"), Ok(9));
        for bad in ["0", "10", "-1", "fast", ""] {
            let e = parse_effort(bad).unwrap_err();
            assert!(e.contains("1 (fastest) to 9"), "{e}");
        }
    }
}
