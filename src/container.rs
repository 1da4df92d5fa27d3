//! The container format, versions 1 to 8: header (magic, version, sections, CRC), chunks
//! (each with its sequence number, record count, payload CRC and header CRC), end mark (with
//! the content checksum from version 4) and footer index. ARCHITECTURE.md ("Container
//! format") describes every byte, once; this module writes and reads it. All integers are
//! little-endian, `uvarint` is unsigned LEB128, CRCs are CRC-32 (IEEE). The file is written
//! front to back with no seeking, so it can go to a pipe.
//!
//! A reader streams header, chunks and end mark; a reader that can seek finds the footer from
//! the last 20 bytes ([`read_trailer`]) and reads any chunk directly ([`read_chunk_at`]). A file cut short
//! anywhere fails with [`Error::Truncated`] naming the last complete chunk; a flipped bit fails a
//! CRC naming its chunk.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use crate::array::{ArraySpec, Layout};
use crate::bound::{Bound, BoundSpec, ResolvedBound};
use crate::bytes::{ByteReader, DecodeResult, Malformed, put_uvarint};
use crate::chunk::{CodecParams, ColumnParams, PayloadKind};
use crate::element::DType;
use crate::error::{Error, Result};
use crate::normalize::{ColumnStats, Normalization};

/// The first bytes of every container.
pub const MAGIC: [u8; 8] = *b"\x89BALER\r\n";
/// The last bytes of every complete container of format versions 1 to 3.
pub const FOOTER_MAGIC: [u8; 8] = *b"BALERIDX";
/// The last bytes of every complete container from format version 4 (whose end mark carries
/// the content checksum).
pub const FOOTER_MAGIC_V4: [u8; 8] = *b"BALERIX4";
/// The format version this build writes, and the newest it reads. Version 2 added point-wise
/// relative bounds (BOUNDS kinds 4 and 5, and the ordinal gap in their column sections);
/// version 3 adds the binned mode of code streams and the compact RUNS and STATS sections
/// (which replace BOUNDS and NORMALIZE); version 4 the content checksum in the end mark, which
/// binds every chunk to the file's header and position; version 5 the integer coding of f32
/// lossless columns (value words less a prediction, `src/lossless/ints.rs`); version 6 the
/// level-wise steps of the interpolation predictors (bits 6–7 of their order byte,
/// [`crate::predict`]); version 7 the lossless transforms with a low byte coded apart
/// (`src/lossless/ints.rs`); version 8 the lossless transforms that repeat an earlier row or
/// take the model's prediction or a lag (12 to 15, 28 to 31) and those whose streams are coded in
/// segments (36 to 62, `src/lossless/ints.rs`), and values on an affine lattice coded as its
/// integers (64, `src/lossless/lattice.rs`); version 9 bit-exact columns predicted by a
/// relation to earlier columns (column section kind 2, `src/relation.rs`); version 10 the
/// lossless transform that predicts a field's second stacked variable from its first (an
/// error plane from its science plane: 96 to 99, `src/lossless/ints.rs`). Every file is
/// written as version 10.
pub const FORMAT_VERSION: u16 = 10;
/// The oldest format version this build reads.
pub const MIN_FORMAT_VERSION: u16 = 1;

pub(crate) const TAG_CHUNK: u8 = b'C';
const TAG_END: u8 = b'E';
pub(crate) const CHUNK_HEADER_LEN: usize = 27;
/// Length of the end mark up to version 3; version 4 adds the content checksum.
const END_LEN: usize = 21;
const END_LEN_V4: usize = 25;
const INDEX_ENTRY_LEN: usize = 20;
/// Largest header body accepted (names of very wide tables fit many times over).
const MAX_HEADER: u32 = 64 << 20;
/// Largest chunk payload accepted.
pub const MAX_PAYLOAD: u32 = 1 << 31;
/// Largest chunk, in bytes of values: writers never cut larger chunks and readers refuse them
/// (a guard against forged headers asking for absurd allocations).
pub const MAX_CHUNK_BYTES: u64 = 1 << 30;

const SEC_ARRAY: u8 = 0x01;
const SEC_COLUMNS: u8 = 0x02;
const SEC_BOUNDS: u8 = 0x03;
const SEC_NORMALIZE: u8 = 0x04;
const SEC_MODEL: u8 = 0x05;
const SEC_RUNS: u8 = 0x06;
const SEC_STATS: u8 = 0x07;
const SEC_WRITER: u8 = 0x81;
const SEC_SOURCE_PATH: u8 = 0x82;

/// Where the input came from, so decompression can default to the same format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    /// Not recorded (library use).
    Unknown,
    /// A `.npy` file.
    Npy,
    /// Raw little-endian values.
    Raw,
    /// A dataset of floats in an HDF5 file.
    Hdf5,
    /// A 1-D compound dataset of float fields in an HDF5 file (a table, one column per field).
    Hdf5Compound,
}

impl SourceFormat {
    fn code(self) -> u8 {
        match self {
            SourceFormat::Unknown => 0,
            SourceFormat::Npy => 1,
            SourceFormat::Raw => 2,
            SourceFormat::Hdf5 => 3,
            SourceFormat::Hdf5Compound => 4,
        }
    }
    fn from_code(c: u8) -> Self {
        match c {
            1 => SourceFormat::Npy,
            2 => SourceFormat::Raw,
            3 => SourceFormat::Hdf5,
            4 => SourceFormat::Hdf5Compound,
            _ => SourceFormat::Unknown,
        }
    }
}

/// How the column statistics in the header were obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsSource {
    /// A pre-pass over the whole input.
    Whole,
    /// The first records of a stream (stdin): later values outside that range still meet the
    /// bound, they just cost more bits.
    FirstRecords(u64),
}

/// Everything the container header records.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Element type, shape, layout and column names.
    pub spec: ArraySpec,
    /// Values per record.
    pub record_len: u64,
    /// The input's file format.
    pub source: SourceFormat,
    /// Where the values were inside their file (an HDF5 dataset's path), if anywhere.
    pub source_path: Option<String>,
    /// Per bound column: the bound asked for and the absolute bound in effect.
    pub bounds: Vec<ResolvedBound>,
    /// Per bound column: statistics of the values (finite range).
    pub stats: Vec<ColumnStats>,
    /// Per bound column: normalization.
    pub norms: Vec<Normalization>,
    /// How `stats` were obtained.
    pub stats_source: StatsSource,
    /// The model section (empty: the plain predictor).
    pub model: Vec<u8>,
    /// The program that wrote the file.
    pub writer: String,
    /// The format version of the file the header was read from ([`FORMAT_VERSION`] for one
    /// being written: headers are always written in the newest version).
    pub version: u16,
}

