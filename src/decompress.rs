//! The streaming decompressor.

use std::io::{self, Read};
use std::sync::Arc;

use crossbeam_channel::bounded;

use crate::compress::resolve_threads;
use crate::container::{ContainerReader, Frame, Header, MAX_CHUNK_BYTES};
use crate::element::{ArrayData, DType};
use crate::error::{Error, Result};
use crate::pipeline::{
    AnyCodec, DEFAULT_MEMORY_LIMIT, DecodeJob, DecodeMsg, DecodePool, chunk_cost, wait_reply,
};

/// How to decompress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecompressOptions {
    /// Worker threads (0 = one per core).
    pub threads: usize,
    /// Most bytes the chunks being decoded and the buffers kept for reuse may take together
    /// (default [`DEFAULT_MEMORY_LIMIT`], 1 GiB). A chunk needing more than half of it is refused
    /// with [`Error::MemoryLimit`] before anything is allocated for it; smaller chunks wait
    /// for earlier ones to be consumed, so a file whose chunks claim any size decodes within
    /// the limit or not at all.
    pub memory_limit: u64,
}

impl Default for DecompressOptions {
    fn default() -> Self {
        DecompressOptions {
            threads: 0,
            memory_limit: DEFAULT_MEMORY_LIMIT,
        }
    }
}

/// Decompresses a container read from `R`, chunk by chunk, in order.
///
/// A reader thread reads chunks and worker threads decode them while the caller consumes
/// earlier ones. Use [`next_chunk`](Self::next_chunk) for typed values, or [`Read`] for their
/// little-endian bytes. The end mark and footer are verified before the stream reports its end,
/// so a truncated container is an error, never a short result. After the end,
/// [`into_inner`](Self::into_inner) gives back the reader, positioned just after the
/// container (another one may follow in the same stream).
///
/// ```
/// use baler::{ArraySpec, BoundSpec, Bounds, CompressOptions, DType, Decompressor, compress_slice};
/// let data: Vec<f64> = (0..5000).map(|i| (i as f64 * 0.01).sin()).collect();
/// let spec = ArraySpec::new(DType::F64, vec![5000]);
/// let packed = compress_slice(&data, &spec, &CompressOptions::new(Bounds::new(BoundSpec::Rel(1e-4)))).unwrap();
/// let mut d = Decompressor::new(std::io::Cursor::new(packed)).unwrap();
/// let mut n = 0;
/// while let Some(chunk) = d.next_chunk().unwrap() {
///     n += chunk.len();
/// }
/// assert_eq!(n, 5000);
/// ```
pub struct Decompressor<R: Read + Send + 'static> {
    header: Header,
    pool: Option<DecodePool<Option<R>>>,
    /// The reader, back from the reader thread once the end was read.
    inner: Option<R>,
    /// Bytes of the chunk being served through `Read`, and how far it has been read.
    current: Option<(ArrayData, usize)>,
    records: u64,
    chunks: u64,
    /// The share of the memory budget the chunk last handed out holds.
    held: u64,
    finished: bool,
    failed: bool,
}

impl<R: Read + Send + 'static> std::fmt::Debug for Decompressor<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor")
            .field("header", &self.header)
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

