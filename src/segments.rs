//! A quantized column's code streams, one per segment of [`SEGMENT`] values: coded and decoded
//! each as a task, on the calling thread or on a core the pipeline's workers left idle
//! ([`crate::spare`]); in a column of few segments, a segment split by context is decoded by
//! parts, its context streams in groups and then their merge ([`SPLIT_CODES`]).
//!
//! A segment's stream depends on its codes alone (and on whether binned streams are allowed,
//! the same for the whole column), so the bytes are the same however the segments are shared
//! out. The streams are not framed by their lengths: the decoder first steps over each to find
//! where the next starts ([`skip_either`]), which reads a few header fields and section
//! lengths per stream.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::bytes::{ByteReader, DecodeResult, Malformed};
use crate::column::SEGMENT;
use crate::disjoint::Disjoint;
use crate::entropy::{
    CONTEXTS, CodeCoder, ContextStreams, merge_contexts, open_contexts, skip_either,
};
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
    /// The context streams of the segments decoded by parts ([`Job::Streams`]), one segment
    /// after another, each followed by one code more.
    flat: Vec<i32>,
}

/// Segments of at least this many codes split by context, in a column of at most
/// [`SPLIT_MOST`] segments, are decoded by parts: their context streams in [`PARTS`] groups,
/// each a task ([`Job::Streams`]), then merged by the thread that decodes the last group (so
/// no thread waits for another). The merge is serial, and a segment's streams take about as
/// long to decode as their merge, so where a column has few segments for its cores (a small
/// field's three on two cores: the first, the coarse levels' codes, twice as costly as the
/// others) the tasks come out more even.
const SPLIT_CODES: usize = 16 << 10;
/// Most segments of a column decoded by parts: a column of more keeps its cores busy with
/// whole ones, each decoded in its thread's scratch, which stays in cache (split ones hold
/// their streams until merged; splitting the image's sixteen cost it 3%).
const SPLIT_MOST: usize = 8;
/// Groups of a split segment's context streams.
const PARTS: usize = 3;

/// A segment decoded by parts ([`SPLIT_CODES`]).
struct Split<'a> {
    counts: [usize; CONTEXTS],
    /// Its codes (the counts' sum).
    n: usize,
    /// Where its streams start in [`Segments::flat`].
    at: usize,
    /// Groups of its streams not decoded yet: the one that decodes the last merges them.
    left: AtomicUsize,
    /// Its part of the codes, and how its merge went.
    merge: Mutex<(&'a mut [i32], DecodeResult<()>)>,
}

/// One task of [`Segments::decode`].
enum Job<'a, 'b> {
    /// A whole segment, the `usize`th.
    Whole(usize, Task<'a, 'b>),
    /// A group of a split segment's context streams: where the first starts, each one's
    /// place in its segment's flat streams and count, and how many bytes remain after the
    /// last.
    Streams {
        split: usize,
        r: ByteReader<'b>,
        streams: Vec<(usize, usize)>,
        end: usize,
        result: DecodeResult<()>,
    },
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
    #[allow(unsafe_code)]
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
        if segments == 1 && k.len() < SPLIT_CODES {
            let mine = &mut threads(&mut self.scratch, 1)[0];
            return decode_segment(mine, r, of(0), 0, k);
        }
        // Each segment's job, or jobs where it is decoded by parts: the streams stepped over
        // to find where each starts.
        let mut splits = Vec::new();
        let mut jobs = Vec::new();
        let mut flat_len = 0;
        for (s, dst) in k.chunks_mut(SEGMENT).enumerate() {
            let start = r.clone();
            let n = dst.len() - of(s).len();
            if of(s).is_empty()
                && n >= SPLIT_CODES
                && segments <= SPLIT_MOST
                && let Some(streams) = open_contexts(r, n)?
            {
                let groups = split_jobs(splits.len(), &streams, r.remaining(), &mut jobs);
                let unmerged = Err(Malformed::new("a segment's streams were not merged"));
                splits.push(Split {
                    counts: streams.counts,
                    n,
                    at: flat_len,
                    left: AtomicUsize::new(groups),
                    merge: Mutex::new((dst, unmerged)),
                });
                flat_len += n + 1;
                continue;
            }
            skip_either(r, n)?;
            let end = r.remaining();
            let task = Task {
                r: start,
                end,
                dst,
                result: Ok(()),
            };
            jobs.push(Mutex::new(Job::Whole(s, task)));
        }
        // Every place is written before it is read (a group's streams, or the code after
        // each segment's streams here).
        self.flat.resize(flat_len, 0);
        for sp in &splits {
            self.flat[sp.at + sp.n] = 0;
        }
        let flat = Disjoint::new(&mut self.flat);
        let threads = threads(&mut self.scratch, jobs.len());
        spare.share(jobs.len(), threads, |j, mine| {
            let mut job = jobs[j].lock().unwrap_or_else(|e| e.into_inner());
            match &mut *job {
                Job::Whole(s, t) => {
                    t.result = decode_segment(mine, &mut t.r, of(*s), *s * SEGMENT, t.dst)
                        .and_then(|()| ends(&t.r, t.end));
                }
                Job::Streams {
                    split,
                    r,
                    streams,
                    end,
                    result,
                } => {
                    let sp = &splits[*split];
                    *result = streams
                        .iter()
                        .try_for_each(|&(place, count)| {
                            // SAFETY: each group decodes into its own streams' places, which
                            // nothing reads until every group of the segment is done (the
                            // last one merges them).
                            let into = unsafe { flat.slice_mut(sp.at + place, count) };
                            mine.coder.decode_into(r, into)
                        })
                        .and_then(|()| ends(r, *end));
                    // The last group done merges the segment's streams, on its thread (a
                    // merge waits for nothing); where a group failed, its error is the one
                    // reported.
                    if sp.left.fetch_sub(1, Ordering::AcqRel) == 1 {
                        // SAFETY: every group of the segment is done (their decrements are
                        // acquired above), and nothing writes these places any more.
                        let streams = unsafe { flat.slice(sp.at, sp.n + 1) };
                        let mut merge = sp.merge.lock().unwrap_or_else(|e| e.into_inner());
                        let (dst, merged) = &mut *merge;
                        *merged = merge_contexts(streams, &sp.counts, dst);
                    }
                }
            }
        });
        // A group's error, else a merge's.
        jobs.into_iter().try_for_each(|j| {
            match j.into_inner().unwrap_or_else(|e| e.into_inner()) {
                Job::Whole(_, t) => t.result,
                Job::Streams { result, .. } => result,
            }
        })?;
        splits.into_iter().try_for_each(|sp| {
            let (_, merged) = sp.merge.into_inner().unwrap_or_else(|e| e.into_inner());
            merged
        })
    }
}

