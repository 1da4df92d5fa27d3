//! Shards: one container compressed by many processes, and joined without recompressing.
//!
//! A [`Plan`](crate::plan::Plan) fixes the header and the chunking once; shard `i` of `N`
//! compresses a run of the plan's whole chunks ([`ShardRange`]) and writes them as they will
//! stand in the whole container — same bytes, same sequence numbers — between the shard magic
//! plus the plan's header and a shard end that says which range it holds. [`concat()`] checks that
//! the shards come from one plan and cover every chunk once, then copies their chunk frames
//! (checking every CRC on the way) behind the header and writes one end mark and index: the
//! result is byte for byte the file `baler compress --plan` writes in one process, for any `N`.
//! The format is in ARCHITECTURE.md ("Plans and shards").

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};

use crate::container::{CHUNK_HEADER_LEN, ContainerWriter, Header, TAG_CHUNK, read_exact_or};
use crate::error::{Error, Result};

/// The first bytes of a shard.
pub const SHARD_MAGIC: [u8; 8] = *b"\x89BALSHD\n";
const TAG_SHARD_END: u8 = b'S';
/// Length of a shard's end.
pub const SHARD_END_LEN: usize = 61;

/// Which part of a plan's container a shard holds: whole chunks, numbered as in the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardRange {
    /// The shard's number, from 0.
    pub index: u32,
    /// Shards in the job.
    pub count: u32,
    /// Sequence number of its first chunk in the whole container.
    pub first_chunk: u64,
    /// Chunks in it (0 where a job has more shards than chunks).
    pub chunks: u64,
    /// Its first record in the whole input.
    pub first_record: u64,
    /// Records in it.
    pub records: u64,
}

/// What a shard's end records: its range and the whole container's totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardEnd {
    /// The shard's range.
    pub range: ShardRange,
    /// Chunks in the whole container.
    pub total_chunks: u64,
    /// Records in the whole container.
    pub total_records: u64,
}

