//! The streaming compressor.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::array::{ArraySpec, Layout, UNKNOWN};
use crate::bound::{BoundSpec, Bounds, ResolvedBound};
use crate::container::{ContainerWriter, Header, MAX_CHUNK_BYTES, SourceFormat, StatsSource};
use crate::element::{ArrayData, Element};
use crate::error::{Error, Result};
use crate::io::read_full;
use crate::normalize::{ColumnStats, Normalization, StatsAccumulator};
use crate::pipeline::{EncodePool, WriterMsg, wait_reply};
use crate::plan::Plan;
use crate::shard::{ShardEnd, ShardRange};

/// Default target size of a chunk's raw values.
pub const DEFAULT_CHUNK_BYTES: usize = 4 << 20;
/// Default cap on the memory the pipeline holds (chunks in flight and worker scratch).
pub const DEFAULT_MEMORY_BUDGET: usize = 192 << 20;
const MIN_CHUNK_BYTES: usize = 4 << 10;
/// Tables of known size split into two chunks from twice this size on.
const MIN_SPLIT: usize = 1 << 20;
/// Fields of known size split into two chunks from twice this size on.
const MIN_FIELD_SPLIT: usize = 256 << 10;
/// A field of at least this many slices along its slowest axis gets chunks of at least this
/// many (within four times the chunk size; `CompressOptions::min_chunk_records` 0 turns it off,
/// as for tables): cut into 4 MiB chunks of 16 frames, the forced turbulence's vorticity came
/// out 14% larger at `rel:1e-2` than in chunks of 32. Fewer slices (a few stacked variables)
/// stay apart (but two coded bit for bit: [`chunking`]).
const MIN_FIELD_SLICES: usize = 32;
/// The default [`CompressOptions::min_chunk_records`] (ATLAS's 141 columns × 9923 rows: an
/// extra chunk costs 0.6% of the file at `bits:10`).
pub const MIN_TABLE_RECORDS: u64 = 16 << 10;

/// How to compress.
#[derive(Debug, Clone)]
pub struct CompressOptions {
    /// The error bounds.
    pub bounds: Bounds,
    /// Target size of a chunk's raw values (chunks hold whole records).
    pub chunk_bytes: usize,
    /// A table's chunks hold at least this many records where up to four times `chunk_bytes`
    /// allows: each chunk pays a table per column, which a few thousand values do not amortize.
    /// 0 keeps chunks at `chunk_bytes`; [`chunk_bytes`](Self::chunk_bytes) sets it to 0 (a
    /// chunk size asked for is the size used).
    pub min_chunk_records: u64,
    /// Worker threads (0 = one per core).
    pub threads: usize,
    /// Column statistics from a pre-pass over the whole input. Without them, the compressor
    /// takes them from the first `sample_bytes` of the input (and says so in the header).
    pub stats: Option<Vec<ColumnStats>>,
    /// How much input to buffer for statistics when `stats` is not given.
    pub sample_bytes: usize,
    /// Recorded in the header, so decompression can default to the input's format.
    pub source: SourceFormat,
    /// Recorded in the header: where the values were inside their file (an HDF5 dataset).
    pub source_path: Option<String>,
    /// Cap on pipeline memory: the worker threads are limited to what fits (the chunk size, and
    /// so the output, never changes with the machine).
    pub memory_budget: usize,
    /// A learned predictor for a table's columns, stored in the container's model section.
    pub model: Option<crate::model::Model>,
}

impl CompressOptions {
    /// Defaults with the given bounds.
    pub fn new(bounds: Bounds) -> Self {
        CompressOptions {
            bounds,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            min_chunk_records: MIN_TABLE_RECORDS,
            threads: 0,
            stats: None,
            sample_bytes: 4 * DEFAULT_CHUNK_BYTES,
            source: SourceFormat::Unknown,
            source_path: None,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            model: None,
        }
    }

    /// Uses a learned predictor (tables only; its column count must match).
    pub fn model(mut self, model: crate::model::Model) -> Self {
        self.model = Some(model);
        self
    }

    /// Sets the worker thread count (0 = one per core).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }

    /// Sets the target chunk size in bytes, exactly (no minimum of records per chunk).
    pub fn chunk_bytes(mut self, n: usize) -> Self {
        self.chunk_bytes = n;
        self.min_chunk_records = 0;
        self
    }

    /// Supplies statistics from a pre-pass.
    pub fn stats(mut self, stats: Vec<ColumnStats>) -> Self {
        self.stats = Some(stats);
        self
    }
}

/// The number of threads `0` stands for: the cores this process may use, asked of the system
/// once (it reads the cgroup's CPU quota from files: 27 µs a call on our machine, 5% of a
/// small field's decompression, which asks at every call).
pub fn default_threads() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The threads a `threads` option asks for: itself, or one per core for 0.
pub fn resolve_threads(threads: usize) -> usize {
    if threads == 0 {
        default_threads()
    } else {
        threads
    }
}

/// What [`Compressor::finish_detailed`] returns.
#[derive(Debug)]
pub struct Finished<W> {
    /// The inner writer.
    pub writer: W,
    /// The header that was written.
    pub header: Header,
    /// Chunks written.
    pub chunks: u64,
    /// Records written.
    pub records: u64,
    /// Container bytes written: the output's size, end mark and index included.
    pub bytes_out: u64,
}

/// Counters a progress display can read while compression runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Input bytes accepted.
    pub bytes_in: AtomicU64,
    /// Container bytes written.
    pub bytes_out: AtomicU64,
}

enum State<W: Write + Send + 'static> {
    Buffering {
        writer: W,
        pending: Vec<(ArrayData, u32)>,
        stats: StatsAccumulator,
        bytes: usize,
    },
    Running(EncodePool<Finished<W>>),
    Stopped,
}