impl Header {
    /// The parameters every chunk's codec needs.
    pub fn codec_params(&self) -> CodecParams {
        CodecParams {
            layout: self.spec.layout,
            record_len: self.record_len as usize,
            row_len: match self.spec.layout {
                Layout::Field if self.spec.shape.len() >= 2 => {
                    *self.spec.shape.last().unwrap_or(&0) as usize
                }
                _ => 0,
            },
            plane_len: match self.spec.layout {
                Layout::Field if self.spec.shape.len() >= 3 => {
                    let s = &self.spec.shape[self.spec.shape.len() - 2..];
                    s[0].saturating_mul(s[1]).min(usize::MAX as u64) as usize
                }
                _ => 0,
            },
            model: match self.spec.layout {
                Layout::Table if !self.model.is_empty() => {
                    crate::model::Model::read(&self.model, self.record_len as usize)
                        .ok()
                        .map(Arc::new)
                }
                _ => None,
            },
            columns: self
                .bounds
                .iter()
                .zip(&self.norms)
                .map(|(b, n)| ColumnParams {
                    bound: b.bound,
                    norm: *n,
                })
                .collect(),
        }
    }

    /// Records in the array, if the header knows (not for streamed input).
    pub fn records(&self) -> Option<u64> {
        let len = self.spec.len()?;
        Some(len / self.record_len.max(1))
    }

    /// Serializes the header.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut body = Vec::new();
        let mut sec = Vec::new();
        let s = &self.spec;
        sec.push(s.dtype.code());
        sec.push(s.layout.code());
        sec.push(s.shape.len() as u8);
        for &d in &s.shape {
            sec.extend_from_slice(&d.to_le_bytes());
        }
        sec.extend_from_slice(&self.record_len.to_le_bytes());
        sec.push(self.source.code());
        put_sec(&mut body, SEC_ARRAY, &mut sec);
        if !s.column_names.is_empty() {
            put_uvarint(&mut sec, s.column_names.len() as u64);
            for n in &s.column_names {
                put_uvarint(&mut sec, n.len() as u64);
                sec.extend_from_slice(n.as_bytes());
            }
            put_sec(&mut body, SEC_COLUMNS, &mut sec);
        }
        // Runs of columns with the same bound, resolved alike (a wide table configured by a
        // bounds file is a handful of runs).
        let runs: Vec<&[ResolvedBound]> = self
            .bounds
            .chunk_by(|a, b| {
                a.spec.code() == b.spec.code()
                    && a.spec.value().to_bits() == b.spec.value().to_bits()
                    && a.bound.value().to_bits() == b.bound.value().to_bits()
                    && a.bound.is_lossless() == b.bound.is_lossless()
            })
            .collect();
        put_uvarint(&mut sec, runs.len() as u64);
        for run in runs {
            put_uvarint(&mut sec, run.len() as u64);
            let b = run[0];
            sec.push(b.spec.code());
            sec.extend_from_slice(&b.spec.value().to_le_bytes());
            sec.extend_from_slice(&b.bound.value().to_le_bytes());
        }
        put_sec(&mut body, SEC_RUNS, &mut sec);
        // The normalization follows from the statistics; the range is stored in the element
        // type where it is exact there (it always is for ranges of the values themselves).
        let narrow = s.dtype == DType::F32
            && self
                .stats
                .iter()
                .all(|st| [st.min, st.max].iter().all(|&v| f64::from(v as f32) == v));
        put_uvarint(&mut sec, self.stats.len() as u64);
        sec.push(if narrow { 4 } else { 8 });
        for st in &self.stats {
            for v in [st.min, st.max] {
                if narrow {
                    sec.extend_from_slice(&(v as f32).to_le_bytes());
                } else {
                    sec.extend_from_slice(&v.to_le_bytes());
                }
            }
            put_uvarint(&mut sec, st.finite);
            put_uvarint(&mut sec, st.nonfinite);
        }
        match self.stats_source {
            StatsSource::Whole => sec.push(0),
            StatsSource::FirstRecords(n) => {
                sec.push(1);
                put_uvarint(&mut sec, n);
            }
        }
        put_sec(&mut body, SEC_STATS, &mut sec);
        if self.model.is_empty() {
            sec.push(0);
        } else {
            sec.push(crate::model::KIND_CONDITIONAL_MLP);
            sec.extend_from_slice(&self.model);
        }
        put_sec(&mut body, SEC_MODEL, &mut sec);
        sec.extend_from_slice(self.writer.as_bytes());
        put_sec(&mut body, SEC_WRITER, &mut sec);
        if let Some(p) = &self.source_path {
            sec.extend_from_slice(p.as_bytes());
            put_sec(&mut body, SEC_SOURCE_PATH, &mut sec);
        }

        out.extend_from_slice(&MAGIC);
        let start = out.len();
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }

    /// Reads and validates a header.
    pub fn read_from<R: Read>(r: &mut R) -> Result<Header> {
        Self::read_with_crc(r).map(|(h, _, _)| h)
    }

    /// Reads and validates a header; also returns its length in bytes and its checksum (which
    /// starts the content checksum, [`ContentSum`]).
    fn read_with_crc<R: Read>(r: &mut R) -> Result<(Header, u64, u32)> {
        let (header, raw) = Self::read_raw(r)?;
        let crc = u32::from_le_bytes(raw[raw.len() - 4..].try_into().expect("4"));
        Ok((header, raw.len() as u64, crc))
    }

    /// Reads and validates a header; also returns its bytes, exactly as they were written
    /// (a plan keeps them, so that every file of the plan starts with them).
    pub(crate) fn read_raw<R: Read>(r: &mut R) -> Result<(Header, Vec<u8>)> {
        let mut raw = vec![0u8; 14];
        read_exact_or(r, &mut raw[..8], || Error::BadMagic)?;
        if raw[..8] != MAGIC {
            return Err(not_a_container(&raw[..8]));
        }
        read_exact_or(r, &mut raw[8..], || truncated("inside the header", 0, 0))?;
        let version = u16::from_le_bytes([raw[8], raw[9]]);
        if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(Error::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let len = u32::from_le_bytes([raw[10], raw[11], raw[12], raw[13]]);
        if len > MAX_HEADER {
            return Err(Error::CorruptHeader(format!(
                "header length {len} is implausible"
            )));
        }
        raw.resize(14 + len as usize + 4, 0);
        read_exact_or(r, &mut raw[14..], || truncated("inside the header", 0, 0))?;
        let end = 14 + len as usize;
        let crc_stored = u32::from_le_bytes(raw[end..].try_into().expect("4 bytes"));
        let crc = crc32fast::hash(&raw[8..end]);
        if crc != crc_stored {
            return Err(Error::CorruptHeader(format!(
                "checksum {crc:#010x} does not match the stored {crc_stored:#010x}"
            )));
        }
        let header = parse_body(&raw[14..end], version).map_err(|m| Error::CorruptHeader(m.0))?;
        Ok((header, raw))
    }
}

/// The error for a file that does not start with the container magic: what it is instead,
/// where it is another file of baler's (a plan, a shard).
fn not_a_container(magic: &[u8]) -> Error {
    if magic == crate::shard::SHARD_MAGIC {
        Error::InvalidInput(
            "this is one shard of a container (written by `baler compress --shard`), not a \
             whole container: join the shards with `baler concat SHARD... -o OUT`"
                .into(),
        )
    } else if magic == crate::plan::PLAN_MAGIC {
        Error::InvalidInput(
            "this is a plan (written by `baler plan`), not a container: compress with \
             `baler compress INPUT --plan PLAN`"
                .into(),
        )
    } else {
        Error::BadMagic
    }
}

