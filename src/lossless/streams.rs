//! A bit-exact column's code streams (one, or one per class of its codes): each one
//! [`CodeCoder`] stream, or (format version 8, a column longer than [`STREAM_SEGMENT`] codes)
//! one per segment of that many codes, the last one shorter — coded and decoded each as a
//! task, on the calling thread or on a core the pipeline's workers left idle
//! ([`crate::spare`]): a file of one chunk, such as a telescope frame's two planes coded
//! together, codes on both cores.
//!
//! A segment's stream depends on its codes alone (and on whether binned streams are allowed,
//! the same for the whole column), so the bytes are the same however the segments are shared
//! out. The streams are not framed by their lengths: the decoder first steps over each to find
//! where the next starts ([`skip`]), which reads a few header fields and section lengths.

use std::sync::{Arc, Mutex};

use crate::bytes::{ByteReader, DecodeResult};
use crate::entropy::{CodeCoder, skip};
use crate::segments::{decode_parts, encode_parts, threads};
use crate::spare::Spare;

/// Codes per entropy-coded stream of a segmented column.
pub(super) const STREAM_SEGMENT: usize = 1 << 18;

/// One thread's scratch.
#[derive(Debug, Default)]
struct Scratch {
    coder: CodeCoder,
    codes: Vec<i32>,
}

/// Codes and decodes a column's streams, with each thread's scratch (the caller's first).
#[derive(Debug, Default)]
pub(super) struct Streams {
    /// Idle cores to borrow.
    spare: Arc<Spare>,
    scratch: Vec<Scratch>,
    /// Each segment's stream, while a column is coded.
    bytes: Vec<Mutex<Vec<u8>>>,
}

impl Streams {
    /// Borrows idle cores from `spare` from now on.
    pub(super) fn lending(&mut self, spare: Arc<Spare>) {
        self.spare = spare;
    }

    /// The idle cores lent (for the column's other tasks).
    pub(super) fn spare(&self) -> &Spare {
        &self.spare
    }

    /// Appends each of `streams` in turn, each as one stream, or where `segmented` as one
    /// per [`STREAM_SEGMENT`] codes (an empty one as one empty stream), binned streams
    /// allowed as `coder` allows them. The streams and segments are tasks of their own.
    pub(super) fn encode(
        &mut self,
        streams: &[&[i32]],
        segmented: bool,
        coder: &mut CodeCoder,
        out: &mut Vec<u8>,
    ) {
        let parts: Vec<&[i32]> = streams
            .iter()
            .flat_map(|&codes| {
                let len = if segmented && !codes.is_empty() {
                    STREAM_SEGMENT
                } else {
                    codes.len().max(1)
                };
                codes.chunks(len).chain(codes.is_empty().then_some(codes))
            })
            .collect();
        if let [one] = parts[..] {
            coder.encode(one, out);
            return;
        }
        let binned = coder.binned();
        let threads = threads(&mut self.scratch, parts.len());
        let lent = (&*self.spare, threads);
        encode_parts(parts.len(), &mut self.bytes, lent, out, |s, mine, b| {
            mine.coder.allow_binned(binned);
            mine.coder.encode(parts[s], b);
        });
    }

    /// Reads streams written by [`encode`](Self::encode): `counts[j]` codes into `outs[j]`
    /// (replacing its contents) for each `j` whose count is not 0, in turn.
    pub(super) fn decode(
        &mut self,
        r: &mut ByteReader<'_>,
        (counts, outs): (&[usize], &mut [Vec<i32>]),
        segmented: bool,
        coder: &mut CodeCoder,
    ) -> DecodeResult<()> {
        let n_parts: usize = counts
            .iter()
            .map(|&c| match c {
                0 => 0,
                _ if segmented => c.div_ceil(STREAM_SEGMENT),
                _ => 1,
            })
            .sum();
        if n_parts <= 1 {
            for (&c, out) in counts.iter().zip(outs.iter_mut()) {
                if c > 0 {
                    coder.decode(r, c, out)?;
                } else {
                    out.clear();
                }
            }
            return Ok(());
        }
        // One allocation for each stream (a column grown segment by segment maps and touches
        // fresh pages that threads decoding at once pay for together).
        for (&c, out) in counts.iter().zip(outs.iter_mut()) {
            out.clear();
            out.resize(c, 0);
        }
        let len = if segmented {
            STREAM_SEGMENT
        } else {
            usize::MAX
        };
        let parts = outs.iter_mut().flat_map(|o| o.chunks_mut(len));
        let threads = threads(&mut self.scratch, n_parts);
        decode_parts(
            (r, parts),
            |r, _, _| skip(r),
            (&self.spare, threads),
            |mine, r, _, dst| {
                mine.coder.decode(r, dst.len(), &mut mine.codes)?;
                dst.copy_from_slice(&mine.codes);
                Ok(())
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segments::tests::codes;

    #[test]
    fn streams_and_segments_shared_out_code_and_decode_as_on_one_thread() {
        let all = codes(3 * STREAM_SEGMENT + 4321, 5);
        // Classes of a column: one long (segmented), one short, one empty (not written).
        let classes: [&[i32]; 3] = [&all[..2 * STREAM_SEGMENT + 7], &all[100..9000], &[]];
        let spare = Spare::new(3);
        for binned in [false, true] {
            let mut coder = CodeCoder::new();
            coder.allow_binned(binned);
            for segmented in [true, false] {
                // One thread, stream by stream and segment by segment, as the format defines
                // them.
                let mut want = Vec::new();
                for c in classes.iter().filter(|c| !c.is_empty()) {
                    let len = if segmented { STREAM_SEGMENT } else { c.len() };
                    for seg in c.chunks(len) {
                        coder.encode(seg, &mut want);
                    }
                }
                let written: Vec<&[i32]> =
                    classes.iter().copied().filter(|c| !c.is_empty()).collect();
                let counts: Vec<usize> = classes.iter().map(|c| c.len()).collect();
                for lent in [false, true] {
                    let mut st = Streams::default();
                    if lent {
                        st.lending(Arc::clone(&spare));
                    }
                    let mut got = Vec::new();
                    st.encode(&written, segmented, &mut coder, &mut got);
                    assert_eq!(
                        got, want,
                        "binned {binned}, segmented {segmented}, lent {lent}"
                    );
                    let mut back = vec![vec![7; 3]; 3];
                    let mut r = ByteReader::new(&got);
                    st.decode(&mut r, (&counts, &mut back), segmented, &mut coder)
                        .unwrap();
                    assert!(r.is_empty());
                    for (b, c) in back.iter().zip(&classes) {
                        assert_eq!(&b[..], *c);
                    }
                    // Truncated or corrupted: errors, never a panic.
                    for cut in [1, got.len() / 3, got.len() - 1] {
                        let mut r = ByteReader::new(&got[..cut]);
                        let res = st.decode(&mut r, (&counts, &mut back), segmented, &mut coder);
                        assert!(res.is_err());
                    }
                    let mut bad = got.clone();
                    for i in (0..bad.len()).step_by(997) {
                        bad[i] ^= 0x5a;
                    }
                    let mut r = ByteReader::new(&bad);
                    let _ = st.decode(&mut r, (&counts, &mut back), segmented, &mut coder);
                }
            }
        }
        // One short stream, and an empty one: as the coder writes them.
        let mut st = Streams::default();
        let mut coder = CodeCoder::new();
        for c in [&all[..1000], &[][..]] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            st.encode(&[c], true, &mut coder, &mut a);
            coder.encode(c, &mut b);
            assert_eq!(a, b);
        }
    }
}