/// Checks that a segment's streams end where the next segment's start.
fn ends(r: &ByteReader<'_>, end: usize) -> DecodeResult<()> {
    if r.remaining() != end {
        return Err(Malformed::new(
            "a segment's code stream does not end where the next one starts",
        ));
    }
    Ok(())
}

/// Appends the jobs of split segment `split`'s context `streams` to `jobs`: groups of about
/// `1 / PARTS` of its codes each, in order, the last ending where `end` bytes remain; returns
/// how many.
fn split_jobs<'b>(
    split: usize,
    streams: &ContextStreams<'b>,
    end: usize,
    jobs: &mut Vec<Mutex<Job<'_, 'b>>>,
) -> usize {
    let ContextStreams { counts, streams } = streams;
    let n: usize = counts.iter().sum();
    // Where each context's stream goes in the segment's flat streams.
    let mut places = [0; CONTEXTS];
    for x in 1..CONTEXTS {
        places[x] = places[x - 1] + counts[x - 1];
    }
    let mut groups = 0;
    let mut i = 0;
    while i < streams.len() {
        let first = streams[i].0.clone();
        let (mut group, mut codes) = (Vec::new(), 0);
        while i < streams.len() && (codes == 0 || codes < n / PARTS) {
            let x = streams[i].1;
            group.push((places[x], counts[x]));
            codes += counts[x];
            i += 1;
        }
        jobs.push(Mutex::new(Job::Streams {
            split,
            r: first,
            streams: group,
            end: streams.get(i).map_or(end, |(r, _)| r.remaining()),
            result: Ok(()),
        }));
        groups += 1;
    }
    groups
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
        let Task {
            r,
            end,
            dst,
            result,
        } = &mut *t;
        *result = decode(mine, r, s, dst).and_then(|()| ends(r, *end));
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
    fn segments_split_by_context_decode_by_parts_as_whole() {
        // Whole segments and a last one just long enough are decoded by parts (their context
        // streams in groups, then merged), a short last one whole, a column of one segment by
        // parts; on every number of cores.
        for (whole, last, split) in [(2, SPLIT_CODES, true), (2, 700, false), (0, 40_000, true)] {
            let n = whole * SEGMENT + last;
            let mut all = codes(whole * SEGMENT, 5);
            all.extend(codes(last, 6));
            let (mut coder, none) = (Segments::default(), Spare::new(0));
            let mut bytes = Vec::new();
            coder.encode(Stream::Dense(&all), &[], false, &none, &mut bytes);
            // Which segments are split by context (the long ones), or this tests nothing.
            let mut r = ByteReader::new(&bytes);
            let mut by_context = Vec::new();
            for seg in all.chunks(SEGMENT) {
                let mut probe = r.clone();
                by_context.push(matches!(open_contexts(&mut probe, seg.len()), Ok(Some(_))));
                skip_either(&mut r, seg.len()).unwrap();
            }
            assert_eq!(by_context[..whole], [true; 2][..whole]);
            assert_eq!(by_context[whole], split);
            assert!(r.is_empty());
            for idle in [0, 1, 2, 7] {
                let (mut decoder, spare) = (Segments::default(), Spare::new(idle));
                for _ in 0..3 {
                    let mut k = vec![9; n];
                    let mut r = ByteReader::new(&bytes);
                    decoder.decode(&mut r, &[], &spare, &mut k).unwrap();
                    assert!(r.is_empty());
                    assert_eq!(k, all, "{idle} lent");
                }
                // Damaged anywhere (a group's streams, a head, a count): errors, never a
                // panic.
                for i in (0..bytes.len()).step_by(bytes.len() / 150 + 1) {
                    let mut bad = bytes.clone();
                    bad[i] ^= 0x5a;
                    let mut k = vec![0; n];
                    let _ = decoder.decode(&mut ByteReader::new(&bad), &[], &spare, &mut k);
                    let cut = ByteReader::new(&bytes[..i]);
                    assert!(
                        decoder
                            .decode(&mut cut.clone(), &[], &spare, &mut k)
                            .is_err()
                    );
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