/// The content checksum of format version 4: a CRC-32 over the header's checksum and then
/// every chunk header in order, less its own CRC (each holds the chunk's sequence number,
/// record count, flags, payload length and payload CRC), stored in the end mark. A chunk from another file, or one
/// forged with checksums of its own, changes it; joining shards (which copies chunks as
/// they are) only needs their headers to recompute it.
#[derive(Debug, Clone)]
struct ContentSum(crc32fast::Hasher);

impl ContentSum {
    fn new(header_crc: u32) -> Self {
        let mut h = crc32fast::Hasher::new();
        h.update(&header_crc.to_le_bytes());
        ContentSum(h)
    }

    /// Adds a chunk by its header, less the header's own CRC: a CRC run over a block that
    /// ends in its own CRC ends in a state that does not depend on the block at all.
    fn add_chunk(&mut self, chunk_header: &[u8; CHUNK_HEADER_LEN]) {
        self.0.update(&chunk_header[..CHUNK_HEADER_LEN - 4]);
    }

    fn value(&self) -> u32 {
        self.0.clone().finalize()
    }
}

/// The footer entry of a chunk, as the writer writes it and the reader checks it.
fn entry_bytes(e: &IndexEntry) -> [u8; INDEX_ENTRY_LEN] {
    let mut b = [0u8; INDEX_ENTRY_LEN];
    b[..8].copy_from_slice(&e.offset.to_le_bytes());
    b[8..16].copy_from_slice(&e.first_record.to_le_bytes());
    b[16..20].copy_from_slice(&e.records.to_le_bytes());
    b
}

fn put_sec(body: &mut Vec<u8>, tag: u8, sec: &mut Vec<u8>) {
    body.push(tag);
    put_uvarint(body, sec.len() as u64);
    body.append(sec);
}

fn parse_body(body: &[u8], version: u16) -> DecodeResult<Header> {
    let mut r = ByteReader::new(body);
    let mut array = None;
    let mut names = Vec::new();
    let mut bounds = None;
    let mut runs: Option<Vec<(usize, ResolvedBound)>> = None;
    let mut norm = None;
    let mut model = Vec::new();
    let mut writer = String::new();
    let mut source_path = None;
    while !r.is_empty() {
        let tag = r.u8()?;
        let sec = r.section()?;
        let mut s = ByteReader::new(sec);
        match tag {
            SEC_ARRAY => {
                let dtype =
                    DType::from_code(s.u8()?).ok_or_else(|| Malformed::new("unknown dtype"))?;
                let layout =
                    Layout::from_code(s.u8()?).ok_or_else(|| Malformed::new("unknown layout"))?;
                let rank = s.u8()? as usize;
                let shape = (0..rank)
                    .map(|_| s.u64())
                    .collect::<DecodeResult<Vec<_>>>()?;
                let record_len = s.u64()?;
                let source = SourceFormat::from_code(s.u8()?);
                array = Some((dtype, layout, shape, record_len, source));
            }
            SEC_COLUMNS => {
                let n = s.uvarint_max(sec.len() as u64, "column name count")?;
                for _ in 0..n {
                    let b = s.section()?;
                    names.push(
                        String::from_utf8(b.to_vec())
                            .map_err(|_| Malformed::new("column name is not UTF-8"))?,
                    );
                }
            }
            SEC_BOUNDS => {
                let n = s.uvarint_max(sec.len() as u64 / 17, "bound count")?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(read_bound(&mut s)?);
                }
                bounds = Some(v);
            }
            SEC_RUNS => {
                let n = s.uvarint_max(sec.len() as u64 / 18, "bound run count")?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    let count = s.uvarint_max(u32::MAX as u64, "bound run length")?;
                    let b = read_bound(&mut s)?;
                    v.push((count, b));
                }
                runs = Some(v);
            }
            SEC_STATS => {
                let n = s.uvarint_max(sec.len() as u64 / 10, "statistics count")?;
                let width = s.u8()?;
                if width != 4 && width != 8 {
                    return Err(Malformed(format!("statistics of {width}-byte values")));
                }
                let mut stats = Vec::with_capacity(n);
                for _ in 0..n {
                    let mut value = || -> DecodeResult<f64> {
                        Ok(if width == 4 {
                            f64::from(f32::from_le_bytes(s.bytes(4)?.try_into().expect("4")))
                        } else {
                            s.f64()?
                        })
                    };
                    let (min, max) = (value()?, value()?);
                    let (finite, nonfinite) = (s.uvarint()?, s.uvarint()?);
                    if min.is_nan() || max.is_nan() || (finite > 0 && min > max) {
                        return Err(Malformed::new("invalid column range"));
                    }
                    stats.push(ColumnStats {
                        min,
                        max,
                        finite,
                        nonfinite,
                    });
                }
                let source = match s.u8()? {
                    0 => StatsSource::Whole,
                    1 => StatsSource::FirstRecords(s.uvarint()?),
                    _ => return Err(Malformed::new("unknown statistics source")),
                };
                let norms = stats.iter().map(Normalization::from_stats).collect();
                norm = Some((stats, norms, source));
            }
            SEC_NORMALIZE => {
                let n = s.uvarint_max(sec.len() as u64 / 48, "normalization count")?;
                let mut stats = Vec::with_capacity(n);
                let mut norms = Vec::with_capacity(n);
                for _ in 0..n {
                    let (min, max) = (s.f64()?, s.f64()?);
                    let (finite, nonfinite) = (s.u64()?, s.u64()?);
                    stats.push(ColumnStats {
                        min,
                        max,
                        finite,
                        nonfinite,
                    });
                    let (offset, scale) = (s.f64()?, s.f64()?);
                    if !offset.is_finite() || !scale.is_finite() {
                        return Err(Malformed::new("normalization is not finite"));
                    }
                    norms.push(Normalization { offset, scale });
                }
                let source = match (s.u8()?, s.u64()?) {
                    (0, _) => StatsSource::Whole,
                    (1, k) => StatsSource::FirstRecords(k),
                    _ => return Err(Malformed::new("unknown statistics source")),
                };
                norm = Some((stats, norms, source));
            }
            SEC_MODEL => match s.u8()? {
                0 => {}
                crate::model::KIND_CONDITIONAL_MLP => {
                    model = s.bytes(s.remaining())?.to_vec();
                    if model.is_empty() {
                        return Err(Malformed::new("empty model section"));
                    }
                }
                kind => {
                    return Err(Malformed(format!("model kind {kind} needs a newer baler")));
                }
            },
            SEC_WRITER => writer = String::from_utf8_lossy(sec).into_owned(),
            SEC_SOURCE_PATH => source_path = Some(String::from_utf8_lossy(sec).into_owned()),
            t if t & 0x80 != 0 => {}
            t => {
                return Err(Malformed(format!(
                    "unknown required section {t:#04x} (written by a newer baler?)"
                )));
            }
        }
    }
    let (dtype, layout, shape, record_len, source) =
        array.ok_or_else(|| Malformed::new("no array section"))?;
    let (stats, norms, stats_source) =
        norm.ok_or_else(|| Malformed::new("no statistics section"))?;
    let bounds = match (bounds, runs) {
        (Some(b), None) => b,
        // Expanded only once their total is known to match the statistics, whose size the
        // header's length bounds.
        (None, Some(runs)) => {
            let total = runs.iter().map(|r| r.0 as u64).sum::<u64>();
            if total != stats.len() as u64 {
                return Err(Malformed(format!(
                    "bound runs cover {total} columns, the statistics {}",
                    stats.len()
                )));
            }
            runs.iter()
                .flat_map(|&(count, b)| std::iter::repeat_n(b, count))
                .collect()
        }
        (Some(_), Some(_)) => return Err(Malformed::new("two bounds sections")),
        (None, None) => return Err(Malformed::new("no bounds section")),
    };
    let spec = ArraySpec {
        dtype,
        shape,
        layout,
        column_names: names,
    };
    spec.validate().map_err(|e| Malformed(e.to_string()))?;
    let cols = spec.bound_columns();
    if bounds.len() != cols || norms.len() != cols {
        return Err(Malformed(format!(
            "{} bounds and {} normalizations for {cols} columns",
            bounds.len(),
            norms.len()
        )));
    }
    let valid_record = match layout {
        Layout::Table => record_len == spec.shape[1],
        Layout::Field => record_len >= 1 && spec.slice_len().is_multiple_of(record_len),
    };
    if !valid_record || record_len == 0 || record_len > u32::MAX as u64 {
        return Err(Malformed(format!(
            "record length {record_len} does not fit the shape"
        )));
    }
    if !model.is_empty() {
        if layout != Layout::Table {
            return Err(Malformed::new("a model section in a field's container"));
        }
        crate::model::Model::read(&model, record_len as usize)
            .map_err(|e| Malformed(format!("model section: {e}")))?;
    }
    Ok(Header {
        spec,
        record_len,
        source,
        source_path,
        bounds,
        stats,
        norms,
        stats_source,
        model,
        writer,
        version,
    })
}