impl<R: Read + Send + 'static> Decompressor<R> {
    /// Reads the header and starts decoding with one thread per core.
    pub fn new(reader: R) -> Result<Self> {
        Self::with_threads(reader, 0)
    }

    /// Reads the header and starts decoding with `threads` workers (0 = one per core).
    pub fn with_threads(reader: R, threads: usize) -> Result<Self> {
        Self::with_options(
            reader,
            DecompressOptions {
                threads,
                ..DecompressOptions::default()
            },
        )
    }

    /// Reads the header and starts decoding with these options.
    pub fn with_options(reader: R, options: DecompressOptions) -> Result<Self> {
        let mut cr = ContainerReader::new(reader)?;
        let header = cr.header().clone();
        let threads = resolve_threads(options.threads);
        let limit = options.memory_limit;
        // No payload may take more than a chunk's share of the budget.
        cr.limit_memory(limit);
        let record_len = header.record_len;
        let dtype = header.spec.dtype;
        let params = Arc::new(header.codec_params());
        let pool = DecodePool::start(
            threads,
            limit,
            dtype,
            params,
            move |mut jobs, order, payloads, budget| {
                loop {
                    match cr.next_frame_reusing(payloads.take().unwrap_or_default()) {
                        Ok(Frame::Chunk {
                            index,
                            records,
                            kind,
                            payload,
                        }) => {
                            let values = (records as u64).checked_mul(record_len);
                            let Some(values) = values.filter(|v| {
                                v.saturating_mul(dtype.size() as u64) <= MAX_CHUNK_BYTES
                            }) else {
                                let e = Error::chunk(
                                    index,
                                    format!(
                                        "{records} records of {record_len} values exceed any chunk baler writes"
                                    ),
                                );
                                let _ = order.send(DecodeMsg::Failed(e));
                                return None;
                            };
                            let cost = chunk_cost(dtype, values, payload.len());
                            if cost > budget.limit() {
                                let e = Error::MemoryLimit {
                                    chunk: index,
                                    records: records as u64,
                                    needs: cost,
                                    limit,
                                };
                                let _ = order.send(DecodeMsg::Failed(e));
                                return None;
                            }
                            if !budget.reserve(cost) {
                                return None;
                            }
                            let (tx, rx) = bounded(1);
                            if order.send(DecodeMsg::Chunk(rx, cost)).is_err() {
                                return None;
                            }
                            let job = DecodeJob {
                                chunk: index,
                                kind,
                                payload,
                                values: values as usize,
                                reply: tx,
                            };
                            if jobs.send(job).is_err() {
                                return None;
                            }
                        }
                        Ok(Frame::End { .. }) => {
                            let (msg, inner) = match cr.read_footer() {
                                Ok(_) => (DecodeMsg::End, Some(cr.into_inner())),
                                Err(e) => (DecodeMsg::Failed(e), None),
                            };
                            let _ = order.send(msg);
                            return inner;
                        }
                        Err(e) => {
                            let _ = order.send(DecodeMsg::Failed(e));
                            return None;
                        }
                    }
                }
            },
        );
        Ok(Decompressor {
            header,
            pool: Some(pool?),
            inner: None,
            current: None,
            records: 0,
            chunks: 0,
            held: 0,
            finished: false,
            failed: false,
        })
    }

    /// The container header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Reads (and discards) whatever chunks remain, verifies the end, and gives back the reader,
    /// positioned just after the container.
    pub fn into_inner(mut self) -> Result<R> {
        while let Some(chunk) = self.next_chunk()? {
            self.recycle(chunk);
        }
        self.inner
            .take()
            .ok_or_else(|| Error::Io(io::Error::other("the reader was lost after an error")))
    }

    /// Reads whatever chunks remain, verifies the end, and requires the input to end there too:
    /// anything after a container (a second one appended, stray bytes) is an error, as in
    /// zstd. Use [`into_inner`](Self::into_inner) to read what follows instead.
    pub fn finish(self) -> Result<()> {
        let mut rest = self.into_inner()?;
        let mut probe = [0u8; 64];
        let n = loop {
            match rest.read(&mut probe) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        if n > 0 {
            let what = if probe[..n.min(8)] == crate::container::MAGIC[..n.min(8)] {
                "another container"
            } else {
                "bytes that are not part of it"
            };
            return Err(Error::InvalidInput(format!(
                "{what} after the end of the container: baler reads one container per file \
                 (split them, or use the library's Decompressor::into_inner to go on)"
            )));
        }
        Ok(())
    }

    /// Hands back a chunk returned by [`next_chunk`](Self::next_chunk) once done with it, so its
    /// memory serves a later chunk (optional: it saves allocations, nothing else).
    pub fn recycle(&self, data: ArrayData) {
        if let Some(p) = &self.pool {
            p.recycle(data);
        }
    }

    /// Records returned so far.
    pub fn records_read(&self) -> u64 {
        self.records
    }

    /// Chunks returned so far.
    pub fn chunks_read(&self) -> u64 {
        self.chunks
    }

    /// The next chunk's values (whole records, row-major), or `None` after the last one once the
    /// end mark and footer have been verified.
    pub fn next_chunk(&mut self) -> Result<Option<ArrayData>> {
        if self.finished {
            return Ok(None);
        }
        if self.failed {
            return Err(Error::Io(io::Error::other("decompression already failed")));
        }
        let Some(pool) = &self.pool else {
            return Ok(None);
        };
        // The caller is done with the chunk handed out before.
        pool.release(std::mem::take(&mut self.held));
        let result = match pool.next() {
            Some(DecodeMsg::Chunk(rx, cost)) => {
                self.held = cost;
                wait_reply(&rx).map(|d| Some(d.data))
            }
            Some(DecodeMsg::End) => {
                self.finished = true;
                if let Some(p) = self.pool.take() {
                    self.inner = p.join().flatten();
                }
                return Ok(None);
            }
            Some(DecodeMsg::Failed(e)) => Err(e),
            None => Err(Error::Io(io::Error::other(
                "the reader thread stopped unexpectedly",
            ))),
        };
        match result {
            Ok(Some(data)) => {
                self.chunks += 1;
                self.records += (data.len() as u64) / self.header.record_len.max(1);
                Ok(Some(data))
            }
            Err(e) => {
                self.failed = true;
                self.pool.take();
                Err(e)
            }
            Ok(None) => Ok(None),
        }
    }
}