/// Compresses a stream of values into a container written to `W`.
///
/// Values arrive through [`write_values`](Self::write_values), through [`Write`] as
/// little-endian bytes of the declared dtype, or through [`read_from`](Self::read_from). Chunks
/// are coded on worker threads while the next ones are filled; memory stays bounded whatever the
/// input size. Call [`finish`](Self::finish) to write the end mark: a compressor dropped without
/// it leaves an output that readers reject as truncated.
///
/// ```
/// use baler::{ArraySpec, BoundSpec, Bounds, CompressOptions, Compressor, DType};
/// let spec = ArraySpec::new(DType::F32, vec![1000, 4]);
/// let opts = CompressOptions::new(Bounds::new(BoundSpec::Abs(0.01)));
/// let mut c = Compressor::new(Vec::new(), spec, opts).unwrap();
/// let values: Vec<f32> = (0..4000).map(|i| (i as f32).sqrt()).collect();
/// c.write_values(&values).unwrap();
/// let container = c.finish().unwrap();
/// assert!(container.len() < 4000 * 4);
/// ```
pub struct Compressor<W: Write + Send + 'static> {
    spec: ArraySpec,
    options: CompressOptions,
    /// The bound of each column, as specified (resolved once statistics are known).
    bound_specs: Vec<BoundSpec>,
    record_len: usize,
    chunk_records: usize,
    threads: usize,
    current: ArrayData,
    carry: ([u8; 8], usize),
    records_in: u64,
    /// The values to expect: the shape's, or a shard's (`None` for a stream).
    expected_values: Option<u64>,
    progress: Arc<Progress>,
    state: State<W>,
}