/// One stored bound: kind u8, requested f64, resolved f64.
fn read_bound(s: &mut ByteReader<'_>) -> DecodeResult<ResolvedBound> {
    let code = s.u8()?;
    let value = s.f64()?;
    let resolved = s.f64()?;
    let spec = BoundSpec::from_code(code, value).ok_or_else(|| {
        Malformed(format!(
            "unknown or invalid bound (kind {code}, value {value}; written by a newer baler?)"
        ))
    })?;
    let bound = Bound::from_stored(spec, resolved)
        .ok_or_else(|| Malformed(format!("invalid resolved bound {resolved} for {spec}")))?;
    Ok(ResolvedBound { spec, bound })
}

pub(crate) fn read_exact_or<R: Read>(
    r: &mut R,
    buf: &mut [u8],
    on_eof: impl FnOnce() -> Error,
) -> Result<()> {
    match r.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(on_eof()),
        Err(e) => Err(Error::Io(e)),
    }
}

pub(crate) fn truncated(where_: &str, chunks: u64, records: u64) -> Error {
    Error::Truncated {
        where_: where_.to_string(),
        chunks,
        records,
    }
}

/// One entry of the footer index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Byte offset of the chunk's tag from the start of the file.
    pub offset: u64,
    /// Index of the chunk's first record.
    pub first_record: u64,
    /// Records in the chunk.
    pub records: u32,
}

/// Writes a container front to back.
#[derive(Debug)]
pub struct ContainerWriter<W: Write> {
    inner: W,
    offset: u64,
    records: u64,
    /// The sequence number of the first chunk written (a shard's first chunk in the whole
    /// container; 0 otherwise) and the records before it.
    first_chunk: u64,
    first_record: u64,
    index: Vec<IndexEntry>,
    content: ContentSum,
}

impl<W: Write> ContainerWriter<W> {
    /// Writes the header.
    pub fn new(inner: W, header: &Header) -> Result<Self> {
        let mut buf = Vec::new();
        header.write_to(&mut buf);
        Self::with_header_bytes(inner, &[], &buf, 0, 0)
    }

    /// Writes `prefix` and then a serialized header (a plan's, exactly as it was written);
    /// chunks are numbered from `first_chunk`, after `first_record` records (a shard of a
    /// container, [`crate::shard`]).
    pub(crate) fn with_header_bytes(
        mut inner: W,
        prefix: &[u8],
        header: &[u8],
        first_chunk: u64,
        first_record: u64,
    ) -> Result<Self> {
        inner.write_all(prefix)?;
        inner.write_all(header)?;
        let crc = u32::from_le_bytes(header[header.len() - 4..].try_into().expect("4"));
        Ok(ContainerWriter {
            inner,
            offset: (prefix.len() + header.len()) as u64,
            records: 0,
            first_chunk,
            first_record,
            index: Vec::new(),
            content: ContentSum::new(crc),
        })
    }

    /// The file's size once [`finish`](Self::finish) has written the end mark and footer.
    pub(crate) fn finished_len(&self) -> u64 {
        self.offset + (END_LEN_V4 + self.index.len() * INDEX_ENTRY_LEN + 20) as u64
    }

    /// Chunks written so far.
    pub(crate) fn chunks_written(&self) -> u64 {
        self.index.len() as u64
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.offset
    }

    /// Records written so far.
    pub fn records_written(&self) -> u64 {
        self.records
    }

    /// Appends one chunk.
    pub fn write_chunk(&mut self, records: u32, kind: PayloadKind, payload: &[u8]) -> Result<()> {
        if payload.len() as u64 > MAX_PAYLOAD as u64 {
            return Err(Error::InvalidInput(format!(
                "a chunk payload of {} bytes exceeds the format's limit; use a smaller chunk size",
                payload.len()
            )));
        }
        let mut h = [0u8; CHUNK_HEADER_LEN];
        h[0] = TAG_CHUNK;
        h[1..9].copy_from_slice(&(self.first_chunk + self.index.len() as u64).to_le_bytes());
        h[9..13].copy_from_slice(&records.to_le_bytes());
        h[13..15].copy_from_slice(&(kind as u16).to_le_bytes());
        h[15..19].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        h[19..23].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
        let hc = crc32fast::hash(&h[..23]);
        h[23..27].copy_from_slice(&hc.to_le_bytes());
        self.inner.write_all(&h)?;
        self.inner.write_all(payload)?;
        self.add_entry(&h);
        Ok(())
    }

    /// Counts a chunk just written by its header.
    fn add_entry(&mut self, h: &[u8; CHUNK_HEADER_LEN]) {
        let records = u32::from_le_bytes(h[9..13].try_into().expect("4"));
        let len = u32::from_le_bytes(h[15..19].try_into().expect("4"));
        self.content.add_chunk(h);
        self.index.push(IndexEntry {
            offset: self.offset,
            first_record: self.first_record + self.records,
            records,
        });
        self.offset += CHUNK_HEADER_LEN as u64 + u64::from(len);
        self.records += u64::from(records);
    }