impl<R: Read + Send + 'static> Read for Decompressor<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some((data, pos)) = &mut self.current {
                let bytes = data.as_le_bytes();
                if *pos < bytes.len() {
                    let n = buf.len().min(bytes.len() - *pos);
                    buf[..n].copy_from_slice(&bytes[*pos..*pos + n]);
                    *pos += n;
                    return Ok(n);
                }
            }
            match self.next_chunk()? {
                Some(data) => self.current = Some((data, 0)),
                None => return Ok(0),
            }
        }
    }
}

/// Decodes one chunk read by [`read_chunk_at`](crate::container::read_chunk_at) (random access
/// through the footer index: [`read_trailer`](crate::container::read_trailer)), returning its
/// records' values row-major.
pub fn decompress_chunk(header: &Header, frame: Frame) -> Result<ArrayData> {
    let Frame::Chunk {
        index,
        records,
        kind,
        payload,
    } = frame
    else {
        return Err(Error::InvalidInput("not a chunk".into()));
    };
    let values = (records as u64)
        .checked_mul(header.record_len)
        .filter(|v| v.saturating_mul(header.spec.dtype.size() as u64) <= MAX_CHUNK_BYTES)
        .ok_or_else(|| Error::chunk(index, "larger than any chunk baler writes"))?;
    let dtype = header.spec.dtype;
    let mut codec = AnyCodec::take(dtype, Arc::new(header.codec_params()));
    let mut out = ArrayData::with_capacity(dtype, values as usize);
    codec.decode(index, kind, &payload, values as usize, &mut out)?;
    codec.keep();
    Ok(out)
}