impl<W: Write + Send + 'static> Compressor<W> {
    /// Prepares to compress an array described by `spec` into `writer`. Bounds are checked
    /// against the spec now; the header is written once statistics are known.
    pub fn new(writer: W, spec: ArraySpec, options: CompressOptions) -> Result<Self> {
        spec.validate()?;
        let bound_specs = column_bounds(&spec, &options, options.stats.as_deref())?;
        let chunk_bytes = options.chunk_bytes.max(MIN_CHUNK_BYTES);
        let (record_len, chunk_records) = layout(&spec, &options)?;
        let threads = fit_threads(options.threads, chunk_bytes, options.memory_budget);
        let current = ArrayData::with_capacity(spec.dtype, chunk_records * record_len);
        let state = State::Buffering {
            writer,
            pending: Vec::new(),
            stats: StatsAccumulator::new(spec.bound_columns()),
            bytes: 0,
        };
        let mut c = Compressor {
            spec,
            options,
            bound_specs,
            record_len,
            chunk_records,
            threads,
            current,
            carry: ([0; 8], 0),
            records_in: 0,
            expected_values: None,
            progress: Arc::new(Progress::default()),
            state,
        };
        c.expected_values = c.spec.len();
        if let Some(stats) = c.options.stats.clone() {
            c.start(stats, StatsSource::Whole)?;
        }
        Ok(c)
    }

    /// Compresses what `plan` planned, with its header (bounds, statistics, model) and its
    /// chunking: the whole input (`shard` `None`: the file one process writes), or one shard
    /// of it — then only the shard's records are written here, and the output is a shard for
    /// [`crate::shard::concat`]. Either way, every chunk comes out byte for byte as in the
    /// whole file, whatever the shard count.
    pub fn with_plan(
        writer: W,
        plan: &Plan,
        shard: Option<ShardRange>,
        threads: usize,
    ) -> Result<Self> {
        let header = plan.header.clone();
        let spec = header.spec.clone();
        let record_len = header.record_len as usize;
        let chunk_records = plan.chunk_records as usize;
        let mut options = CompressOptions::new(Bounds::new(BoundSpec::Lossless)).threads(threads);
        options.source = header.source;
        options.source_path = header.source_path.clone();
        let chunk_bytes = chunk_records * record_len * spec.dtype.size();
        let threads = fit_threads(threads, chunk_bytes, options.memory_budget);
        let expected = match &shard {
            Some(s) => s.records * record_len as u64,
            None => plan.records() * record_len as u64,
        };
        let out = Output {
            prefix: if shard.is_some() {
                crate::shard::SHARD_MAGIC.to_vec()
            } else {
                Vec::new()
            },
            header_bytes: plan.header_bytes().to_vec(),
            first_chunk: shard.as_ref().map_or(0, |s| s.first_chunk),
            first_record: shard.as_ref().map_or(0, |s| s.first_record),
            shard: shard.map(|range| ShardEnd {
                range,
                total_chunks: plan.chunks(),
                total_records: plan.records(),
            }),
        };
        let mut c = Compressor {
            bound_specs: header.bounds.iter().map(|b| b.spec).collect(),
            current: ArrayData::with_capacity(spec.dtype, chunk_records * record_len),
            spec,
            options,
            record_len,
            chunk_records,
            threads,
            carry: ([0; 8], 0),
            records_in: 0,
            expected_values: Some(expected),
            progress: Arc::new(Progress::default()),
            state: State::Buffering {
                writer,
                pending: Vec::new(),
                stats: StatsAccumulator::new(0),
                bytes: 0,
            },
        };
        c.run(header, out)?;
        Ok(c)
    }

    /// Values per record.
    pub fn record_len(&self) -> usize {
        self.record_len
    }

    /// Records per chunk.
    pub fn chunk_records(&self) -> usize {
        self.chunk_records
    }

    /// Worker threads in use (after fitting the memory budget).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Live counters for progress displays.
    pub fn progress(&self) -> Arc<Progress> {
        Arc::clone(&self.progress)
    }

    fn chunk_values(&self) -> usize {
        self.chunk_records * self.record_len
    }

    fn start(&mut self, stats: Vec<ColumnStats>, source: StatsSource) -> Result<()> {
        let header = header_for(
            &self.spec,
            &self.options,
            &self.bound_specs,
            self.record_len,
            stats,
            source,
        );
        let mut header_bytes = Vec::new();
        header.write_to(&mut header_bytes);
        let out = Output {
            prefix: Vec::new(),
            header_bytes,
            first_chunk: 0,
            first_record: 0,
            shard: None,
        };
        self.run(header, out)
    }

    /// Starts the workers and the writer, which writes `out` around the chunks.
    fn run(&mut self, header: Header, out: Output) -> Result<()> {
        let State::Buffering {
            writer, pending, ..
        } = std::mem::replace(&mut self.state, State::Stopped)
        else {
            unreachable!("started twice");
        };
        let params = Arc::new(header.codec_params());
        let progress = Arc::clone(&self.progress);
        // The chunks the input is known to hold (a stream's are not known).
        let chunks = self
            .expected_values
            .map(|v| v.div_ceil((self.chunk_records * self.record_len).max(1) as u64));
        let pool = EncodePool::start(
            self.threads,
            chunks,
            self.spec.dtype,
            params,
            move |order, buffers| {
                let mut cw = ContainerWriter::with_header_bytes(
                    writer,
                    &out.prefix,
                    &out.header_bytes,
                    out.first_chunk,
                    out.first_record,
                )?;
                progress
                    .bytes_out
                    .store(cw.bytes_written(), Ordering::Relaxed);
                for msg in order {
                    match msg {
                        WriterMsg::Chunk(rx) => {
                            let mut enc = wait_reply(&rx)?;
                            cw.write_chunk(enc.records, enc.kind, &enc.payload)?;
                            progress
                                .bytes_out
                                .store(cw.bytes_written(), Ordering::Relaxed);
                            enc.data.clear();
                            buffers.data.give(enc.data);
                            enc.payload.clear();
                            buffers.payload.give(enc.payload);
                        }
                        WriterMsg::Finish => {
                            let (chunks, records) = (cw.chunks_written(), cw.records_written());
                            // The whole output: the chunks, and the end mark and index (or a
                            // shard's end) written next.
                            let bytes_out = match &out.shard {
                                None => cw.finished_len(),
                                Some(_) => cw.bytes_written() + crate::shard::SHARD_END_LEN as u64,
                            };
                            let writer = match &out.shard {
                                None => cw.finish()?,
                                Some(end) => {
                                    if (chunks, records) != (end.range.chunks, end.range.records) {
                                        return Err(Error::Internal(format!(
                                            "shard {} of {}: {chunks} chunks of {records} records \
                                         written, its range holds {} chunks of {} records",
                                            end.range.index,
                                            end.range.count,
                                            end.range.chunks,
                                            end.range.records
                                        )));
                                    }
                                    cw.finish_with(&end.to_bytes())?
                                }
                            };
                            return Ok(Finished {
                                writer,
                                header,
                                chunks,
                                records,
                                bytes_out,
                            });
                        }
                    }
                }
                Err(Error::Io(io::Error::other(
                    "the compressor was dropped before finish(): the output has no end mark",
                )))
            },
        );
        self.state = State::Running(pool?);
        for (data, records) in pending {
            self.submit(data, records)?;
        }
        Ok(())
    }

    fn submit(&mut self, data: ArrayData, records: u32) -> Result<()> {
        match &mut self.state {
            State::Running(pool) => {
                let r = pool.submit(data, records);
                if r.is_err() {
                    self.state = State::Stopped;
                }
                r
            }
            State::Buffering {
                pending,
                stats,
                bytes,
                ..
            } => {
                with_array!(&data, v => stats.add(v.as_slice()));
                *bytes += data.len() * self.spec.dtype.size();
                pending.push((data, records));
                Ok(())
            }
            State::Stopped => Err(stopped()),
        }
    }

    /// Queues the current chunk's whole records (leaving it empty, without a buffer).
    fn submit_current(&mut self) -> Result<()> {
        let full = std::mem::replace(
            &mut self.current,
            ArrayData::with_capacity(self.spec.dtype, 0),
        );
        let records = (full.len() / self.record_len) as u32;
        self.records_in += records as u64;
        self.submit(full, records)
    }

    /// Called when the current chunk is full.
    fn flush_chunk(&mut self) -> Result<()> {
        self.submit_current()?;
        // The next buffer taken once the chunk is queued: a submission that waited for a
        // worker finds an earlier chunk's buffer back from the writer more often (fresh pages
        // cost a fault each).
        self.current = match &self.state {
            State::Running(pool) => pool.recycled(),
            _ => None,
        }
        .unwrap_or_else(|| ArrayData::with_capacity(self.spec.dtype, self.chunk_values()));
        self.maybe_start_from_sample()
    }

    fn maybe_start_from_sample(&mut self) -> Result<()> {
        let ready = matches!(&self.state, State::Buffering { bytes, .. } if *bytes >= self.options.sample_bytes);
        if ready {
            let stats = match &self.state {
                State::Buffering { stats, .. } => stats.clone().finish(),
                _ => unreachable!(),
            };
            self.start(stats, StatsSource::FirstRecords(self.records_in))?;
        }
        Ok(())
    }

    /// Values accepted so far (whole values only).
    fn values_in(&self) -> u64 {
        self.records_in * self.record_len as u64 + self.current.len() as u64
    }

    /// Fails if `incoming` more values would exceed the declared shape.
    fn check_room(&self, incoming: u64) -> Result<()> {
        if let Some(total) = self.expected_values
            && self.values_in() + incoming > total
        {
            return Err(Error::InvalidInput(format!(
                "the input holds more than the {total} values its shape {} declares",
                self.spec.shape_string()
            )));
        }
        Ok(())
    }

    /// Adds values (whole or partial records). `T` must be the declared dtype.
    pub fn write_values<T: Element>(&mut self, mut values: &[T]) -> Result<()> {
        if T::DTYPE != self.spec.dtype {
            return Err(Error::InvalidInput(format!(
                "values of type {} given to a compressor declared for {}",
                T::DTYPE,
                self.spec.dtype
            )));
        }
        if self.carry.1 != 0 {
            return Err(Error::InvalidInput(
                "typed values written after a partial value of raw bytes".into(),
            ));
        }
        self.check_room(values.len() as u64)?;
        let cap = self.chunk_values();
        while !values.is_empty() {
            let room = cap - self.current.len();
            let take = room.min(values.len());
            with_array!(&mut self.current, v => v.extend_from_slice(bytemuck::cast_slice(&values[..take])));
            values = &values[take..];
            self.progress
                .bytes_in
                .fetch_add((take * T::BYTES) as u64, Ordering::Relaxed);
            if self.current.len() == cap {
                self.flush_chunk()?;
            }
        }
        Ok(())
    }

    /// Adds little-endian bytes of the declared dtype (values may be split across calls).
    pub fn write_le_bytes(&mut self, mut bytes: &[u8]) -> Result<()> {
        let size = self.spec.dtype.size();
        self.check_room(((self.carry.1 + bytes.len()) / size) as u64)?;
        let cap = self.chunk_values();
        self.progress
            .bytes_in
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if self.carry.1 > 0 {
            let need = size - self.carry.1;
            let take = need.min(bytes.len());
            self.carry.0[self.carry.1..self.carry.1 + take].copy_from_slice(&bytes[..take]);
            self.carry.1 += take;
            bytes = &bytes[take..];
            if self.carry.1 < size {
                return Ok(());
            }
            let one = self.carry.0;
            self.carry.1 = 0;
            self.push_le(&one[..size]);
            if self.current.len() == cap {
                self.flush_chunk()?;
            }
        }
        while bytes.len() >= size {
            let room = cap - self.current.len();
            let take = room.min(bytes.len() / size);
            self.push_le(&bytes[..take * size]);
            bytes = &bytes[take * size..];
            if self.current.len() == cap {
                self.flush_chunk()?;
            }
        }
        self.carry.0[..bytes.len()].copy_from_slice(bytes);
        self.carry.1 = bytes.len();
        Ok(())
    }

    fn push_le(&mut self, bytes: &[u8]) {
        with_array!(&mut self.current, v => push_le_into(v, bytes));
    }

    /// Reads little-endian values of the declared dtype from `r` until its end, straight into
    /// chunk buffers. Returns the bytes read.
    pub fn read_from<R: Read>(&mut self, mut r: R) -> Result<u64> {
        let size = self.spec.dtype.size();
        let mut total = 0u64;
        // First complete a value split by an earlier `write`.
        while self.carry.1 > 0 {
            let mut buf = [0u8; 8];
            let need = size - self.carry.1;
            let n = read_full(&mut r, &mut buf[..need])?;
            self.write_le_bytes(&buf[..n])?;
            total += n as u64;
            if n < need {
                return Ok(total);
            }
        }
        let cap = self.chunk_values();
        loop {
            let want = (cap - self.current.len()) * size;
            let (n, tail, t) = with_array!(&mut self.current, v => fill_le(v, cap, &mut r)?);
            self.carry.0 = tail;
            self.carry.1 = t;
            total += n as u64;
            self.check_room(0)?;
            self.progress
                .bytes_in
                .fetch_add(n as u64, Ordering::Relaxed);
            if self.current.len() == cap {
                self.flush_chunk()?;
            }
            if n < want {
                return Ok(total);
            }
        }
    }

    /// Writes the last chunk, the end mark and the footer; returns the inner writer.
    pub fn finish(self) -> Result<W> {
        self.finish_detailed().map(|f| f.writer)
    }

    /// Like [`finish`](Self::finish), with totals.
    pub fn finish_detailed(mut self) -> Result<Finished<W>> {
        if let Some(total) = self.expected_values {
            let got = self.records_in * self.record_len as u64 + self.current.len() as u64;
            if got < total {
                return Err(Error::InvalidInput(format!(
                    "the input ended after {got} of the {total} values its shape {} declares (truncated?)",
                    self.spec.shape_string()
                )));
            }
        }
        if self.carry.1 != 0 {
            return Err(Error::InvalidInput(format!(
                "the input ends with {} stray bytes: not a whole number of {} values",
                self.carry.1, self.spec.dtype
            )));
        }
        let partial = self.current.len() % self.record_len;
        if partial != 0 {
            return Err(Error::InvalidInput(format!(
                "the input ends in the middle of a record: {} values of the last record's {} are missing",
                self.record_len - partial,
                self.record_len
            )));
        }
        if !self.current.is_empty() {
            self.submit_current()?;
        }
        let slice = self.spec.slice_len().max(1);
        let values = self.records_in * self.record_len as u64;
        // (A known shape was checked above and by every write: exactly its values arrived.)
        if self.spec.len().is_none() && !values.is_multiple_of(slice) {
            return Err(Error::InvalidInput(format!(
                "the input ends in the middle of a slice: {values} values is not a multiple of {slice}"
            )));
        }
        if let State::Buffering { stats, .. } = &self.state {
            // Everything fit in the sample: the statistics cover the whole input, and the
            // shape is now known.
            let stats = stats.clone().finish();
            if self.spec.shape[0] == UNKNOWN {
                self.spec.shape[0] = values / slice;
            }
            self.start(stats, StatsSource::Whole)?;
        }
        match std::mem::replace(&mut self.state, State::Stopped) {
            State::Running(pool) => pool.finish(),
            _ => Err(stopped()),
        }
    }
}