    /// Copies chunk `n` of another file as it is (joining shards): `h` is its header, read
    /// and checked (its CRC, its sequence number `n`), and `payload` reads its payload, whose
    /// CRC is checked as it is copied, in blocks of 1 MiB. Returns the payload's length.
    pub(crate) fn copy_chunk<R: Read>(
        &mut self,
        h: &[u8; CHUNK_HEADER_LEN],
        payload: &mut R,
        buf: &mut Vec<u8>,
    ) -> Result<u64> {
        let n = self.first_chunk + self.index.len() as u64;
        let (index, len, pcrc) = chunk_header_fields(h, n)?;
        if index != n {
            return Err(Error::chunk(
                n,
                format!("it is numbered {index}: chunks are missing or out of order"),
            ));
        }
        self.inner.write_all(h)?;
        let mut hasher = crc32fast::Hasher::new();
        let mut left = u64::from(len);
        buf.resize(1 << 20, 0);
        while left > 0 {
            let step = left.min(buf.len() as u64) as usize;
            read_exact_or(payload, &mut buf[..step], || {
                truncated(
                    &format!(
                        "inside chunk {n} ({} of its {len} bytes)",
                        u64::from(len) - left
                    ),
                    n,
                    self.first_record + self.records,
                )
            })?;
            hasher.update(&buf[..step]);
            self.inner.write_all(&buf[..step])?;
            left -= step as u64;
        }
        let found = hasher.finalize();
        if found != pcrc {
            return Err(Error::ChunkChecksum {
                chunk: n,
                expected: pcrc,
                found,
            });
        }
        self.add_entry(h);
        Ok(u64::from(len))
    }

    /// Writes the end mark and footer, flushes, and returns the inner writer.
    pub fn finish(self) -> Result<W> {
        let mut e = Vec::with_capacity(END_LEN_V4 + self.index.len() * INDEX_ENTRY_LEN + 20);
        e.push(TAG_END);
        e.extend_from_slice(&(self.index.len() as u64).to_le_bytes());
        e.extend_from_slice(&self.records.to_le_bytes());
        e.extend_from_slice(&self.content.value().to_le_bytes());
        let c = crc32fast::hash(&e);
        e.extend_from_slice(&c.to_le_bytes());
        let start = e.len();
        for x in &self.index {
            e.extend_from_slice(&entry_bytes(x));
        }
        let entries_len = (e.len() - start) as u64;
        e.extend_from_slice(&entries_len.to_le_bytes());
        let c = crc32fast::hash(&e[start..]);
        e.extend_from_slice(&c.to_le_bytes());
        e.extend_from_slice(&FOOTER_MAGIC_V4);
        self.finish_with(&e)
    }

    /// Writes `end` (a shard's end, in place of a container's end mark and footer), flushes,
    /// and returns the inner writer.
    pub(crate) fn finish_with(mut self, end: &[u8]) -> Result<W> {
        self.inner.write_all(end)?;
        self.inner.flush()?;
        self.offset += end.len() as u64;
        Ok(self.inner)
    }
}

/// A chunk header's sequence number, payload length and payload CRC, once its own CRC checks
/// out (`n`: the chunk expected there, for the message).
pub(crate) fn chunk_header_fields(h: &[u8; CHUNK_HEADER_LEN], n: u64) -> Result<(u64, u32, u32)> {
    let stored = u32::from_le_bytes(h[23..27].try_into().expect("4"));
    let found = crc32fast::hash(&h[..23]);
    if h[0] != TAG_CHUNK || stored != found {
        return Err(Error::ChunkChecksum {
            chunk: n,
            expected: stored,
            found,
        });
    }
    let len = u32::from_le_bytes(h[15..19].try_into().expect("4"));
    if len > MAX_PAYLOAD {
        return Err(Error::chunk(
            n,
            format!("implausible payload of {len} bytes"),
        ));
    }
    Ok((
        u64::from_le_bytes(h[1..9].try_into().expect("8")),
        len,
        u32::from_le_bytes(h[19..23].try_into().expect("4")),
    ))
}

/// One unit read from a container stream.
#[derive(Debug)]
pub enum Frame {
    /// A chunk, its checksums verified.
    Chunk {
        /// Sequence number.
        index: u64,
        /// Records in it.
        records: u32,
        /// How the payload is stored.
        kind: PayloadKind,
        /// The payload.
        payload: Vec<u8>,
    },
    /// The end mark: totals verified against the chunks read.
    End {
        /// Chunks in the file.
        chunks: u64,
        /// Records in the file.
        records: u64,
    },
}

/// Reads a container front to back.
#[derive(Debug)]
pub struct ContainerReader<R: Read> {
    inner: R,
    header: Header,
    chunks: u64,
    records: u64,
    done: bool,
    /// The decompressor's memory limit: no payload may take more than half of it.
    memory_limit: Option<u64>,
    /// Bytes read so far (where the next chunk starts).
    offset: u64,
    /// The content checksum of the chunks read so far (checked at the end mark, version 4).
    content: ContentSum,
    /// A CRC of the footer entries the chunks read call for (checked against the footer).
    entries: crc32fast::Hasher,
}

impl<R: Read> ContainerReader<R> {
    /// Reads the header.
    pub fn new(mut inner: R) -> Result<Self> {
        let (header, len, crc) = Header::read_with_crc(&mut inner)?;
        Ok(ContainerReader {
            inner,
            header,
            chunks: 0,
            records: 0,
            done: false,
            memory_limit: None,
            offset: len,
            content: ContentSum::new(crc),
            entries: crc32fast::Hasher::new(),
        })
    }

