//! A bit-exact column's code streams: one [`CodeCoder`] stream, or (format version 8, a column
//! longer than [`STREAM_SEGMENT`] codes) one per segment of that many codes, the last one
//! shorter — coded and decoded each as a task, on the calling thread or on a core the
//! pipeline's workers left idle ([`crate::spare`]): a file of one chunk, such as a telescope
//! frame's two planes coded together, codes on both cores.
//!
//! A segment's stream depends on its codes alone (and on whether binned streams are allowed,
//! the same for the whole column), so the bytes are the same however the segments are shared
//! out. The streams are not framed by their lengths: the decoder first steps over each to find
//! where the next starts ([`skip`]), which reads a few header fields and section lengths.

use std::sync::{Arc, Mutex};

use crate::bytes::{ByteReader, DecodeResult};
use crate::entropy::{CodeCoder, skip};
use crate::segments::{decode_parts, threads};
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

    /// Appends `codes` as one stream with `coder`, or where `segmented` as one stream per
    /// [`STREAM_SEGMENT`] codes, binned streams allowed as `coder` allows them.
    pub(super) fn encode(
        &mut self,
        codes: &[i32],
        segmented: bool,
        coder: &mut CodeCoder,
        out: &mut Vec<u8>,
    ) {
        let segments = codes.len().div_ceil(STREAM_SEGMENT);
        if !segmented || segments <= 1 {
            coder.encode(codes, out);
            return;
        }
        if self.bytes.len() < segments {
            self.bytes.resize_with(segments, Default::default);
        }
        let bytes = &self.bytes[..segments];
        let binned = coder.binned();
        let threads = threads(&mut self.scratch, segments);
        self.spare.share(segments, threads, |s, mine| {
            let seg = &codes[s * STREAM_SEGMENT..((s + 1) * STREAM_SEGMENT).min(codes.len())];
            let mut b = bytes[s].lock().unwrap_or_else(|e| e.into_inner());
            b.clear();
            mine.coder.allow_binned(binned);
            mine.coder.encode(seg, &mut b);
        });
        for b in bytes {
            out.extend_from_slice(&b.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }

    /// Reads `n` codes written by [`encode`](Self::encode) into `out` (replacing its
    /// contents).
    pub(super) fn decode(
        &mut self,
        r: &mut ByteReader<'_>,
        n: usize,
        segmented: bool,
        coder: &mut CodeCoder,
        out: &mut Vec<i32>,
    ) -> DecodeResult<()> {
        if !segmented || n <= STREAM_SEGMENT {
            return coder.decode(r, n, out);
        }
        let segments = n.div_ceil(STREAM_SEGMENT);
        // One allocation for the whole stream (a column grown segment by segment maps and
        // touches fresh pages that threads decoding at once pay for together).
        out.clear();
        out.resize(n, 0);
        let threads = threads(&mut self.scratch, segments);
        decode_parts(
            (r, out, STREAM_SEGMENT),
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
    fn segments_shared_out_code_and_decode_as_on_one_thread() {
        let all = codes(3 * STREAM_SEGMENT + 4321, 5);
        let spare = Spare::new(3);
        for binned in [false, true] {
            let mut coder = CodeCoder::new();
            coder.allow_binned(binned);
            // One thread, segment by segment, as format version 8 defines the streams.
            let mut want = Vec::new();
            for seg in all.chunks(STREAM_SEGMENT) {
                coder.encode(seg, &mut want);
            }
            for lent in [false, true] {
                let mut st = Streams::default();
                if lent {
                    st.lending(Arc::clone(&spare));
                }
                let mut got = Vec::new();
                st.encode(&all, true, &mut coder, &mut got);
                assert_eq!(got, want, "binned {binned}, lent {lent}");
                let mut back = vec![7; 3];
                let mut r = ByteReader::new(&got);
                st.decode(&mut r, all.len(), true, &mut coder, &mut back)
                    .unwrap();
                assert!(r.is_empty());
                assert_eq!(back, all);
                // Truncated or corrupted: errors, never a panic.
                for cut in [1, got.len() / 3, got.len() - 1] {
                    let mut r = ByteReader::new(&got[..cut]);
                    assert!(
                        st.decode(&mut r, all.len(), true, &mut coder, &mut back)
                            .is_err()
                    );
                }
                let mut bad = got.clone();
                for i in (0..bad.len()).step_by(997) {
                    bad[i] ^= 0x5a;
                }
                let _ = st.decode(
                    &mut ByteReader::new(&bad),
                    all.len(),
                    true,
                    &mut coder,
                    &mut back,
                );
            }
        }
        // Short or unsegmented: one stream.
        let mut st = Streams::default();
        let mut coder = CodeCoder::new();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        st.encode(&all[..1000], true, &mut coder, &mut a);
        coder.encode(&all[..1000], &mut b);
        assert_eq!(a, b);
        let mut c = Vec::new();
        st.encode(&all, false, &mut coder, &mut c);
        let mut d = Vec::new();
        coder.encode(&all, &mut d);
        assert_eq!(c, d);
    }
}