impl ShardEnd {
    /// The end's bytes: `'S'`, index u32, count u32, first chunk, chunks, first record,
    /// records, total chunks, total records (u64 each), CRC-32 of the bytes before it.
    pub(crate) fn to_bytes(self) -> [u8; SHARD_END_LEN] {
        let r = &self.range;
        let mut b = [0u8; SHARD_END_LEN];
        b[0] = TAG_SHARD_END;
        b[1..5].copy_from_slice(&r.index.to_le_bytes());
        b[5..9].copy_from_slice(&r.count.to_le_bytes());
        let fields = [
            r.first_chunk,
            r.chunks,
            r.first_record,
            r.records,
            self.total_chunks,
            self.total_records,
        ];
        for (i, v) in fields.iter().enumerate() {
            b[9 + 8 * i..17 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        let crc = crc32fast::hash(&b[..SHARD_END_LEN - 4]);
        b[SHARD_END_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn parse(b: &[u8; SHARD_END_LEN]) -> Result<ShardEnd> {
        let stored = u32::from_le_bytes(b[SHARD_END_LEN - 4..].try_into().expect("4"));
        if b[0] != TAG_SHARD_END || crc32fast::hash(&b[..SHARD_END_LEN - 4]) != stored {
            return Err(Error::InvalidInput(
                "the shard has no valid end: it is incomplete or damaged (a shard that was \
                 killed while written never takes its final name; was this one cut short?)"
                    .into(),
            ));
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4"));
        let u64_at = |k: usize| u64::from_le_bytes(b[9 + 8 * k..17 + 8 * k].try_into().expect("8"));
        let e = ShardEnd {
            range: ShardRange {
                index: u32_at(1),
                count: u32_at(5),
                first_chunk: u64_at(0),
                chunks: u64_at(1),
                first_record: u64_at(2),
                records: u64_at(3),
            },
            total_chunks: u64_at(4),
            total_records: u64_at(5),
        };
        let r = &e.range;
        if r.index >= r.count
            || r.first_chunk
                .checked_add(r.chunks)
                .is_none_or(|c| c > e.total_chunks)
            || r.first_record
                .checked_add(r.records)
                .is_none_or(|c| c > e.total_records)
            || (r.chunks == 0) != (r.records == 0)
        {
            return Err(Error::InvalidInput(format!(
                "the shard's end is inconsistent: shard {} of {}, chunks {}+{} of {}, records \
                 {}+{} of {}",
                r.index,
                r.count,
                r.first_chunk,
                r.chunks,
                e.total_chunks,
                r.first_record,
                r.records,
                e.total_records
            )));
        }
        Ok(e)
    }
}

/// A shard opened for joining: its header and its end checked, its chunks not yet read.
#[derive(Debug)]
pub struct ShardFile {
    /// Its name, for messages.
    pub name: String,
    /// Its header (the plan's).
    pub header: Header,
    /// Its end.
    pub end: ShardEnd,
    header_bytes: Vec<u8>,
    file: File,
    size: u64,
}

impl ShardFile {
    /// Opens a shard: its magic, its header (with its checksum), its end (from the end of the
    /// file, with its checksum).
    pub fn open(name: &str, mut file: File) -> Result<ShardFile> {
        let named = |e: Error| Error::InFile {
            file: name.to_string(),
            source: Box::new(e),
        };
        let mut magic = [0u8; 8];
        read_exact_or(&mut file, &mut magic, || {
            Error::InvalidInput("not a shard: it is too short".into())
        })
        .map_err(named)?;
        if magic != SHARD_MAGIC {
            let what = if magic == crate::container::MAGIC {
                "a whole container, not a shard: nothing to join"
            } else {
                "not a shard (written by `baler compress --plan PLAN --shard I/N`)"
            };
            return Err(named(Error::InvalidInput(format!("it is {what}"))));
        }
        let mut r = BufReader::new(&mut file);
        let (header, header_bytes) = Header::read_raw(&mut r).map_err(named)?;
        drop(r);
        let size = file.seek(SeekFrom::End(0))?;
        let body = 8 + header_bytes.len() as u64;
        if size < body + SHARD_END_LEN as u64 {
            return Err(named(Error::InvalidInput(
                "the shard ends before its end: it is incomplete".into(),
            )));
        }
        file.seek(SeekFrom::Start(size - SHARD_END_LEN as u64))?;
        let mut b = [0u8; SHARD_END_LEN];
        file.read_exact(&mut b)?;
        let end = ShardEnd::parse(&b).map_err(named)?;
        if header.records() != Some(end.total_records) {
            return Err(named(Error::InvalidInput(format!(
                "its end counts {} records in the whole input, its header {:?}",
                end.total_records,
                header.records()
            ))));
        }
        Ok(ShardFile {
            name: name.to_string(),
            header,
            end,
            header_bytes,
            file,
            size,
        })
    }

    /// Bytes of the file.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// What [`concat()`] wrote.
#[derive(Debug)]
pub struct Joined<W> {
    /// The inner writer.
    pub writer: W,
    /// The joined container's header.
    pub header: Header,
    /// Chunks in it.
    pub chunks: u64,
    /// Records in it.
    pub records: u64,
    /// Its size in bytes.
    pub bytes_out: u64,
}

/// Chunks `a..b` (half-open, as record ranges are), for messages.
fn chunk_span(a: u64, b: u64) -> String {
    if b == a + 1 {
        format!("chunk {a}")
    } else {
        format!("chunks {a}..{b}")
    }
}

/// Checks that `shards` (in any order) come from one plan and cover its chunks exactly once;
/// returns them in chunk order, empty ones dropped.
pub fn check_cover(mut shards: Vec<ShardFile>) -> Result<Vec<ShardFile>> {
    let Some(first) = shards.first() else {
        return Err(Error::InvalidOption("no shards to join".into()));
    };
    for s in &shards[1..] {
        if s.header_bytes != first.header_bytes {
            return Err(Error::InvalidInput(format!(
                "{} and {} come from different plans (their headers differ): join the shards \
                 of one plan only",
                first.name, s.name
            )));
        }
    }
    let (total_chunks, total_records) = (first.end.total_chunks, first.end.total_records);
    let counts: Vec<u32> = shards.iter().map(|s| s.end.range.count).collect();
    let count = counts.iter().all(|&c| c == counts[0]).then_some(counts[0]);
    shards.sort_by_key(|s| (s.end.range.first_chunk, s.end.range.chunks));
    let mut next = 0u64;
    let mut next_record = 0u64;
    let mut last: Option<&str> = None;
    // Which shards of `count` hold chunks `a..b` (for a message about missing ones).
    let which = |a: u64, b: u64| -> String {
        let Some(n) = count else {
            return String::new();
        };
        let holds = |i: u32| {
            let at = |i: u32| (u128::from(total_chunks) * u128::from(i) / u128::from(n)) as u64;
            at(i) < b && at(i + 1) > a
        };
        let missing: Vec<String> = (0..n)
            .filter(|&i| holds(i))
            .map(|i| i.to_string())
            .collect();
        match missing.len() {
            0 => String::new(),
            1 => format!(" (shard {} of {n})", missing[0]),
            _ => format!(" (shards {} of {n})", missing.join(", ")),
        }
    };
    for s in &shards {
        let r = &s.end.range;
        if r.chunks == 0 {
            continue;
        }
        if r.first_chunk > next {
            return Err(Error::InvalidInput(format!(
                "records {next_record}..{} ({}) are missing{}: no shard given holds them",
                r.first_record,
                chunk_span(next, r.first_chunk),
                which(next, r.first_chunk)
            )));
        }
        if r.first_chunk < next {
            return Err(Error::InvalidInput(format!(
                "{} and {} both hold records {}..{} ({}): give each shard once",
                last.unwrap_or("?"),
                s.name,
                r.first_record,
                next_record.min(r.first_record + r.records),
                chunk_span(r.first_chunk, next.min(r.first_chunk + r.chunks))
            )));
        }
        if r.first_record != next_record {
            return Err(Error::InvalidInput(format!(
                "{} starts at record {}, but the shards before it end at record {next_record}",
                s.name, r.first_record
            )));
        }
        next += r.chunks;
        next_record += r.records;
        last = Some(&s.name);
    }
    if next < total_chunks || next_record < total_records {
        return Err(Error::InvalidInput(format!(
            "records {next_record}..{total_records} ({}) are missing{}: no shard given holds them",
            chunk_span(next, total_chunks.max(next + 1)),
            which(next, total_chunks)
        )));
    }
    shards.retain(|s| s.end.range.chunks > 0);
    Ok(shards)
}

/// Joins shards of one plan into one container written to `out`, copying their chunks as
/// they are (every CRC checked on the way, no recompression): byte for byte what `baler
/// compress --plan` writes in one process. Refuses shards of different plans, and any gap or
/// overlap in their ranges, before writing anything.
pub fn concat<W: Write>(shards: Vec<ShardFile>, out: W) -> Result<Joined<W>> {
    let header_bytes = match shards.first() {
        Some(s) => s.header_bytes.clone(),
        None => return Err(Error::InvalidOption("no shards to join".into())),
    };
    let header = shards[0].header.clone();
    let shards = check_cover(shards)?;
    let mut cw = ContainerWriter::with_header_bytes(out, &[], &header_bytes, 0, 0)?;
    let mut buf = Vec::new();
    for s in shards {
        let name = s.name.clone();
        copy_shard(s, &mut cw, &mut buf).map_err(|e| Error::InFile {
            file: name,
            source: Box::new(e),
        })?;
    }
    let (chunks, records) = (cw.chunks_written(), cw.records_written());
    let bytes_out = cw.finished_len();
    let writer = cw.finish()?;
    Ok(Joined {
        writer,
        header,
        chunks,
        records,
        bytes_out,
    })
}

/// Copies the chunks of one shard, checking that they are the ones its end promises.
fn copy_shard<W: Write>(
    mut s: ShardFile,
    cw: &mut ContainerWriter<W>,
    buf: &mut Vec<u8>,
) -> Result<()> {
    let r = s.end.range;
    s.file
        .seek(SeekFrom::Start(8 + s.header_bytes.len() as u64))?;
    let limit = s.size - 8 - s.header_bytes.len() as u64;
    let mut rd = BufReader::with_capacity(1 << 20, (&mut s.file).take(limit));
    let mut records = 0u64;
    for n in r.first_chunk..r.first_chunk + r.chunks {
        let mut h = [0u8; CHUNK_HEADER_LEN];
        read_exact_or(&mut rd, &mut h, || {
            Error::InvalidInput(format!(
                "the shard ends inside chunk {n}: it is incomplete or damaged"
            ))
        })?;
        if h[0] != TAG_CHUNK {
            return Err(Error::chunk(
                n,
                format!(
                    "expected chunk {n} of the shard's {}..{}, found byte {:#04x}",
                    r.first_chunk,
                    r.first_chunk + r.chunks - 1,
                    h[0]
                ),
            ));
        }
        // (copy_chunk checks the header's CRC and number before it copies anything.)
        cw.copy_chunk(&h, &mut rd, buf)?;
        records += u64::from(u32::from_le_bytes(h[9..13].try_into().expect("4")));
    }
    let mut end = [0u8; SHARD_END_LEN];
    read_exact_or(&mut rd, &mut end, || {
        Error::InvalidInput("the shard ends before its end mark".into())
    })?;
    if ShardEnd::parse(&end)? != s.end || records != r.records {
        return Err(Error::InvalidInput(format!(
            "its chunks hold {records} records, its end says {} (or its end is not at the end \
             of its chunks): damaged or forged",
            r.records
        )));
    }
    let mut extra = [0u8; 1];
    if rd.read(&mut extra)? != 0 {
        return Err(Error::InvalidInput(
            "bytes follow the shard's end: damaged".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end() -> ShardEnd {
        ShardEnd {
            range: ShardRange {
                index: 2,
                count: 5,
                first_chunk: 7,
                chunks: 3,
                first_record: 7000,
                records: 2500,
            },
            total_chunks: 12,
            total_records: 11_000,
        }
    }

    #[test]
    fn a_shard_end_reads_back_and_refuses_damage_and_nonsense() {
        let e = end();
        let b = e.to_bytes();
        assert_eq!(ShardEnd::parse(&b).unwrap(), e);
        for at in 0..SHARD_END_LEN {
            let mut bad = b;
            bad[at] ^= 1;
            assert!(ShardEnd::parse(&bad).is_err(), "flip at {at}");
        }
        // Checksummed, but impossible: past the totals, a shard number past the count, chunks
        // without records.
        let mut past = e;
        past.range.chunks = 6;
        let mut number = e;
        number.range.index = 5;
        let mut empty = e;
        empty.range.records = 0;
        for bad in [past, number, empty] {
            assert!(ShardEnd::parse(&bad.to_bytes()).is_err(), "{bad:?}");
        }
    }
}