/// Decompresses a whole container held in memory into `out`, which must hold exactly its
/// values (row-major; the footer index tells how many: [`crate::container::read_trailer`]).
/// The chunks are found through the footer index, checked against every chunk's own header,
/// and decoded on `threads` workers (0: one per core), each writing its chunks' part of
/// `out` directly: no second copy of the values and no reader thread, for callers that own
/// the destination (a NumPy array, a memory-mapped file). Returns the header.
pub fn decompress_into<T: crate::Element>(
    bytes: &[u8],
    out: &mut [T],
    threads: usize,
) -> Result<Header> {
    use crate::container::{read_chunk_at, read_trailer, verify_trailer};
    use std::sync::Mutex;
    let mut c = io::Cursor::new(bytes);
    let header = Header::read_from(&mut c)?;
    let trailer = read_trailer(&mut c)?;
    verify_trailer(&mut c, &trailer)?;
    if T::DTYPE != header.spec.dtype {
        return Err(Error::InvalidOption(format!(
            "the container holds {} values, the destination is of {}",
            header.spec.dtype,
            T::DTYPE
        )));
    }
    let record_len = header.record_len.max(1) as usize;
    if trailer.records.checked_mul(record_len as u64) != Some(out.len() as u64) {
        return Err(Error::InvalidOption(format!(
            "the container holds {} records of {record_len} values, the destination {} values",
            trailer.records,
            out.len()
        )));
    }
    // Each chunk's own part of `out`, handed out in order to whichever worker is free.
    let mut parts = Vec::with_capacity(trailer.index.len());
    let mut rest = out;
    for (k, e) in trailer.index.iter().enumerate() {
        let n = e.records as usize * record_len;
        if n > rest.len()
            || (e.records as u64 * record_len as u64 * T::BYTES as u64) > MAX_CHUNK_BYTES
        {
            return Err(Error::chunk(
                k as u64,
                "larger than the footer's totals allow",
            ));
        }
        let (part, tail) = rest.split_at_mut(n);
        parts.push(Mutex::new(part));
        rest = tail;
    }
    let params = Arc::new(header.codec_params());
    let dtype = header.spec.dtype;
    crate::pipeline::scoped_chunks(
        "decoding",
        resolve_threads(threads),
        parts.len(),
        (dtype, &params),
        || io::Cursor::new(bytes),
        |codec, reader, k| {
            let mut part = parts[k].lock().expect("a chunk's part");
            let Frame::Chunk {
                index,
                kind,
                payload,
                ..
            } = read_chunk_at(reader, k as u64, &trailer.index[k])?
            else {
                return Err(Error::chunk(k as u64, "the index points at no chunk"));
            };
            codec.decode_values(index, kind, &payload, &mut part)
        },
    )?;
    Ok(header)
}

/// An array sized up front from a container's footer holds at most this many times the
/// container's bytes: a forged index may promise anything, and the streaming path grows only
/// with what it decodes.
const MOST_EXPANSION: u64 = 64;

/// The header and the number of values of a whole container held in memory, where its
/// footer index tells them, checked against every chunk's own header (so an array can be sized
/// by what the chunks say, not by a header alone): what [`decompress_into`] needs its
/// destination to hold. `None` where the footer cannot tell (a stream cut short, a damaged
/// index: the streaming [`Decompressor`] then finds the error, or the end), or where the values
/// would take more than 64 times the container's bytes (decode those as a stream, which
/// allocates only as it decodes).
pub fn container_values(bytes: &[u8]) -> Option<(Header, u64)> {
    use crate::container::{read_trailer, verify_trailer};
    let mut c = io::Cursor::new(bytes);
    let header = Header::read_from(&mut c).ok()?;
    let trailer = read_trailer(&mut c).ok()?;
    verify_trailer(&mut c, &trailer).ok()?;
    let values = trailer.records.checked_mul(header.record_len)?;
    let slice = header.spec.slice_len().max(1);
    let known = header.spec.len();
    let size = values.checked_mul(header.spec.dtype.size() as u64)?;
    (values % slice == 0
        && known.is_none_or(|n| n == values)
        && size <= (bytes.len() as u64).saturating_mul(MOST_EXPANSION))
    .then_some((header, values))
}

