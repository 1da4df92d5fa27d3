//! Plans: what one input's compression decides once (the bounds resolved against the whole
//! input's ranges, the statistics, the learned predictor, the chunking), written to a file so
//! that many processes — the shards of a cluster job ([`crate::shard`]) — compress with exactly
//! those decisions, and their shards join into the very file one process writes.
//!
//! A plan holds the container header every output of the plan starts with, byte for byte as
//! it was written (so a later baler, or another machine, cannot change it), the records per
//! chunk, and a fingerprint of the input it was made from, so that a shard run on the wrong
//! file is refused. The file format is in ARCHITECTURE.md ("Plans and shards").

use std::io::{Read, Write};
use std::path::Path;

use crate::array::ArraySpec;
use crate::bytes::{ByteReader, put_uvarint};
use crate::compress::{CompressOptions, whole_header};
use crate::container::{Header, MAX_CHUNK_BYTES};
use crate::error::{Error, Result};
use crate::normalize::ColumnStats;
use crate::shard::ShardRange;

/// The first bytes of a plan file.
pub const PLAN_MAGIC: [u8; 8] = *b"\x89BALPLN\n";
/// The plan format this build writes and reads.
pub const PLAN_VERSION: u16 = 1;
/// Largest plan accepted (a header with a model and a wide table's names fits many times).
const MAX_PLAN: u32 = 256 << 20;

/// What identifies the input a plan was made from: its size, and a CRC-32 of sampled windows
/// of its values (a guard against running a shard on the wrong file, not against forgery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// The input's name when the plan was made (for messages).
    pub name: String,
    /// Bytes of values.
    pub bytes: u64,
    /// CRC-32 of the sampled windows ([`crate::io::Input::fingerprint`]).
    pub digest: u32,
}

/// The decisions of one input's compression, shared by every shard.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The header of every output of the plan.
    pub header: Header,
    header_bytes: Vec<u8>,
    /// Records per chunk (every chunk holds this many but the last).
    pub chunk_records: u64,
    /// The input the plan was made from.
    pub input: Fingerprint,
}

impl Plan {
    /// Plans the compression of an input of `spec` under `options` (with its model, if any),
    /// given statistics of the whole input. The input's size must be known.
    pub fn new(
        spec: ArraySpec,
        options: &CompressOptions,
        stats: Vec<ColumnStats>,
        input: Fingerprint,
    ) -> Result<Plan> {
        spec.validate()?;
        if spec.len().is_none() {
            return Err(Error::InvalidInput(
                "a plan needs an input of known size (a file, not a stream)".into(),
            ));
        }
        let (header, header_bytes, chunk_records) = whole_header(&spec, options, stats)?;
        Ok(Plan {
            header,
            header_bytes,
            chunk_records: chunk_records as u64,
            input,
        })
    }

    /// The header's bytes, as every output of the plan starts with them.
    pub fn header_bytes(&self) -> &[u8] {
        &self.header_bytes
    }

    /// Records in the input.
    pub fn records(&self) -> u64 {
        self.header.records().unwrap_or(0)
    }

    /// Chunks in the whole container.
    pub fn chunks(&self) -> u64 {
        self.records().div_ceil(self.chunk_records.max(1))
    }

    /// The `index`-th of `count` shards: a run of whole chunks, as even as chunks allow
    /// (shard `i` takes chunks `⌊i·C/N⌋ .. ⌊(i+1)·C/N⌋`; with more shards than chunks, some
    /// are empty). The chunks are the plan's, whatever `count` is.
    pub fn shard(&self, index: u32, count: u32) -> Result<ShardRange> {
        if count == 0 || index >= count {
            return Err(Error::InvalidOption(format!(
                "shard {index} of {count}: shards are numbered 0 to N-1 (N at least 1)"
            )));
        }
        let chunks = self.chunks();
        let at = |i: u32| (u128::from(chunks) * u128::from(i) / u128::from(count)) as u64;
        let (first_chunk, end) = (at(index), at(index + 1));
        let records = self.records();
        let record_at = |c: u64| (c.saturating_mul(self.chunk_records)).min(records);
        Ok(ShardRange {
            index,
            count,
            first_chunk,
            chunks: end - first_chunk,
            first_record: record_at(first_chunk),
            records: record_at(end) - record_at(first_chunk),
        })
    }