/// What the writer puts around the chunks: a prefix (a shard's magic), the header's bytes,
/// where the chunks' numbering starts, and (a shard) its end.
struct Output {
    prefix: Vec<u8>,
    header_bytes: Vec<u8>,
    first_chunk: u64,
    first_record: u64,
    shard: Option<ShardEnd>,
}

/// The bound asked for each bound column of `spec` (checked against its columns and names),
/// and the statistics given for them, if any, checked to be one per bound column.
pub(crate) fn column_bounds(
    spec: &ArraySpec,
    options: &CompressOptions,
    stats: Option<&[ColumnStats]>,
) -> Result<Vec<BoundSpec>> {
    let specs = options.bounds.per_column(
        spec.bound_columns(),
        &spec.column_names,
        spec.layout == Layout::Table,
    )?;
    if let Some(s) = stats.filter(|s| s.len() != spec.bound_columns()) {
        return Err(Error::InvalidOption(format!(
            "{} column statistics given for {} columns",
            s.len(),
            spec.bound_columns()
        )));
    }
    Ok(specs)
}

/// Values per record and records per chunk for `spec` under `options`, once the chunk size
/// and the spec's rows are checked against the format's limits.
pub(crate) fn layout(spec: &ArraySpec, options: &CompressOptions) -> Result<(usize, usize)> {
    let chunk_bytes = options.chunk_bytes.max(MIN_CHUNK_BYTES);
    if chunk_bytes as u64 > MAX_CHUNK_BYTES {
        return Err(Error::InvalidOption(format!(
            "a chunk size of {chunk_bytes} bytes is above the format's limit of {MAX_CHUNK_BYTES}"
        )));
    }
    let row_bytes = spec.slice_len().saturating_mul(spec.dtype.size() as u64);
    if spec.layout == Layout::Table && row_bytes > MAX_CHUNK_BYTES {
        return Err(Error::InvalidInput(format!(
            "a row of {row_bytes} bytes is above the format's chunk limit of {MAX_CHUNK_BYTES} bytes; \
             store such data as a field (--layout field)"
        )));
    }
    let exact = matches!(
        options.bounds.default,
        BoundSpec::Lossless | BoundSpec::Abs(0.0)
    );
    Ok(chunking(
        spec,
        chunk_bytes,
        options.min_chunk_records,
        exact,
    ))
}