    /// Refuses chunks whose payload alone exceeds half of `memory_limit` bytes (before reading
    /// it), as [`Error::MemoryLimit`].
    pub fn limit_memory(&mut self, memory_limit: u64) {
        self.memory_limit = Some(memory_limit);
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Chunks read so far.
    pub fn chunks_read(&self) -> u64 {
        self.chunks
    }

    /// Records in the chunks read so far.
    pub fn records_read(&self) -> u64 {
        self.records
    }

    /// Gives back the inner reader (positioned after the end mark once the end was read).
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Reads the next chunk, or the end mark. Reading after the end mark returns it again.
    pub fn next_frame(&mut self) -> Result<Frame> {
        self.next_frame_reusing(Vec::new())
    }

    /// Like [`next_frame`](Self::next_frame), reading a chunk's payload into `spare` (its
    /// allocation is reused).
    pub fn next_frame_reusing(&mut self, spare: Vec<u8>) -> Result<Frame> {
        if self.done {
            return Ok(Frame::End {
                chunks: self.chunks,
                records: self.records,
            });
        }
        let (n, rec) = (self.chunks, self.records);
        let where_ = || match n {
            0 => "right after the header".to_string(),
            _ => format!("after chunk {} ({rec} records)", n - 1),
        };
        let mut tag = [0u8; 1];
        read_exact_or(&mut self.inner, &mut tag, || {
            truncated(&format!("{} with no end mark", where_()), n, rec)
        })?;
        match tag[0] {
            TAG_CHUNK => {
                let (frame, h) =
                    read_chunk_body(&mut self.inner, n, rec, spare, self.memory_limit)?;
                if let Frame::Chunk {
                    records,
                    ref payload,
                    ..
                } = frame
                {
                    self.entries.update(&entry_bytes(&IndexEntry {
                        offset: self.offset,
                        first_record: self.records,
                        records,
                    }));
                    self.content.add_chunk(&h);
                    self.offset += (CHUNK_HEADER_LEN + payload.len()) as u64;
                    self.chunks += 1;
                    self.records += records as u64;
                }
                Ok(frame)
            }
            TAG_END => {
                let len = if self.header.version >= 4 {
                    END_LEN_V4
                } else {
                    END_LEN
                };
                let mut e = [0u8; END_LEN_V4];
                e[0] = TAG_END;
                read_exact_or(&mut self.inner, &mut e[1..len], || {
                    truncated("inside the end mark", n, rec)
                })?;
                let stored = u32::from_le_bytes(e[len - 4..len].try_into().expect("4"));
                if crc32fast::hash(&e[..len - 4]) != stored {
                    return Err(Error::CorruptTrailer(
                        "the end mark fails its checksum".into(),
                    ));
                }
                if len == END_LEN_V4 {
                    let content = u32::from_le_bytes(e[17..21].try_into().expect("4"));
                    if content != self.content.value() {
                        return Err(Error::CorruptTrailer(format!(
                            "the chunks are not the ones this file was written with: their \
                             content checksum is {:#010x}, the end mark says {content:#010x} \
                             (a chunk taken from another file, or forged)",
                            self.content.value()
                        )));
                    }
                }
                let chunks = u64::from_le_bytes(e[1..9].try_into().expect("8"));
                let records = u64::from_le_bytes(e[9..17].try_into().expect("8"));
                if chunks != self.chunks || records != self.records {
                    return Err(Error::CorruptTrailer(format!(
                        "the end mark counts {chunks} chunks and {records} records, but {} chunks and {} records were read",
                        self.chunks, self.records
                    )));
                }
                if let Some(expected) = self.header.records()
                    && expected != records
                {
                    return Err(Error::CorruptTrailer(format!(
                        "the header promises {expected} records but the file holds {records}"
                    )));
                }
                self.done = true;
                Ok(Frame::End { chunks, records })
            }
            t => Err(Error::chunk(
                n,
                format!("expected a chunk or the end mark, found byte {t:#04x}"),
            )),
        }
    }

    /// Reads and checks the footer after the end mark (streams that stop at the end mark are
    /// accepted by `next_frame`; this verifies the index too).
    pub fn read_footer(&mut self) -> Result<Vec<IndexEntry>> {
        let n = self.chunks as usize;
        let mut buf = vec![0u8; n * INDEX_ENTRY_LEN + 20];
        read_exact_or(&mut self.inner, &mut buf, || {
            truncated("inside the footer index", self.chunks, self.records)
        })?;
        let index = parse_footer(&buf, self.chunks, footer_magic(self.header.version))?;
        // The entries must be where the chunks read are, not merely checksummed.
        if crc32fast::hash(&buf[..n * INDEX_ENTRY_LEN]) != self.entries.clone().finalize() {
            return Err(Error::CorruptTrailer(
                "footer index: it does not point at the chunks read (forged or damaged)".into(),
            ));
        }
        Ok(index)
    }
}

/// The footer magic of format `version`.
fn footer_magic(version: u16) -> [u8; 8] {
    if version >= 4 {
        FOOTER_MAGIC_V4
    } else {
        FOOTER_MAGIC
    }
}

fn parse_footer(buf: &[u8], chunks: u64, magic: [u8; 8]) -> Result<Vec<IndexEntry>> {
    let bad = |m: &str| Error::CorruptTrailer(format!("footer index: {m}"));
    let n = chunks as usize;
    if buf.len() != n * INDEX_ENTRY_LEN + 20 {
        return Err(bad("wrong length"));
    }
    let tail = &buf[n * INDEX_ENTRY_LEN..];
    if tail[12..20] != magic {
        return Err(bad("missing its magic"));
    }
    let len = u64::from_le_bytes(tail[..8].try_into().expect("8"));
    if len != (n * INDEX_ENTRY_LEN) as u64 {
        return Err(bad("length disagrees with the chunk count"));
    }
    let stored = u32::from_le_bytes(tail[8..12].try_into().expect("4"));
    if crc32fast::hash(&buf[..n * INDEX_ENTRY_LEN + 8]) != stored {
        return Err(bad("checksum mismatch"));
    }
    Ok(buf[..n * INDEX_ENTRY_LEN]
        .chunks_exact(INDEX_ENTRY_LEN)
        .map(|e| IndexEntry {
            offset: u64::from_le_bytes(e[..8].try_into().expect("8")),
            first_record: u64::from_le_bytes(e[8..16].try_into().expect("8")),
            records: u32::from_le_bytes(e[16..20].try_into().expect("4")),
        })
        .collect())
}

/// Reads the rest of chunk `n` after its tag (`rec` records came before it), checking both its
/// CRCs and its sequence number, into `spare`'s allocation; a payload over half of
/// `memory_limit` is refused before it is read. Returns the chunk and its header's bytes.
fn read_chunk_body<R: Read>(
    r: &mut R,
    n: u64,
    rec: u64,
    spare: Vec<u8>,
    memory_limit: Option<u64>,
) -> Result<(Frame, [u8; CHUNK_HEADER_LEN])> {
    let mut h = [0u8; CHUNK_HEADER_LEN];
    h[0] = TAG_CHUNK;
    read_exact_or(r, &mut h[1..], || {
        truncated(&format!("inside the header of chunk {n}"), n, rec)
    })?;
    let stored = u32::from_le_bytes(h[23..27].try_into().expect("4"));
    let found = crc32fast::hash(&h[..23]);
    if stored != found {
        return Err(Error::ChunkChecksum {
            chunk: n,
            expected: stored,
            found,
        });
    }
    let index = u64::from_le_bytes(h[1..9].try_into().expect("8"));
    let records = u32::from_le_bytes(h[9..13].try_into().expect("4"));
    let flags = u16::from_le_bytes(h[13..15].try_into().expect("2"));
    let len = u32::from_le_bytes(h[15..19].try_into().expect("4"));
    let pcrc = u32::from_le_bytes(h[19..23].try_into().expect("4"));
    if index != n {
        return Err(Error::chunk(
            n,
            format!("it is numbered {index}: chunks are missing or out of order"),
        ));
    }
    let kind = PayloadKind::from_flags(flags)
        .filter(|_| flags & !0x3 == 0)
        .ok_or_else(|| Error::chunk(n, format!("unknown flags {flags:#06x}")))?;
    if records == 0 || len > MAX_PAYLOAD {
        return Err(Error::chunk(
            n,
            format!("implausible size: {records} records in {len} bytes"),
        ));
    }
    if let Some(limit) = memory_limit.filter(|&l| u64::from(len) > l / 2) {
        return Err(Error::MemoryLimit {
            chunk: n,
            records: u64::from(records),
            needs: u64::from(len),
            limit,
        });
    }
    let mut payload = spare;
    payload.clear();
    let got = r.take(len as u64).read_to_end(&mut payload)?;
    if got != len as usize {
        return Err(truncated(
            &format!("inside chunk {n} ({got} of its {len} bytes)"),
            n,
            rec,
        ));
    }
    let found = crc32fast::hash(&payload);
    if found != pcrc {
        return Err(Error::ChunkChecksum {
            chunk: n,
            expected: pcrc,
            found,
        });
    }
    let frame = Frame::Chunk {
        index,
        records,
        kind,
        payload,
    };
    Ok((frame, h))
}

/// Reads chunk `n` of a seekable container directly, through its footer index entry (random
/// access: decode it with [`crate::decompress::decompress_chunk`]).
pub fn read_chunk_at<R: Read + Seek>(r: &mut R, n: u64, entry: &IndexEntry) -> Result<Frame> {
    r.seek(SeekFrom::Start(entry.offset))?;
    let mut tag = [0u8; 1];
    read_exact_or(r, &mut tag, || {
        truncated(&format!("at chunk {n}"), n, entry.first_record)
    })?;
    if tag[0] != TAG_CHUNK {
        return Err(Error::CorruptTrailer(format!(
            "the index entry of chunk {n} does not point at a chunk"
        )));
    }
    let (frame, _) = read_chunk_body(r, n, entry.first_record, Vec::new(), None)?;
    if let Frame::Chunk { records, .. } = &frame
        && *records != entry.records
    {
        return Err(Error::CorruptTrailer(format!(
            "the index and chunk {n} disagree on its record count"
        )));
    }
    Ok(frame)
}

/// The end of a complete container: totals and the chunk index, read from the end of a seekable
/// file without touching the chunks ([`verify_trailer`] checks it against them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailer {
    /// Chunks in the file.
    pub chunks: u64,
    /// Records in the file.
    pub records: u64,
    /// One entry per chunk.
    pub index: Vec<IndexEntry>,
    /// The content checksum of the end mark (format version 4 on).
    pub content: Option<u32>,
    /// Where the end mark starts.
    pub end_offset: u64,
}