/// Decompresses a whole container held in memory: its header and all its values. Where the
/// footer index tells how many ([`container_values`]), they are decoded straight into the
/// array returned ([`decompress_into`]), each chunk on whichever core is free; otherwise
/// through the streaming [`Decompressor`]. On every core: [`decompress_to_vec_with_threads`]
/// takes a number.
pub fn decompress_to_vec(bytes: &[u8]) -> Result<(Header, ArrayData)> {
    decompress_to_vec_with_threads(bytes, 0)
}

/// [`decompress_to_vec`] on `threads` workers (0: one per core).
pub fn decompress_to_vec_with_threads(bytes: &[u8], threads: usize) -> Result<(Header, ArrayData)> {
    if let Some((mut header, values)) = container_values(bytes) {
        let mut all = match header.spec.dtype {
            DType::F32 => ArrayData::F32(vec![0.0; values as usize]),
            DType::F64 => ArrayData::F64(vec![0.0; values as usize]),
        };
        crate::with_array!(&mut all, v => decompress_into(bytes, v, threads))?;
        if header.spec.shape[0] == crate::array::UNKNOWN {
            header.spec.shape[0] = values / header.spec.slice_len().max(1);
        }
        return Ok((header, all));
    }
    let mut d = Decompressor::with_threads(io::Cursor::new(bytes.to_vec()), threads)?;
    let dtype = d.header.spec.dtype;
    // Reserve what the header promises, but never more than the container could possibly
    // hold (a forged header may promise anything).
    let cap = d
        .header
        .spec
        .len()
        .unwrap_or(0)
        .min(bytes.len() as u64 * MOST_EXPANSION) as usize;
    let mut all = ArrayData::with_capacity(dtype, cap);
    while let Some(chunk) = d.next_chunk()? {
        match (&mut all, &chunk) {
            (ArrayData::F32(a), ArrayData::F32(c)) => a.extend_from_slice(c),
            (ArrayData::F64(a), ArrayData::F64(c)) => a.extend_from_slice(c),
            _ => unreachable!("one dtype per container"),
        }
        // The chunk's buffer goes back to the workers: decoding does not fault in fresh pages
        // for every chunk.
        d.recycle(chunk);
    }
    let mut header = d.header.clone();
    d.finish()?;
    if header.spec.shape[0] == crate::array::UNKNOWN {
        header.spec.shape[0] = all.len() as u64 / header.spec.slice_len().max(1);
    }
    Ok((header, all))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ArraySpec, BoundSpec, Bounds, CompressOptions, DType, compress_slice};

    #[test]
    fn workers_start_as_chunks_come() {
        // Containers of one and of four chunks, decoded on 1 to 8 threads: a worker a chunk
        // at most, started as the chunks are read, and the same values.
        let table: Vec<f32> = (0..4000 * 4).map(|i| (i as f32 * 0.3).cos()).collect();
        let spec = ArraySpec::new(DType::F32, vec![4000, 4]);
        for (chunk_bytes, chunks) in [(4 << 20, 1), (16 << 10, 4)] {
            let options = CompressOptions::new(Bounds::new(BoundSpec::Rel(1e-3)))
                .chunk_bytes(chunk_bytes)
                .threads(1);
            let packed: Arc<[u8]> = compress_slice(&table, &spec, &options).unwrap().into();
            let mut first = None;
            for threads in [1, 2, 3, 8] {
                let mut d =
                    Decompressor::with_threads(io::Cursor::new(Arc::clone(&packed)), threads)
                        .unwrap();
                let mut values = Vec::new();
                for _ in 0..chunks {
                    let chunk = d.next_chunk().unwrap().expect("a chunk");
                    let ArrayData::F32(c) = &chunk else {
                        panic!("f32")
                    };
                    values.extend_from_slice(c);
                }
                // Every chunk read, the last one decoded: the workers are all started.
                let started = d.pool.as_ref().expect("not ended").workers_started();
                assert_eq!(
                    started,
                    threads.min(chunks),
                    "{threads} threads, {chunks} chunks"
                );
                assert!(d.next_chunk().unwrap().is_none());
                d.finish().unwrap();
                let first = first.get_or_insert_with(|| values.clone());
                assert_eq!(*first, values);
            }
        }
    }

    /// The values and header of a container, through the streaming decoder alone.
    fn streamed(bytes: &[u8]) -> (Header, ArrayData) {
        let mut d = Decompressor::new(io::Cursor::new(bytes.to_vec())).unwrap();
        let mut all = ArrayData::with_capacity(d.header.spec.dtype, 0);
        while let Some(chunk) = d.next_chunk().unwrap() {
            crate::with_array!((&mut all, &chunk), (a, c) => a.extend_from_slice(c));
        }
        let header = d.header.clone();
        d.finish().unwrap();
        (header, all)
    }

    #[test]
    fn whole_containers_decode_in_place_as_streamed() {
        // `decompress_to_vec` decodes a sized container into its array (each chunk straight
        // to its place: fields, tables through their columns, lossless noise) and any other
        // through the stream: the same values either way, bit for bit.
        let field: Vec<f64> = (0..30_000)
            .map(|i| (i as f64 * 0.01).sin() * 40.0)
            .collect();
        let table: Vec<f32> = (0..6000 * 5).map(|i| (i as f32 * 0.37).cos()).collect();
        // Noise, kept bit for bit.
        let mut x = 1u32;
        let noise: Vec<f32> = (0..8000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                f32::from_bits(x & 0x3fff_ffff)
            })
            .collect();
        fn options(bound: BoundSpec) -> CompressOptions {
            CompressOptions::new(Bounds::new(bound))
                .chunk_bytes(16 << 10)
                .threads(2)
        }
        fn packed<T: crate::Element>(data: &[T], shape: &[u64], bound: BoundSpec) -> Vec<u8> {
            let spec = ArraySpec::new(T::DTYPE, shape.to_vec());
            compress_slice(data, &spec, &options(bound)).unwrap()
        }
        let containers = [
            (packed(&field, &[300, 100], BoundSpec::Rel(1e-4)), true),
            (packed(&table, &[6000, 5], BoundSpec::Rel(1e-3)), true),
            (packed(&noise, &[8000], BoundSpec::Lossless), true),
            // Constant: far more than 64 times its container's size, so decoded as a stream.
            (
                packed(&vec![2.5f32; 400_000], &[400_000], BoundSpec::Rel(1e-3)),
                false,
            ),
        ];
        for (bytes, sized) in &containers {
            assert_eq!(container_values(bytes).is_some(), *sized);
            let (want_h, want) = streamed(bytes);
            for threads in [0, 1, 3] {
                let (h, values) = decompress_to_vec_with_threads(bytes, threads).unwrap();
                assert_eq!(h.spec.shape, want_h.spec.shape);
                crate::with_array!((&values, &want), (a, b) => {
                    assert_eq!(a.len(), b.len());
                    assert!(a.iter().zip(b.iter()).all(|(x, y)| x.to_bits() == y.to_bits()));
                });
            }
        }
        // A stream of unknown length: its footer tells the records, and the shape.
        let spec = ArraySpec::new(DType::F32, vec![crate::array::UNKNOWN, 5]);
        let mut c =
            crate::Compressor::new(Vec::new(), spec, options(BoundSpec::Rel(1e-3))).unwrap();
        c.write_values(&table).unwrap();
        let bytes = c.finish().unwrap();
        assert_eq!(container_values(&bytes).expect("sized").1, 6000 * 5);
        let (h, all) = decompress_to_vec(&bytes).unwrap();
        assert_eq!(h.spec.shape, vec![6000, 5]);
        let (_, want) = streamed(&bytes);
        assert_eq!(all.values::<f32>().unwrap(), want.values::<f32>().unwrap());
    }
}