/// The worker threads for `threads` (0: one per core) within the memory budget. Each worker
/// holds about six chunks' worth (its job, its scratch, its payload, its share of the
/// queues), plus four chunks around the pipeline. The budget caps the threads, never the chunk
/// size, so the output does not depend on the machine.
fn fit_threads(threads: usize, chunk_bytes: usize, memory_budget: usize) -> usize {
    let threads = resolve_threads(threads);
    let per_thread = 6 * chunk_bytes.max(1);
    threads.min((memory_budget.saturating_sub(4 * chunk_bytes) / per_thread).max(1))
}

/// The header of a container of `spec` compressed under `options`, once the statistics are
/// known: the bounds resolved against them, the normalization, the model.
pub(crate) fn header_for(
    spec: &ArraySpec,
    options: &CompressOptions,
    bound_specs: &[BoundSpec],
    record_len: usize,
    stats: Vec<ColumnStats>,
    source: StatsSource,
) -> Header {
    let bounds: Vec<ResolvedBound> = bound_specs
        .iter()
        .zip(&stats)
        .map(|(s, st)| ResolvedBound::new(*s, st))
        .collect();
    let norms: Vec<Normalization> = stats.iter().map(Normalization::from_stats).collect();
    Header {
        spec: spec.clone(),
        record_len: record_len as u64,
        source: options.source,
        source_path: options.source_path.clone(),
        bounds,
        stats,
        norms,
        stats_source: source,
        model: match (&options.model, spec.layout) {
            (Some(m), Layout::Table) if m.columns.len() == record_len => m.to_bytes(),
            _ => Vec::new(),
        },
        writer: format!("baler {}", env!("CARGO_PKG_VERSION")),
        version: crate::container::FORMAT_VERSION,
    }
}

