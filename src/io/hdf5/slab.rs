//! Flat ranges of a C-order array as hyperslabs, and the windows a dataset is read in.
//!
//! The engine sees an array as one stream of values in C order; HDF5 reads and writes
//! rectangular blocks (hyperslabs). A flat range `[a, b)` of an array's elements is the union of
//! at most `2·rank − 1` blocks, each contiguous in C order, in order: the tail of the first
//! partial slice, the whole slices in between, the head of the last partial slice (recursively,
//! one axis down). Reading them one after the other into one buffer gives the range in C order.

/// One rectangular block: its first index and its extent along each axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Index of the block's first element along each axis.
    pub start: Vec<u64>,
    /// Extent along each axis.
    pub count: Vec<u64>,
}

impl Block {
    /// Elements in the block.
    pub fn elements(&self) -> u64 {
        self.count.iter().product()
    }
}

/// The blocks that make up the elements `[a, b)` (C order) of an array of `shape`, in order.
pub fn blocks(shape: &[u64], a: u64, b: u64) -> Vec<Block> {
    let mut out = Vec::new();
    if a < b && !shape.is_empty() {
        push_blocks(shape, a, b, &mut Vec::new(), &mut out);
    }
    out
}

fn push_blocks(shape: &[u64], a: u64, b: u64, prefix: &mut Vec<u64>, out: &mut Vec<Block>) {
    let with_prefix = |start: Vec<u64>, count: Vec<u64>, prefix: &[u64]| Block {
        start: prefix.iter().copied().chain(start).collect(),
        count: prefix.iter().map(|_| 1).chain(count).collect(),
    };
    if shape.len() == 1 {
        out.push(with_prefix(vec![a], vec![b - a], prefix));
        return;
    }
    let inner: u64 = shape[1..].iter().product();
    let (mut i0, r0) = (a / inner, a % inner);
    let (i1, r1) = (b / inner, b % inner);
    if i0 == i1 {
        prefix.push(i0);
        push_blocks(&shape[1..], r0, r1, prefix, out);
        prefix.pop();
        return;
    }
    if r0 != 0 {
        prefix.push(i0);
        push_blocks(&shape[1..], r0, inner, prefix, out);
        prefix.pop();
        i0 += 1;
    }
    if i1 > i0 {
        let mut start = vec![i0];
        start.extend(shape[1..].iter().map(|_| 0));
        let mut count = vec![i1 - i0];
        count.extend_from_slice(&shape[1..]);
        out.push(with_prefix(start, count, prefix));
    }
    if r1 != 0 {
        prefix.push(i1);
        push_blocks(&shape[1..], 0, r1, prefix, out);
        prefix.pop();
    }
}

/// Target bytes of one read from a dataset.
pub const WINDOW_BYTES: u64 = 16 << 20;
/// Largest band of chunks read as one window (see [`window_elements`]).
pub const MAX_BAND_BYTES: u64 = 64 << 20;

/// Elements per read window for a dataset of `shape` with `elem_bytes`-byte elements, chunked
/// as `chunk` (or contiguous), and whether windows must start on multiples of that count.
///
/// A chunked dataset is read in whole *bands* — `chunk[0]` slices along the first axis, every
/// chunk they cross — so each chunk is read and decompressed exactly once: about
/// [`WINDOW_BYTES`] of whole bands, or one band up to [`MAX_BAND_BYTES`]. A band larger than
/// that (a chunk shape long in the first axis over a wide array) is read in plain windows: the
/// chunks on a window's edges are then decompressed more than once (slower, never more
/// memory). A contiguous dataset is read in plain windows of [`WINDOW_BYTES`].
pub fn window_elements(shape: &[u64], elem_bytes: u64, chunk: Option<&[u64]>) -> u64 {
    let target = (WINDOW_BYTES / elem_bytes.max(1)).max(1);
    let Some(chunk) = chunk.filter(|c| !c.is_empty() && !shape.is_empty()) else {
        return target;
    };
    let band = chunk[0]
        .max(1)
        .saturating_mul(shape[1..].iter().product::<u64>().max(1));
    if band.saturating_mul(elem_bytes) > MAX_BAND_BYTES {
        return target;
    }
    band * (target / band).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Enumerates the blocks' elements in order as flat C-order indices.
    fn flatten(shape: &[u64], bs: &[Block]) -> Vec<u64> {
        let mut out = Vec::new();
        for b in bs {
            let n = b.elements();
            for k in 0..n {
                // The k-th element of the block in C order.
                let mut rem = k;
                let mut idx = vec![0u64; shape.len()];
                for ax in (0..shape.len()).rev() {
                    idx[ax] = b.start[ax] + rem % b.count[ax];
                    rem /= b.count[ax];
                }
                let flat = idx.iter().zip(shape).fold(0, |acc, (&i, &d)| acc * d + i);
                out.push(flat);
            }
        }
        out
    }

    #[test]
    fn every_range_is_its_blocks_in_order() {
        for shape in [
            vec![7u64],
            vec![3, 4],
            vec![2, 3, 4],
            vec![3, 1, 5, 2],
            vec![1, 1, 6],
        ] {
            let n: u64 = shape.iter().product();
            for a in 0..=n {
                for b in a..=n {
                    let bs = blocks(&shape, a, b);
                    assert_eq!(
                        flatten(&shape, &bs),
                        (a..b).collect::<Vec<_>>(),
                        "{shape:?} {a}..{b}"
                    );
                    assert!(
                        bs.len() < 2 * shape.len(),
                        "{shape:?} {a}..{b}: {} blocks",
                        bs.len()
                    );
                    for blk in &bs {
                        for (ax, &dim) in shape.iter().enumerate() {
                            assert!(blk.count[ax] >= 1);
                            assert!(blk.start[ax] + blk.count[ax] <= dim);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn windows_follow_chunk_bands() {
        // A table chunked 300 rows at a time: whole bands of 300 × 16 floats.
        let w = window_elements(&[100_000, 16], 4, Some(&[300, 16]));
        assert_eq!(w % (300 * 16), 0);
        assert!(w * 4 <= WINDOW_BYTES && w * 4 > WINDOW_BYTES / 2);
        // A band above the target but under the cap is one window.
        let w = window_elements(&[100, 1000, 1000], 4, Some(&[8, 100, 100]));
        assert_eq!(w, 8 * 1000 * 1000);
        // A band above the cap, and a contiguous dataset: plain windows.
        assert_eq!(
            window_elements(&[10, 10_000, 10_000], 4, Some(&[10, 100, 100])),
            WINDOW_BYTES / 4
        );
        assert_eq!(window_elements(&[10, 10], 8, None), WINDOW_BYTES / 8);
    }
}