/// Reads the end mark and footer index of a seekable container.
pub fn read_trailer<R: Read + Seek>(r: &mut R) -> Result<Trailer> {
    let size = r.seek(SeekFrom::End(0))?;
    if size < 20 + END_LEN as u64 {
        return Err(truncated(
            "before its footer (the file is too short to hold one)",
            0,
            0,
        ));
    }
    let mut tail = [0u8; 20];
    r.seek(SeekFrom::End(-20))?;
    r.read_exact(&mut tail)?;
    let (magic, end_len) = match &tail[12..20] {
        m if m == FOOTER_MAGIC => (FOOTER_MAGIC, END_LEN),
        m if m == FOOTER_MAGIC_V4 => (FOOTER_MAGIC_V4, END_LEN_V4),
        _ => {
            return Err(truncated(
                "without its footer (the last bytes are not the index magic)",
                0,
                0,
            ));
        }
    };
    let len = u64::from_le_bytes(tail[..8].try_into().expect("8"));
    // (A file too short for this version's end mark leaves no room at all.)
    let room = size.checked_sub(20 + end_len as u64);
    if len % INDEX_ENTRY_LEN as u64 != 0 || room.is_none_or(|room| len > room) {
        return Err(Error::CorruptTrailer(format!(
            "footer length {len} is implausible"
        )));
    }
    let chunks = len / INDEX_ENTRY_LEN as u64;
    let end_offset = size - len - 20 - end_len as u64;
    r.seek(SeekFrom::Start(end_offset))?;
    let mut buf = vec![0u8; end_len + len as usize + 20];
    r.read_exact(&mut buf)?;
    let e = &buf[..end_len];
    let stored = u32::from_le_bytes(e[end_len - 4..].try_into().expect("4"));
    if e[0] != TAG_END || crc32fast::hash(&e[..end_len - 4]) != stored {
        return Err(Error::CorruptTrailer(
            "the end mark before the footer is damaged".into(),
        ));
    }
    let end_chunks = u64::from_le_bytes(e[1..9].try_into().expect("8"));
    let records = u64::from_le_bytes(e[9..17].try_into().expect("8"));
    if end_chunks != chunks {
        return Err(Error::CorruptTrailer(
            "end mark and footer disagree on the chunk count".into(),
        ));
    }
    let content =
        (end_len == END_LEN_V4).then(|| u32::from_le_bytes(e[17..21].try_into().expect("4")));
    let index = parse_footer(&buf[end_len..], chunks, magic)?;
    Ok(Trailer {
        chunks,
        records,
        index,
        content,
        end_offset,
    })
}