/// Values per record and records per chunk, for a target chunk size in bytes.
///
/// Depends on the input alone, never on the thread count or the machine, so neither does the
/// output. A stream's chunks are all `chunk_bytes` (but the last). An input of known size is
/// cut into chunks of equal size, an even number of them, and at least two once it holds twice
/// `MIN_SPLIT` (tables, which pay a table per column per chunk) or `MIN_FIELD_SPLIT` (fields,
/// which pay one), so two cores share mid-size files; but a table's chunks keep at least
/// `min_records` records where four times the chunk size allows, and a field's chunks at least
/// `MIN_FIELD_SLICES` slices where it has that many. A field's records are the largest slices
/// along its slowest axes that fit in a chunk, and a chunk never splits such a slice, so chunk
/// boundaries follow the array's own structure (stacked variables stay apart) — but for a
/// field of two stacked variables coded bit for bit (`exact`), which is one chunk where it fits
/// in four times the chunk size, so the second can be predicted from the first (a telescope
/// frame's error plane from its science plane: the lossless coder's `SIGMA` transform).
fn chunking(spec: &ArraySpec, chunk_bytes: usize, min_records: u64, exact: bool) -> (usize, usize) {
    let size = spec.dtype.size();
    let (record_len, chunk_records) = match spec.len() {
        Some(total)
            if exact
                && min_records > 0
                && spec.layout == Layout::Field
                && spec.shape.len() >= 2
                && spec.shape[0] == 2
                && total * size as u64 <= 4 * chunk_bytes as u64 =>
        {
            ((total / 2) as usize, 2)
        }
        Some(total) => {
            let bytes = total * size as u64;
            let mut n_chunks = bytes.div_ceil(chunk_bytes as u64).max(1);
            let min_split = if spec.layout == Layout::Field {
                MIN_FIELD_SPLIT
            } else {
                MIN_SPLIT
            };
            if bytes >= 2 * min_split as u64 {
                n_chunks = n_chunks.max(2);
            }
            if n_chunks > 1 {
                n_chunks += n_chunks % 2;
            }
            if spec.layout == Layout::Table && min_records > 0 {
                let rows = total / spec.shape[1].max(1);
                let fewest = bytes.div_ceil(4 * chunk_bytes as u64).max(1);
                n_chunks = n_chunks.min((rows / min_records).max(fewest));
            }
            let target = bytes.div_ceil(n_chunks) as usize;
            let record_len = spec.record_len(target) as usize;
            let record_bytes = record_len * size;
            let records = (total / record_len as u64) as usize;
            let chunk_records = if record_bytes * 8 <= target {
                // Fine records (table rows): exactly `n_chunks` chunks of equal size.
                records.div_ceil(n_chunks as usize)
            } else {
                // Coarse records (a field's slices, or a few stacked variables, which stay
                // apart): as many whole ones as fit.
                target / record_bytes
            };
            let chunk_records = if spec.layout == Layout::Field
                && min_records > 0
                && records >= MIN_FIELD_SLICES
                && chunk_records < MIN_FIELD_SLICES
            {
                // Many slices (frames of a simulation in time, levels): at least
                // MIN_FIELD_SLICES of them a chunk where four times the chunk size allows, so
                // the interpolation has levels along that axis too; chunks of equal size.
                let most = (4 * chunk_bytes / record_bytes).clamp(1, records);
                let per = chunk_records.max(MIN_FIELD_SLICES.min(most));
                records.div_ceil((records / per).max(1))
            } else {
                chunk_records
            };
            (record_len, chunk_records)
        }
        None => {
            let record_len = spec.record_len(chunk_bytes) as usize;
            (record_len, chunk_bytes / (record_len * size))
        }
    };
    (record_len, chunk_records.clamp(1, u32::MAX as usize))
}

fn stopped() -> Error {
    Error::Io(io::Error::other(
        "the compressor stopped after an earlier error",
    ))
}

fn push_le_into<T: Element>(v: &mut Vec<T>, bytes: &[u8]) {
    let start = v.len();
    v.resize(start + bytes.len() / T::BYTES, T::from_f64(0.0));
    bytemuck::cast_slice_mut::<T, u8>(&mut v[start..]).copy_from_slice(bytes);
    T::from_le_in_place(&mut v[start..]);
}

/// Reads values into `v` until it holds `cap` or the reader ends. Returns the bytes read and
/// the bytes of a trailing partial value.
fn fill_le<T: Element, R: Read>(
    v: &mut Vec<T>,
    cap: usize,
    r: &mut R,
) -> io::Result<(usize, [u8; 8], usize)> {
    let start = v.len();
    v.resize(cap, T::from_f64(0.0));
    let dst: &mut [u8] = bytemuck::cast_slice_mut(&mut v[start..]);
    let n = match read_full(r, dst) {
        Ok(n) => n,
        Err(e) => {
            v.truncate(start);
            return Err(e);
        }
    };
    let whole = n / T::BYTES;
    let t = n % T::BYTES;
    let mut tail = [0u8; 8];
    tail[..t].copy_from_slice(&dst[whole * T::BYTES..n]);
    v.truncate(start + whole);
    T::from_le_in_place(&mut v[start..]);
    Ok((n, tail, t))
}

impl<W: Write + Send + 'static> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_le_bytes(buf)?;
        Ok(buf.len())
    }

    /// Chunks are written when full; `flush` does not cut a chunk short.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Compresses a whole array in memory. `data.len()` must match `spec`.
pub fn compress_slice<T: Element>(
    data: &[T],
    spec: &ArraySpec,
    options: &CompressOptions,
) -> Result<Vec<u8>> {
    if spec.dtype != T::DTYPE {
        return Err(Error::InvalidInput(format!(
            "spec says {} but the data is {}",
            spec.dtype,
            T::DTYPE
        )));
    }
    if spec.len() != Some(data.len() as u64) {
        return Err(Error::InvalidInput(format!(
            "{} values given for shape {}",
            data.len(),
            spec.shape_string()
        )));
    }
    let mut options = options.clone();
    let stats = match options.stats.take() {
        Some(stats) => stats,
        None => StatsAccumulator::of(data, spec.bound_columns(), options.threads),
    };
    compress_in_memory(data, spec, options, stats)
}

/// The header of a compression of a whole input of `spec` (statistics of all of it), as
/// bytes too, and the records a chunk holds: what a [`Plan`] records, and what
/// [`compress_slice`] writes.
pub(crate) fn whole_header(
    spec: &ArraySpec,
    options: &CompressOptions,
    stats: Vec<ColumnStats>,
) -> Result<(Header, Vec<u8>, usize)> {
    let bound_specs = column_bounds(spec, options, Some(&stats))?;
    let (record_len, chunk_records) = layout(spec, options)?;
    let header = header_for(
        spec,
        options,
        &bound_specs,
        record_len,
        stats,
        StatsSource::Whole,
    );
    let mut header_bytes = Vec::new();
    header.write_to(&mut header_bytes);
    Ok((header, header_bytes, chunk_records))
}

