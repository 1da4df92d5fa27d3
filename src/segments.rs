//! A quantized column's code streams, one per segment of [`SEGMENT`] values: coded and decoded
//! each as a task, on the calling thread or on a core the pipeline's workers left idle
//! ([`crate::spare`]).
//!
//! A segment's stream depends on its codes alone (and on whether binned streams are allowed,
//! the same for the whole column), so the bytes are the same however the segments are shared
//! out. The streams are not framed by their lengths: the decoder first steps over each to find
//! where the next starts ([`skip_either`]), which reads a few header fields and section
//! lengths per stream.

use std::sync::Mutex;

use crate::bytes::{ByteReader, DecodeResult, Malformed};
use crate::column::SEGMENT;
use crate::entropy::{CONTEXTS, CodeCoder, skip_either};
use crate::residual::positions_within;
use crate::spare::Spare;

/// A quantized column's codes, as the encoder holds them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream<'a> {
    /// One code per value in column order, exceptions included (their codes are left out, so
    /// segment `s` holds the codes of values `s·SEGMENT..(s+1)·SEGMENT` that are not
    /// exceptions).
    ByPosition(&'a [i32]),
    /// Only the codes of values that are not exceptions, in the predictor's decoding order,
    /// in segments of `SEGMENT` codes: consecutive codes are neighbours on the grid.
    Dense(&'a [i32]),
}

/// One thread's scratch.
#[derive(Debug, Default)]
struct Scratch {
    coder: CodeCoder,
    split: [Vec<i32>; CONTEXTS],
    codes: Vec<i32>,
}

/// Most threads on one column's segments, the caller's included.
const MOST_THREADS: usize = 16;

/// Codes and decodes a column's segments, with each thread's scratch (the caller's first).
#[derive(Debug, Default)]
pub(crate) struct Segments {
    scratch: Vec<Scratch>,
    /// Each segment's stream, while a column is coded.
    streams: Vec<Mutex<Vec<u8>>>,
}

/// Replaces `out` with the codes of `src` that are not at `positions` (relative, increasing).
fn gather(src: &[i32], positions: impl Iterator<Item = usize>, out: &mut Vec<i32>) {
    out.clear();
    let mut start = 0;
    for p in positions {
        out.extend_from_slice(&src[start..p]);
        start = p + 1;
    }
    out.extend_from_slice(&src[start..]);
}

/// Fills `out` with `codes` in order and `mark` at each of `positions` (relative to its start,
/// increasing, and as many as `out` has room for beyond `codes`).
pub(crate) fn scatter(
    codes: &[i32],
    positions: impl Iterator<Item = usize>,
    mark: i32,
    out: &mut [i32],
) {
    let (mut k, mut at) = (0, 0);
    for p in positions {
        let run = p - at;
        out[at..p].copy_from_slice(&codes[k..k + run]);
        out[p] = mark;
        k += run;
        at = p + 1;
    }
    let rest = out.len() - at;
    out[at..].copy_from_slice(&codes[k..k + rest]);
}

/// Scratch for up to `segments` threads.
pub(crate) fn threads<S: Default>(scratch: &mut Vec<S>, segments: usize) -> &mut [S] {
    let n = segments.clamp(1, MOST_THREADS);
    if scratch.len() < n {
        scratch.resize_with(n, Default::default);
    }
    &mut scratch[..n]
}

/// One segment to decode: where its stream starts and how many bytes remain after it, its
/// part of the column's codes, and how it went.
struct Task<'a, 'b> {
    r: ByteReader<'b>,
    end: usize,
    dst: &'a mut [i32],
    result: DecodeResult<()>,
}

impl Segments {
    /// Appends one stream per segment of `stream` to `out` (exceptions at `exc`, increasing
    /// positions, left out of a [`Stream::ByPosition`]); `binned` as
    /// [`CodeCoder::allow_binned`]; idle cores borrowed from `spare`.
    pub(crate) fn encode(
        &mut self,
        stream: Stream<'_>,
        exc: &[u32],
        binned: bool,
        spare: &Spare,
        out: &mut Vec<u8>,
    ) {
        let (all, by_position) = match stream {
            Stream::Dense(c) => (c, false),
            Stream::ByPosition(c) => (c, true),
        };
        let segments = all.len().div_ceil(SEGMENT);
        let threads = threads(&mut self.scratch, segments);
        encode_parts(
            segments,
            &mut self.streams,
            (spare, threads),
            out,
            |s, mine, bytes| {
                let Scratch {
                    coder,
                    split,
                    codes,
                } = mine;
                let (base, end) = (s * SEGMENT, ((s + 1) * SEGMENT).min(all.len()));
                let seg = if by_position {
                    let rel = exc[positions_within(exc, base, end)]
                        .iter()
                        .map(|&p| p as usize - base);
                    gather(&all[base..end], rel, codes);
                    &codes[..]
                } else {
                    &all[base..end]
                };
                coder.allow_binned(binned);
                coder.encode_either(seg, split, bytes);
            },
        );
    }

    /// Decodes the streams of the segments of `k` from `r` into `k`: for a
    /// [`Stream::Dense`] column (`exc` empty) the codes in decoding order, for a
    /// [`Stream::ByPosition`] one code per value, 0 at the exceptions at `exc` (increasing
    /// positions below `k.len()`); idle cores borrowed from `spare`.
    pub(crate) fn decode(
        &mut self,
        r: &mut ByteReader<'_>,
        exc: &[u32],
        spare: &Spare,
        k: &mut [i32],
    ) -> DecodeResult<()> {
        let segments = k.len().div_ceil(SEGMENT);
        // Each segment's exceptions (positions from its start).
        let of = |s: usize| &exc[positions_within(exc, s * SEGMENT, (s + 1) * SEGMENT)];
        if segments == 0 {
            return Ok(());
        }
        if segments == 1 {
            let mine = &mut threads(&mut self.scratch, 1)[0];
            return decode_segment(mine, r, of(0), 0, k);
        }
        let threads = threads(&mut self.scratch, segments);
        decode_parts(
            (r, k.chunks_mut(SEGMENT)),
            |r, s, len| skip_either(r, len - of(s).len()),
            (spare, threads),
            |mine, r, s, dst| decode_segment(mine, r, of(s), s * SEGMENT, dst),
        )
    }
}

/// Appends one stream for each of `parts` parts to `out`, in order, each coded as a task
/// (`encode(part, scratch, its bytes)`, the bytes empty) on the calling thread or on idle cores
/// from `spare`, each thread with its scratch in `threads`; `bytes` holds each part's stream
/// meanwhile (kept, so its buffers serve the next column).
pub(crate) fn encode_parts<S: Send>(
    parts: usize,
    bytes: &mut Vec<Mutex<Vec<u8>>>,
    (spare, threads): (&Spare, &mut [S]),
    out: &mut Vec<u8>,
    encode: impl Fn(usize, &mut S, &mut Vec<u8>) + Sync,
) {
    if bytes.len() < parts {
        bytes.resize_with(parts, Default::default);
    }
    let bytes = &bytes[..parts];
    spare.share(parts, threads, |s, mine| {
        let mut b = bytes[s].lock().unwrap_or_else(|e| e.into_inner());
        b.clear();
        encode(s, mine, &mut b);
    });
    for b in bytes {
        out.extend_from_slice(&b.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// Decodes one stream for each of `parts` (slices of codes to fill, in the order their streams
/// follow each other in `r`), each as a task: first steps over the streams to find where each
/// starts (`skip(r, part, its length)`), then decodes each (`decode(scratch, r, part, its
/// codes)`) on the calling thread or on idle cores from `spare`, each thread with its scratch
/// in `threads`, and checks that each ends where the next starts.
pub(crate) fn decode_parts<'k, S: Send>(
    (r, parts): (&mut ByteReader<'_>, impl Iterator<Item = &'k mut [i32]>),
    skip: impl Fn(&mut ByteReader<'_>, usize, usize) -> DecodeResult<()>,
    (spare, threads): (&Spare, &mut [S]),
    decode: impl Fn(&mut S, &mut ByteReader<'_>, usize, &mut [i32]) -> DecodeResult<()> + Sync,
) -> DecodeResult<()> {
    let mut tasks = Vec::new();
    for (s, dst) in parts.enumerate() {
        let start = r.clone();
        skip(r, s, dst.len())?;
        tasks.push(Mutex::new(Task {
            r: start,
            end: r.remaining(),
            dst,
            result: Ok(()),
        }));
    }
    spare.share(tasks.len(), threads, |s, mine| {
        let mut t = tasks[s].lock().unwrap_or_else(|e| e.into_inner());
        let Task { r, end, dst, .. } = &mut *t;
        let mut result = decode(mine, r, s, dst);
        if result.is_ok() && r.remaining() != *end {
            result = Err(Malformed::new(
                "a segment's code stream does not end where the next one starts",
            ));
        }
        t.result = result;
    });
    tasks
        .into_iter()
        .try_for_each(|t| t.into_inner().unwrap_or_else(|e| e.into_inner()).result)
}

/// Decodes the segment whose first value is at `base` from `r` into `dst`, its part of the
/// column's codes (see [`Segments::decode`]), with its exceptions at `exc`: one code for each
/// of its values but those.
fn decode_segment(
    mine: &mut Scratch,
    r: &mut ByteReader<'_>,
    exc: &[u32],
    base: usize,
    dst: &mut [i32],
) -> DecodeResult<()> {
    if exc.is_empty() {
        return mine.coder.decode_either_into(r, dst, &mut mine.codes);
    }
    let n = dst.len() - exc.len();
    mine.coder.decode_either(r, n, &mut mine.codes)?;
    let rel = exc.iter().map(|&p| p as usize - base);
    scatter(&mine.codes, rel, 0, dst);
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Codes like a field's: runs of small codes and busier stretches.
    pub(crate) fn codes(n: usize, seed: u64) -> Vec<i32> {
        let mut x = seed;
        (0..n)
            .map(|i| {
                // xorshift64
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let r = (x >> 33) as i32;
                if (i / 5000) % 3 == 0 {
                    r % 41 - 20
                } else {
                    (r % 7 == 0) as i32 * (r % 3 - 1)
                }
            })
            .collect()
    }

    #[test]
    fn segments_shared_out_code_and_decode_as_on_one_thread() {
        let n = 5 * SEGMENT + 1234;
        let all = codes(n, 3);
        // Exceptions: scattered, and a whole segment of them (a segment of no codes).
        let mut exc: Vec<u32> = (0..n as u32).filter(|p| p % 97 == 5).collect();
        exc.extend((2 * SEGMENT as u32..3 * SEGMENT as u32).filter(|p| p % 97 != 5));
        exc.sort_unstable();
        let mut by_position = all.clone();
        for &p in &exc {
            by_position[p as usize] = 0;
        }
        for (stream, exc) in [
            (Stream::Dense(&all), &[][..]),
            (Stream::ByPosition(&by_position), &exc[..]),
        ] {
            let (mut serial, none) = (Segments::default(), Spare::new(0));
            let mut one = Vec::new();
            serial.encode(stream, exc, false, &none, &mut one);
            for idle in [1, 2, 7] {
                let (mut shared, spare) = (Segments::default(), Spare::new(idle));
                let mut bytes = Vec::new();
                shared.encode(stream, exc, false, &spare, &mut bytes);
                assert_eq!(bytes, one, "{idle} lent");
                for (decoder, spare) in [(&mut serial, &none), (&mut shared, &spare)] {
                    let mut k = vec![9; n];
                    let mut r = ByteReader::new(&bytes);
                    decoder.decode(&mut r, exc, spare, &mut k).unwrap();
                    assert!(r.is_empty());
                    let want = match stream {
                        Stream::Dense(c) | Stream::ByPosition(c) => c,
                    };
                    assert_eq!(k, want);
                }
                // Damaged: errors, never panics, shared out or not.
                for i in (0..bytes.len()).step_by(bytes.len() / 60 + 1) {
                    let mut bad = bytes.clone();
                    bad[i] ^= 0x5a;
                    let mut k = vec![0; n];
                    let _ = shared.decode(&mut ByteReader::new(&bad), exc, &spare, &mut k);
                    let _ = shared.decode(&mut ByteReader::new(&bytes[..i]), exc, &spare, &mut k);
                }
            }
        }
    }

    #[test]
    fn scatter_puts_the_mark_at_the_positions() {
        let mut out = [7; 6];
        scatter(&[1, 2, 3], [0, 2, 5].into_iter(), 0, &mut out);
        assert_eq!(out, [0, 1, 0, 2, 3, 0]);
        let mut back = Vec::new();
        gather(&out, [0, 2, 5].into_iter(), &mut back);
        assert_eq!(back, [1, 2, 3]);
        scatter(&[1, 2, 3], [1, 3, 4].into_iter(), -9, &mut out);
        assert_eq!(out, [1, -9, 2, -9, -9, 3]);
    }
}