/// Checks a trailer against the chunks it indexes, reading only their headers: each entry
/// must point at the chunk of its number, with its record count, the chunks must follow each
/// other from the header to the end mark, their records must add up to the end mark's, and
/// (format version 4) their content checksum must be the end mark's. A footer forged with a
/// valid checksum of its own fails here.
pub fn verify_trailer<R: Read + Seek>(r: &mut R, trailer: &Trailer) -> Result<()> {
    let bad = |m: String| Error::CorruptTrailer(format!("footer index: {m}"));
    r.seek(SeekFrom::Start(0))?;
    let (header, mut offset, crc) = Header::read_with_crc(r)?;
    if (header.version >= 4) != trailer.content.is_some() {
        return Err(bad(
            "its kind does not match the header's format version".into()
        ));
    }
    let mut content = ContentSum::new(crc);
    let mut records = 0u64;
    for (i, e) in trailer.index.iter().enumerate() {
        if e.offset != offset || e.first_record != records {
            return Err(bad(format!(
                "entry {i} says offset {} and first record {}, but chunk {i} starts at {offset} \
                 after {records} records",
                e.offset, e.first_record
            )));
        }
        r.seek(SeekFrom::Start(offset))?;
        let mut h = [0u8; CHUNK_HEADER_LEN];
        read_exact_or(r, &mut h, || {
            truncated(&format!("at chunk {i}"), i as u64, records)
        })?;
        let stored = u32::from_le_bytes(h[23..27].try_into().expect("4"));
        let index = u64::from_le_bytes(h[1..9].try_into().expect("8"));
        let n = u32::from_le_bytes(h[9..13].try_into().expect("4"));
        let len = u32::from_le_bytes(h[15..19].try_into().expect("4"));
        if h[0] != TAG_CHUNK || crc32fast::hash(&h[..23]) != stored || index != i as u64 {
            return Err(bad(format!("entry {i} does not point at chunk {i}")));
        }
        if n != e.records {
            return Err(bad(format!(
                "entry {i} says {} records, chunk {i} holds {n}",
                e.records
            )));
        }
        content.add_chunk(&h);
        offset += (CHUNK_HEADER_LEN as u64) + u64::from(len);
        records += u64::from(n);
    }
    if offset != trailer.end_offset || records != trailer.records {
        return Err(bad(format!(
            "the chunks end at byte {offset} with {records} records, the end mark is at byte {} \
             and counts {} records",
            trailer.end_offset, trailer.records
        )));
    }
    if let Some(stored) = trailer.content
        && content.value() != stored
    {
        return Err(Error::CorruptTrailer(
            "the chunks are not the ones this file was written with (content checksum)".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::array::UNKNOWN;

    pub(crate) fn sample_header() -> Header {
        let mut spec = ArraySpec::new(DType::F32, vec![UNKNOWN, 3]);
        spec.column_names = vec!["PT".into(), "Eta".into(), "Phi".into()];
        Header {
            spec,
            record_len: 3,
            source: SourceFormat::Npy,
            source_path: Some("/events/jets".into()),
            bounds: vec![
                ResolvedBound {
                    spec: BoundSpec::Rel(1e-3),
                    bound: Bound::Abs(0.25),
                },
                ResolvedBound {
                    spec: BoundSpec::Bits(10),
                    bound: Bound::PwRel(1.0 / 2048.0),
                },
                ResolvedBound {
                    spec: BoundSpec::PwRel(1e-3),
                    bound: Bound::PwRel(1e-3),
                },
            ],
            stats: vec![
                ColumnStats {
                    min: -1.0,
                    max: 2.0,
                    finite: 10,
                    nonfinite: 1
                };
                3
            ],
            norms: vec![
                Normalization {
                    offset: 0.5,
                    scale: 1.5
                };
                3
            ],
            stats_source: StatsSource::FirstRecords(10),
            model: vec![],
            writer: "baler test".into(),
            version: FORMAT_VERSION,
        }
    }

    fn sample_file() -> Vec<u8> {
        let mut w = ContainerWriter::new(Vec::new(), &sample_header()).unwrap();
        w.write_chunk(2, PayloadKind::Raw, &[1u8; 24]).unwrap();
        w.write_chunk(1, PayloadKind::Coded, &[7u8; 5]).unwrap();
        w.finish().unwrap()
    }

    fn read_all(bytes: &[u8]) -> Result<(u64, u64)> {
        let mut r = ContainerReader::new(bytes)?;
        loop {
            if let Frame::End { chunks, records } = r.next_frame()? {
                r.read_footer()?;
                return Ok((chunks, records));
            }
        }
    }

    #[test]
    fn header_round_trips() {
        let h = sample_header();
        let mut buf = Vec::new();
        h.write_to(&mut buf);
        assert_eq!(Header::read_from(&mut &buf[..]).unwrap(), h);
    }

    #[test]
    fn file_round_trips_with_index() {
        let f = sample_file();
        assert_eq!(read_all(&f).unwrap(), (2, 3));
        let t = read_trailer(&mut io::Cursor::new(&f)).unwrap();
        assert_eq!((t.chunks, t.records), (2, 3));
        assert_eq!(t.index[1].first_record, 2);
        assert_eq!(f[t.index[1].offset as usize], TAG_CHUNK);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let f = sample_file();
        for cut in 0..f.len() {
            let r = read_all(&f[..cut]);
            assert!(r.is_err(), "cut at {cut} of {}", f.len());
            if cut >= 8 {
                let msg = r.unwrap_err().to_string();
                assert!(
                    msg.contains("truncated") || msg.contains("footer"),
                    "cut {cut}: {msg}"
                );
            }
        }
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let f = sample_file();
        for i in 0..f.len() {
            for bit in [0, 3, 7] {
                let mut g = f.clone();
                g[i] ^= 1 << bit;
                assert!(
                    read_all(&g).is_err(),
                    "flip at byte {i} bit {bit} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn compact_sections_round_trip_and_runs_merge_alike_columns() {
        // Ranges that f32 cannot hold exactly are stored as f64.
        let mut h = sample_header();
        h.stats[1].min = 0.1;
        h.norms[1] = Normalization::from_stats(&h.stats[1]);
        let mut buf = Vec::new();
        h.write_to(&mut buf);
        assert_eq!(Header::read_from(&mut &buf[..]).unwrap(), h);
        // 100 columns under one bound: one run, and a header of a few bytes per column.
        let mut wide = sample_header();
        wide.spec = ArraySpec::new(DType::F32, vec![UNKNOWN, 100]);
        wide.record_len = 100;
        wide.bounds = vec![wide.bounds[1]; 100];
        wide.stats = vec![wide.stats[0]; 100];
        wide.norms = vec![wide.norms[0]; 100];
        let mut buf = Vec::new();
        wide.write_to(&mut buf);
        assert!(buf.len() < 100 * 12, "{} bytes", buf.len());
        assert_eq!(Header::read_from(&mut &buf[..]).unwrap(), wide);
    }

    #[test]
    fn forged_compact_sections_are_errors() {
        let array = |body: &mut Vec<u8>| {
            let mut sec = vec![DType::F32.code(), Layout::Table.code(), 2];
            sec.extend_from_slice(&10u64.to_le_bytes());
            sec.extend_from_slice(&2u64.to_le_bytes());
            sec.extend_from_slice(&2u64.to_le_bytes());
            sec.push(0);
            put_sec(body, SEC_ARRAY, &mut sec);
        };
        let runs = |body: &mut Vec<u8>, count: u64| {
            let mut sec = Vec::new();
            put_uvarint(&mut sec, 1);
            put_uvarint(&mut sec, count);
            sec.push(1);
            sec.extend_from_slice(&0.5f64.to_le_bytes());
            sec.extend_from_slice(&0.5f64.to_le_bytes());
            put_sec(body, SEC_RUNS, &mut sec);
        };
        let stats = |body: &mut Vec<u8>, width: u8, min: f32, max: f32| {
            let mut sec = Vec::new();
            put_uvarint(&mut sec, 2);
            sec.push(width);
            for _ in 0..2 {
                sec.extend_from_slice(&min.to_le_bytes());
                sec.extend_from_slice(&max.to_le_bytes());
                put_uvarint(&mut sec, 10);
                put_uvarint(&mut sec, 0);
            }
            sec.push(0);
            put_sec(body, SEC_STATS, &mut sec);
        };
        let parse = |runs_count: u64, width: u8, min: f32, max: f32| {
            let mut body = Vec::new();
            array(&mut body);
            runs(&mut body, runs_count);
            stats(&mut body, width, min, max);
            parse_body(&body, 3)
        };
        let ok = parse(2, 4, -1.0, 1.0).unwrap();
        assert_eq!(ok.bounds.len(), 2);
        assert_eq!(ok.norms[0], Normalization::from_stats(&ok.stats[0]));
        // Runs that cover more or fewer columns than there are, even absurdly many.
        for n in [1, 3, u32::MAX as u64] {
            assert!(parse(n, 4, -1.0, 1.0).is_err(), "{n}");
        }
        assert!(parse(1 << 40, 4, -1.0, 1.0).is_err());
        // Ranges of another width, inverted or NaN.
        assert!(parse(2, 5, -1.0, 1.0).is_err());
        assert!(parse(2, 4, 1.0, -1.0).is_err());
        assert!(parse(2, 4, f32::NAN, 1.0).is_err());
    }

    #[test]
    fn wrong_version_and_magic() {
        let mut f = sample_file();
        f[8] = FORMAT_VERSION as u8 + 1;
        assert!(matches!(
            read_all(&f),
            Err(Error::UnsupportedVersion { found, .. }) if found == FORMAT_VERSION + 1
        ));
        f[0] = b'X';
        assert!(matches!(read_all(&f), Err(Error::BadMagic)));
        assert!(matches!(read_all(b""), Err(Error::BadMagic)));
    }
}