/// [`compress_slice`]'s engine: the container [`Compressor`] writes for `data`, its chunks
/// coded straight from `data` by scoped workers (a chunk to each in turn, as the pipeline's
/// do), each chunk's payload then written in order. The pipeline copies the values into its
/// chunks on the caller's thread and appends the payloads to the output on a writer's, two
/// threads beside the workers on two cores, and wakes each for every chunk. Without them,
/// in memory on 2 threads (`baler bench`, best of 20): the CFD decay (one chunk) 311–315 →
/// 383–387 MB/s, CMIP5 350–389 → 406–419, the jets (19.2 MB, six chunks) 442–468 → 492–498.
/// The same bytes.
fn compress_in_memory<T: Element>(
    data: &[T],
    spec: &ArraySpec,
    options: CompressOptions,
    stats: Vec<ColumnStats>,
) -> Result<Vec<u8>> {
    use std::sync::Mutex;
    spec.validate()?;
    let (header, header_bytes, chunk_records) = whole_header(spec, &options, stats)?;
    let record_len = header.record_len as usize;
    let chunk_bytes = options.chunk_bytes.max(MIN_CHUNK_BYTES);
    let threads = fit_threads(options.threads, chunk_bytes, options.memory_budget);
    let params = Arc::new(header.codec_params());
    // The chunks the pipeline would cut: whole records, `chunk_records` a chunk.
    let chunks: Vec<&[T]> = data.chunks((chunk_records * record_len).max(1)).collect();
    let coded: Vec<Mutex<(crate::chunk::PayloadKind, Vec<u8>)>> = chunks
        .iter()
        .map(|_| Mutex::new((crate::chunk::PayloadKind::Raw, Vec::new())))
        .collect();
    crate::pipeline::scoped_chunks(
        "coding",
        threads,
        chunks.len(),
        (T::DTYPE, &params),
        || (),
        |codec, (), k| {
            let mut slot = coded[k].lock().expect("a chunk's slot");
            let (kind, payload) = &mut *slot;
            *kind = codec.encode_values(chunks[k], payload);
            Ok(())
        },
    )?;
    let coded: Vec<_> = coded
        .into_iter()
        .map(|c| c.into_inner().expect("a chunk's slot"))
        .collect();
    let size: usize = coded.iter().map(|(_, p)| p.len() + 64).sum();
    let out = Vec::with_capacity(header_bytes.len() + size + 64);
    let mut cw = ContainerWriter::with_header_bytes(out, &[], &header_bytes, 0, 0)?;
    for (chunk, (kind, payload)) in chunks.iter().zip(&coded) {
        cw.write_chunk((chunk.len() / record_len.max(1)) as u32, *kind, payload)?;
    }
    cw.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::DType;

    #[test]
    fn slices_code_as_the_stream_does() {
        // `compress_slice` codes its chunks straight from the slice; the streaming compressor
        // writes the same bytes: a field of one chunk, tables of several, f64, a learned
        // model (linear, and with hidden units), bit-exact columns, no records at all.
        let field: Vec<f32> = (0..60 * 50 * 50).map(|i| (i as f32 * 0.01).sin()).collect();
        let table: Vec<f32> = (0..4000 * 6)
            .map(|i| (i as f32 * 0.37).cos() * 3.0)
            .collect();
        let wide: Vec<f64> = (0..3000 * 5)
            .map(|i| (i as f64 * 0.11).sin() * 1e3)
            .collect();
        let rel = Bounds::new(BoundSpec::Rel(1e-3));
        let f32_table = ArraySpec::new(DType::F32, vec![4000, 6]);
        let cases: Vec<(ArraySpec, ArrayData, CompressOptions)> = vec![
            (
                ArraySpec::new(DType::F32, vec![60, 50, 50]),
                ArrayData::F32(field),
                CompressOptions::new(rel.clone()),
            ),
            (
                f32_table.clone(),
                ArrayData::F32(table.clone()),
                CompressOptions::new(rel.clone()).chunk_bytes(16 << 10),
            ),
            (
                ArraySpec::new(DType::F64, vec![3000, 5]),
                ArrayData::F64(wide),
                CompressOptions::new(Bounds::new(BoundSpec::Abs(1e-2))).chunk_bytes(32 << 10),
            ),
            (
                f32_table.clone(),
                ArrayData::F32(table.clone()),
                CompressOptions::new(rel.clone())
                    .chunk_bytes(16 << 10)
                    .model(crate::model::tests::random_model(6, 0, 5)),
            ),
            (
                f32_table.clone(),
                ArrayData::F32(table.clone()),
                CompressOptions::new(rel.clone())
                    .chunk_bytes(32 << 10)
                    .model(crate::model::tests::random_model(6, 4, 7)),
            ),
            (
                f32_table,
                ArrayData::F32(table),
                CompressOptions::new(Bounds::new(BoundSpec::Lossless)).chunk_bytes(16 << 10),
            ),
            (
                ArraySpec::new(DType::F32, vec![0, 6]),
                ArrayData::F32(Vec::new()),
                CompressOptions::new(rel),
            ),
        ];
        for (spec, data, options) in cases {
            for threads in [1, 2, 3] {
                let stats = crate::with_array!(&data, v => StatsAccumulator::of(
                    v.as_slice(),
                    spec.bound_columns(),
                    1
                ));
                let options = options.clone().threads(threads).stats(stats);
                let slice =
                    crate::with_array!(&data, v => compress_slice(v.as_slice(), &spec, &options))
                        .unwrap();
                let mut c = Compressor::new(Vec::new(), spec.clone(), options).unwrap();
                crate::with_array!(&data, v => c.write_values(v.as_slice())).unwrap();
                let stream = c.finish().unwrap();
                assert_eq!(slice, stream, "{spec:?}, {threads} threads");
            }
        }
    }

    #[test]
    fn workers_start_for_the_chunks_there_are() {
        // A field of one chunk, and a table of four: at most a worker a chunk, the same bytes
        // on any thread count.
        let field: Vec<f32> = (0..60 * 50 * 50).map(|i| (i as f32 * 0.01).sin()).collect();
        let table: Vec<f32> = (0..4000 * 4).map(|i| (i as f32 * 0.3).cos()).collect();
        let cases = [
            (ArraySpec::new(DType::F32, vec![60, 50, 50]), &field, 1),
            (ArraySpec::new(DType::F32, vec![4000, 4]), &table, 4),
        ];
        for (spec, data, chunks) in cases {
            let table = spec.layout == Layout::Table;
            let mut bytes = Vec::new();
            for threads in [1, 2, 3, 8] {
                let stats = StatsAccumulator::of(data, spec.bound_columns(), 1);
                let mut options = CompressOptions::new(Bounds::new(BoundSpec::Rel(1e-3)))
                    .threads(threads)
                    .stats(stats);
                if table {
                    options = options.chunk_bytes(16 << 10);
                }
                let mut c = Compressor::new(Vec::new(), spec.clone(), options).unwrap();
                let State::Running(pool) = &c.state else {
                    panic!("started with its statistics")
                };
                assert_eq!(pool.started, threads.min(chunks), "{threads} threads");
                c.write_values(data).unwrap();
                let out = c.finish_detailed().unwrap();
                assert_eq!(out.chunks, chunks as u64);
                bytes.push(out.writer);
            }
            assert!(bytes.iter().all(|b| *b == bytes[0]));
        }
    }

    fn chunks_of(spec: &ArraySpec, chunk_bytes: usize) -> (usize, usize, u64) {
        let (record_len, chunk_records) = chunking(spec, chunk_bytes, MIN_TABLE_RECORDS, false);
        let records = spec.len().map_or(0, |n| n / record_len as u64);
        (
            record_len,
            chunk_records,
            records.div_ceil(chunk_records as u64),
        )
    }

    #[test]
    fn tables_split_evenly_by_size() {
        // 5.6 MB, 141 columns, 9923 rows: one chunk (per-column tables need the rows).
        assert_eq!(
            chunks_of(&ArraySpec::new(DType::F32, vec![9923, 141]), 4 << 20),
            (141, 9923, 1)
        );
        // Twice the rows: two chunks of equal size.
        assert_eq!(
            chunks_of(&ArraySpec::new(DType::F32, vec![40_000, 141]), 4 << 20),
            (141, 20_000, 2)
        );
        // Rows few and wide: chunks stay within four times the target size.
        assert_eq!(
            chunks_of(&ArraySpec::new(DType::F64, vec![20_000, 1000]), 4 << 20).2,
            10
        );
        // 19.2 MB: five chunks of 4 MiB rounded up to six.
        assert_eq!(
            chunks_of(&ArraySpec::new(DType::F32, vec![200_000, 24]), 4 << 20).2,
            6
        );
        // Under 2 MiB: one chunk.
        assert_eq!(
            chunks_of(&ArraySpec::new(DType::F32, vec![1636, 59]), 4 << 20).2,
            1
        );
        // A stream: full chunks of the target size.
        let (len, per, _) = chunks_of(&ArraySpec::new(DType::F32, vec![UNKNOWN, 16]), 4 << 20);
        assert_eq!((len, per), (16, (4 << 20) / 64));
    }

    #[test]
    fn field_chunks_follow_the_slowest_axis() {
        // Three stacked variables of 884 KB: one chunk each.
        let (len, per, n) = chunks_of(&ArraySpec::new(DType::F32, vec![3, 12, 96, 192]), 4 << 20);
        assert_eq!((len, per, n), (12 * 96 * 192, 1, 3));
        // 600 kB of 60 frames: one chunk, since a chunk keeps 32 frames where there are.
        assert_eq!(
            chunks_of(&ArraySpec::new(DType::F32, vec![60, 50, 50]), 4 << 20),
            (2500, 60, 1)
        );
        // 16 MiB of 64 frames: two chunks of 32 frames (four of 16 by size alone, as with an
        // explicit chunk size).
        let vorticity = ArraySpec::new(DType::F32, vec![64, 256, 256]);
        assert_eq!(chunks_of(&vorticity, 4 << 20), (65536, 32, 2));
        assert_eq!(chunking(&vorticity, 4 << 20, 0, false), (65536, 16));
        // Two stacked variables (a telescope frame's science and error planes), 8 MiB: one
        // chunk coded bit for bit, where the second is predicted from the first; apart
        // otherwise, and where they are larger than four chunks.
        let frame = ArraySpec::new(DType::F32, vec![2, 1024, 1024]);
        assert_eq!(
            chunking(&frame, 4 << 20, MIN_TABLE_RECORDS, true),
            (1 << 20, 2)
        );
        assert_eq!(
            chunking(&frame, 4 << 20, MIN_TABLE_RECORDS, false),
            (1 << 20, 1)
        );
        assert_ne!(
            chunking(&frame, 1 << 20, MIN_TABLE_RECORDS, true),
            (1 << 20, 2)
        );
        assert_eq!(chunking(&frame, 4 << 20, 0, true), (1 << 20, 1));
        // A 1-D series: records of one value, chunks of equal size.
        let (len, per, n) = chunks_of(&ArraySpec::new(DType::F64, vec![1_000_000]), 4 << 20);
        assert_eq!((len, n), (1, 2));
        assert_eq!(per, 500_000);
    }
}