    /// Serializes the plan.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&self.chunk_records.to_le_bytes());
        body.extend_from_slice(&self.input.bytes.to_le_bytes());
        body.extend_from_slice(&self.input.digest.to_le_bytes());
        put_uvarint(&mut body, self.input.name.len() as u64);
        body.extend_from_slice(self.input.name.as_bytes());
        body.extend_from_slice(&self.header_bytes);
        let mut out = PLAN_MAGIC.to_vec();
        let start = out.len();
        out.extend_from_slice(&PLAN_VERSION.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a plan, checking its checksum and its header.
    pub fn read_from<R: Read>(r: &mut R) -> Result<Plan> {
        let bad = |m: String| Error::InvalidInput(format!("not a valid plan: {m}"));
        let mut head = [0u8; 14];
        r.read_exact(&mut head)
            .map_err(|_| bad("it is too short".into()))?;
        if head[..8] != PLAN_MAGIC {
            return Err(Error::InvalidInput(
                "not a plan (it does not start with the plan magic); make one with `baler plan`"
                    .into(),
            ));
        }
        let version = u16::from_le_bytes([head[8], head[9]]);
        if version != PLAN_VERSION {
            return Err(Error::InvalidInput(format!(
                "plan format version {version} is not supported by this build (it reads \
                 version {PLAN_VERSION}); make the plan with this baler"
            )));
        }
        let len = u32::from_le_bytes(head[10..14].try_into().expect("4"));
        if len > MAX_PLAN {
            return Err(bad(format!("a length of {len} bytes is implausible")));
        }
        let mut body = Vec::new();
        r.take(u64::from(len) + 4).read_to_end(&mut body)?;
        if body.len() != len as usize + 4 {
            return Err(bad("it is truncated".into()));
        }
        let stored = u32::from_le_bytes(body[len as usize..].try_into().expect("4"));
        body.truncate(len as usize);
        let mut h = crc32fast::Hasher::new();
        h.update(&head[8..14]);
        h.update(&body);
        if h.finalize() != stored {
            return Err(bad("it fails its checksum (damaged)".into()));
        }
        let mut b = ByteReader::new(&body);
        let mut fields = || {
            let chunk_records = b.u64()?;
            let bytes = b.u64()?;
            let digest = u32::from_le_bytes(b.bytes(4)?.try_into().expect("4"));
            let n = b.uvarint_max(1 << 16, "the input's name")?;
            let name = String::from_utf8_lossy(b.bytes(n)?).into_owned();
            let rest = b.bytes(b.remaining())?;
            Ok::<_, crate::bytes::Malformed>((chunk_records, bytes, digest, name, rest))
        };
        let (chunk_records, bytes, digest, name, rest) = fields().map_err(|m| bad(m.0))?;
        let header_bytes = rest.to_vec();
        let (header, raw) = Header::read_raw(&mut header_bytes.as_slice())?;
        if raw.len() != header_bytes.len() {
            return Err(bad("bytes follow its header".into()));
        }
        // A forged plan must not ask for absurd chunks: they obey the container's limit.
        let record_bytes = header
            .record_len
            .saturating_mul(header.spec.dtype.size() as u64);
        let chunk_bytes = chunk_records.saturating_mul(record_bytes);
        let Some(records) = header.records() else {
            return Err(bad("its header is for a stream of unknown length".into()));
        };
        if chunk_records == 0 || record_bytes == 0 || chunk_bytes > MAX_CHUNK_BYTES {
            return Err(bad(format!(
                "chunks of {chunk_records} records of {record_bytes} bytes are not a chunking \
                 a container allows"
            )));
        }
        if records.checked_mul(record_bytes) != Some(bytes) {
            return Err(bad(format!(
                "its input holds {bytes} bytes, its header {records} records of {record_bytes}"
            )));
        }
        Ok(Plan {
            header,
            header_bytes,
            chunk_records,
            input: Fingerprint {
                name,
                bytes,
                digest,
            },
        })
    }

    /// Writes the plan to `w`.
    pub fn write_to<W: Write>(&self, w: &mut W) -> Result<()> {
        w.write_all(&self.to_bytes())?;
        Ok(())
    }

    /// Reads the plan file at `path`.
    pub fn load(path: &Path) -> Result<Plan> {
        let mut f = std::fs::File::open(path).map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!(
                    "cannot open the plan {}: {}",
                    path.display(),
                    crate::io::io_reason(&e)
                ),
            ))
        })?;
        Self::read_from(&mut std::io::BufReader::new(&mut f)).map_err(|e| match e {
            Error::InvalidInput(m) => Error::InvalidInput(format!("{}: {m}", path.display())),
            e => e,
        })
    }

    /// Checks that an input is the one the plan was made from: the same element type and
    /// shape, the same size, the same sampled contents.
    pub fn check_input(&self, spec: &ArraySpec, fingerprint: &Fingerprint) -> Result<()> {
        let planned = &self.header.spec;
        if spec.dtype != planned.dtype || spec.shape != planned.shape {
            return Err(Error::InvalidInput(format!(
                "{} is not the input this plan was made from: it holds {} {}, the plan is for \
                 {} {} ({}); make a plan for it with `baler plan`",
                fingerprint.name,
                spec.dtype,
                spec.shape_string(),
                planned.dtype,
                planned.shape_string(),
                self.input.name
            )));
        }
        if fingerprint.bytes != self.input.bytes || fingerprint.digest != self.input.digest {
            return Err(Error::InvalidInput(format!(
                "{} is not the input this plan was made from ({}): same shape, but its \
                 sampled contents differ (checksum {:#010x}, the plan has {:#010x}); make a \
                 plan for it with `baler plan`",
                fingerprint.name, self.input.name, fingerprint.digest, self.input.digest
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bound::{BoundSpec, Bounds};
    use crate::element::DType;
    use crate::normalize::StatsAccumulator;

    fn plan(records: u64, chunk_bytes: usize) -> Plan {
        let spec = ArraySpec::new(DType::F32, vec![records, 3]);
        let values: Vec<f32> = (0..records * 3).map(|i| (i as f32).sin()).collect();
        let mut acc = StatsAccumulator::new(3);
        acc.add(&values);
        let options =
            CompressOptions::new(Bounds::new(BoundSpec::Rel(1e-3))).chunk_bytes(chunk_bytes);
        let input = Fingerprint {
            name: "t.npy".into(),
            bytes: records * 12,
            digest: 0x1234_5678,
        };
        Plan::new(spec, &options, acc.finish(), input).unwrap()
    }

    #[test]
    fn a_plan_reads_back_as_written_and_refuses_damage() {
        let p = plan(10_000, 16 << 10);
        let bytes = p.to_bytes();
        let q = Plan::read_from(&mut bytes.as_slice()).unwrap();
        assert_eq!(q.header, p.header);
        assert_eq!(q.header_bytes(), p.header_bytes());
        assert_eq!(
            (q.chunk_records, q.chunks(), q.records()),
            (p.chunk_records, p.chunks(), 10_000)
        );
        assert_eq!(q.input, p.input);
        for at in [9, 15, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 4;
            assert!(
                Plan::read_from(&mut bad.as_slice()).is_err(),
                "flip at {at}"
            );
        }
        for cut in [0, 5, 14, bytes.len() - 1] {
            assert!(Plan::read_from(&mut &bytes[..cut]).is_err(), "cut at {cut}");
        }
        // Checksummed but absurd: chunks past the container's limit, a size that does not
        // match the header.
        let mut huge = p.clone();
        huge.chunk_records = 1 << 40;
        assert!(Plan::read_from(&mut huge.to_bytes().as_slice()).is_err());
        let mut size = p.clone();
        size.input.bytes += 4;
        assert!(Plan::read_from(&mut size.to_bytes().as_slice()).is_err());
    }

    #[test]
    fn shards_cover_every_chunk_once_and_evenly_for_any_count() {
        for records in [1u64, 1000, 1365, 4096, 10_000] {
            let p = plan(records, 4 << 10);
            let chunks = p.chunks();
            assert!(chunks >= 1);
            for n in 1..=(chunks as u32 + 5) {
                let (mut next, mut next_record) = (0, 0);
                let mut sizes = Vec::new();
                for i in 0..n {
                    let s = p.shard(i, n).unwrap();
                    assert_eq!((s.first_chunk, s.first_record), (next, next_record));
                    assert_eq!(s.first_record, s.first_chunk * p.chunk_records);
                    assert_eq!(s.records == 0, s.chunks == 0);
                    next += s.chunks;
                    next_record += s.records;
                    sizes.push(s.chunks);
                }
                assert_eq!(
                    (next, next_record),
                    (chunks, records),
                    "{records} records, {n} shards"
                );
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(hi - lo <= 1, "{sizes:?}");
            }
            assert!(p.shard(3, 3).is_err() && p.shard(0, 0).is_err());
        }
    }
}
