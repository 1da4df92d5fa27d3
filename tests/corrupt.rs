//! Damaged containers: every truncation and every sampled bit flip is an error that names what
//! is wrong, never a panic and never silently wrong values.

mod common;

use baler::{ArraySpec, BoundSpec, Bounds, CompressOptions, DType, Error, decompress_to_vec};
use common::Lcg;

fn container() -> Vec<u8> {
    let mut rng = Lcg(11);
    let data: Vec<f32> = (0..6000 * 5)
        .map(|i| ((i / 5) as f32 * 0.01).sin() * 10.0 + rng.normal() as f32)
        .collect();
    let spec = ArraySpec::new(DType::F32, vec![6000, 5]);
    let opts = CompressOptions::new(Bounds::new(BoundSpec::Rel(1e-3))).chunk_bytes(16 << 10);
    baler::compress_slice(&data, &spec, &opts).unwrap()
}

#[test]
fn every_truncation_is_detected() {
    let c = container();
    for cut in 0..c.len() {
        match decompress_to_vec(&c[..cut]) {
            Ok(_) => panic!("a container cut at {cut} of {} bytes decoded", c.len()),
            Err(Error::Truncated { .. } | Error::BadMagic | Error::CorruptTrailer(_)) => {}
            Err(e) => panic!("cut at {cut}: unexpected error {e}"),
        }
    }
}

#[test]
fn bit_flips_are_detected_and_name_the_chunk() {
    let c = container();
    let index = baler::container::read_trailer(&mut std::io::Cursor::new(&c))
        .unwrap()
        .index;
    let mut rng = Lcg(5);
    let mut positions: Vec<usize> = (0..300.min(c.len())).collect();
    positions.extend((0..3000).map(|_| (rng.next_u64() as usize) % c.len()));
    positions.extend(c.len() - 200..c.len());
    for pos in positions {
        let bit = (rng.next_u64() % 8) as u8;
        let mut g = c.clone();
        g[pos] ^= 1 << bit;
        match decompress_to_vec(&g) {
            Ok(_) => panic!("a flip of bit {bit} at byte {pos} went unnoticed"),
            Err(Error::ChunkChecksum { chunk, .. } | Error::CorruptChunk { chunk, .. }) => {
                // The named chunk is the one holding the byte (or the next one, for a flip
                // in a chunk's framing).
                let holder = index
                    .iter()
                    .rposition(|e| e.offset as usize <= pos)
                    .unwrap_or(0) as u64;
                assert!(
                    chunk == holder || chunk == holder + 1,
                    "flip at {pos} in chunk {holder} reported as chunk {chunk}"
                );
            }
            Err(Error::CorruptHeader(_) | Error::BadMagic | Error::UnsupportedVersion { .. }) => {
                assert!(
                    pos < index[0].offset as usize,
                    "header error for a flip at {pos}"
                );
            }
            Err(Error::CorruptTrailer(_) | Error::Truncated { .. }) => {}
            Err(e) => panic!("flip at {pos}: unexpected error {e}"),
        }
    }
}

#[test]
fn a_newer_format_version_is_refused() {
    let mut c = container();
    let newer = baler::container::FORMAT_VERSION + 1;
    c[8..10].copy_from_slice(&newer.to_le_bytes());
    let e = decompress_to_vec(&c).unwrap_err();
    assert!(
        matches!(
            e,
            Error::UnsupportedVersion { found, supported }
                if found == newer && supported == newer - 1
        ),
        "{e}"
    );
    assert!(e.to_string().contains("upgrade"));
}

#[test]
fn garbage_and_empty_inputs() {
    assert!(matches!(decompress_to_vec(b""), Err(Error::BadMagic)));
    assert!(matches!(
        decompress_to_vec(b"\x93NUMPY\x01\x00"),
        Err(Error::BadMagic)
    ));
    let mut rng = Lcg(99);
    for len in [8usize, 9, 16, 100, 5000] {
        let mut g: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        g[..8].copy_from_slice(&baler::container::MAGIC);
        assert!(decompress_to_vec(&g).is_err());
    }
}

/// Rewrites a chunk's payload CRC and header CRC after its payload was altered, as a forger
/// (or a bug) would: the decoders behind the checksums must still never panic.
fn refresh_crcs(c: &mut [u8], offset: usize) {
    let len = u32::from_le_bytes(c[offset + 15..offset + 19].try_into().unwrap()) as usize;
    let payload = offset + 27..offset + 27 + len;
    let pcrc = crc32fast::hash(&c[payload]);
    c[offset + 19..offset + 23].copy_from_slice(&pcrc.to_le_bytes());
    let hcrc = crc32fast::hash(&c[offset..offset + 23]);
    c[offset + 23..offset + 27].copy_from_slice(&hcrc.to_le_bytes());
}

#[test]
fn forged_payloads_never_panic_the_decoders() {
    let mut rng = Lcg(77);
    let mut containers = vec![container()];
    // Also a lossless table, a field, f64 data and long segmented columns.
    let data: Vec<f64> = (0..200_000)
        .map(|i| (i as f64 * 1e-3).sin() * 50.0 + rng.normal())
        .collect();
    let mut field = ArraySpec::new(DType::F64, vec![200_000]);
    field.layout = baler::Layout::Field;
    containers.push(
        baler::compress_slice(
            &data,
            &field,
            &CompressOptions::new(Bounds::new(BoundSpec::Rel(1e-4))),
        )
        .unwrap(),
    );
    // A smooth 3-D field with a NaN: interpolation sections, codes coded by context.
    let (t, h, w) = (16usize, 64usize, 64usize);
    let mut smooth: Vec<f32> = (0..t * h * w)
        .map(|i| {
            let (z, y, x) = (i / (h * w), (i / w) % h, i % w);
            ((x as f32 * 0.1).sin() * (y as f32 * 0.07).cos() + z as f32 * 0.01) * 10.0
        })
        .collect();
    smooth[5000] = f32::NAN;
    let volume = ArraySpec::new(DType::F32, vec![t as u64, h as u64, w as u64]);
    let packed = baler::compress_slice(
        &smooth,
        &volume,
        &CompressOptions::new(Bounds::new(BoundSpec::Rel(1e-3))),
    )
    .unwrap();
    assert!(decompress_to_vec(&packed).is_ok());
    containers.push(packed);
    let table: Vec<f32> = (0..4000 * 3)
        .map(|i| [1.5f32, -0.0, f32::NAN][i % 3] * (i / 3) as f32)
        .collect();
    containers.push(
        baler::compress_slice(
            &table,
            &ArraySpec::new(DType::F32, vec![4000, 3]),
            &CompressOptions::new(Bounds::new(BoundSpec::Lossless)),
        )
        .unwrap(),
    );
    // Point-wise relative bounds: ordinal sections with their gap, a grid (whole numbers),
    // zeros and both signs; the smooth field at bits:10 (interpolation mapped to ordinals).
    let pw: Vec<f32> = (0..6000 * 3)
        .map(|i| match i % 3 {
            0 => ((i / 3) % 17) as f32,
            1 => (i as f32 * 0.37).sin() * 1e3,
            _ => {
                if i % 5 == 0 {
                    0.0
                } else {
                    (i as f32).sqrt()
                }
            }
        })
        .collect();
    containers.push(
        baler::compress_slice(
            &pw,
            &ArraySpec::new(DType::F32, vec![6000, 3]),
            &CompressOptions::new(Bounds::new(BoundSpec::Bits(10))),
        )
        .unwrap(),
    );
    containers.push(
        baler::compress_slice(
            &smooth,
            &volume,
            &CompressOptions::new(Bounds::new(BoundSpec::PwRel(1e-3))),
        )
        .unwrap(),
    );
    for c in containers {
        let index = baler::container::read_trailer(&mut std::io::Cursor::new(&c))
            .unwrap()
            .index;
        for e in &index {
            let off = e.offset as usize;
            let len = u32::from_le_bytes(c[off + 15..off + 19].try_into().unwrap()) as usize;
            for _ in 0..400 {
                let mut g = c.clone();
                // One to four random byte changes inside the payload.
                for _ in 0..1 + rng.next_u64() % 4 {
                    let p = off + 27 + (rng.next_u64() as usize) % len.max(1);
                    g[p] ^= (1 + rng.next_u64() % 255) as u8;
                }
                refresh_crcs(&mut g, off);
                // Errors and (forged) wrong values are both acceptable; a panic is not.
                let _ = decompress_to_vec(&g);
            }
        }
    }
}

mod forged {
    //! Containers whose checksums are valid but whose contents lie (what a bug or a forger
    //! produces): each must be an error, never a panic, an abort or a huge allocation.
    use baler::bound::{BoundSpec, ResolvedBound};
    use baler::chunk::PayloadKind;
    use baler::container::{ContainerWriter, Header, SourceFormat, StatsSource};
    use baler::normalize::{ColumnStats, Normalization};
    use baler::{ArraySpec, DType, Layout, decompress_to_vec};

    fn header(shape: Vec<u64>, record_len: u64) -> Header {
        let mut spec = ArraySpec::new(DType::F32, shape);
        spec.layout = Layout::Field;
        Header {
            spec,
            record_len,
            source: SourceFormat::Unknown,
            source_path: None,
            bounds: vec![ResolvedBound {
                spec: BoundSpec::Abs(0.5),
                bound: baler::Bound::Abs(0.5),
            }],
            stats: vec![ColumnStats {
                min: 0.0,
                max: 10.0,
                finite: 10,
                nonfinite: 0,
            }],
            norms: vec![Normalization {
                offset: 5.0,
                scale: 5.0,
            }],
            stats_source: StatsSource::Whole,
            model: vec![],
            writer: "forger".into(),
            version: baler::container::FORMAT_VERSION,
        }
    }

    fn one_chunk(h: &Header, records: u32, kind: PayloadKind, payload: &[u8]) -> Vec<u8> {
        let mut w = ContainerWriter::new(Vec::new(), h).unwrap();
        w.write_chunk(records, kind, payload).unwrap();
        w.finish().unwrap()
    }

    /// A quantized column section of a 10-value field: step 1.0, then `rest`.
    fn column(rest: &[u8]) -> Vec<u8> {
        let mut col = vec![0u8, 0u8];
        col.extend_from_slice(&1.0f64.to_le_bytes());
        col.extend_from_slice(rest);
        let mut payload = vec![col.len() as u8];
        payload.extend_from_slice(&col);
        payload
    }

    #[test]
    fn exception_gap_wrapping_to_an_earlier_position() {
        let mut rest = vec![2, 3]; // two exceptions, the first at 3
        rest.extend_from_slice(&[0xff; 9]);
        rest.push(0x01); // a gap of u64::MAX
        rest.extend_from_slice(&[0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // raw values; constant codes 0
        let c = one_chunk(&header(vec![10], 1), 10, PayloadKind::Coded, &column(&rest));
        assert!(decompress_to_vec(&c).is_err());
    }

    #[test]
    fn chunk_sizes_that_overflow() {
        let c = one_chunk(
            &header(vec![u64::MAX, 1 << 31], 1 << 31),
            1 << 31,
            PayloadKind::Raw,
            &[],
        );
        assert!(decompress_to_vec(&c).is_err());
    }

    #[test]
    fn a_shape_promising_exabytes() {
        let w = ContainerWriter::new(Vec::new(), &header(vec![1 << 60], 1)).unwrap();
        assert!(decompress_to_vec(&w.finish().unwrap()).is_err());
    }

    #[test]
    fn packed_codes_around_i64_max() {
        let mut rest = vec![0, 3]; // no exceptions, packed
        rest.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        rest.extend_from_slice(&[1, 2, 0xff, 0xff]);
        let c = one_chunk(&header(vec![10], 1), 10, PayloadKind::Coded, &column(&rest));
        assert!(decompress_to_vec(&c).is_err());
    }

    #[test]
    fn a_footer_length_near_u64_max() {
        let mut f = vec![0u8; 64];
        f.extend_from_slice(&(u64::MAX - 15).to_le_bytes());
        f.extend_from_slice(&[0u8; 4]);
        f.extend_from_slice(b"BALERIDX");
        assert!(baler::container::read_trailer(&mut std::io::Cursor::new(&f)).is_err());
        // Found by fuzzing: a file long enough for a version-3 end mark but not a version-4
        // one, whose footer claims a length near the file's (the room for it wrapped).
        for size in 41..46 {
            let mut f = vec![0u8; size - 20];
            f.extend_from_slice(&((size as u64 - 41) / 20 * 20 + 20).to_le_bytes());
            f.extend_from_slice(&[0u8; 4]);
            f.extend_from_slice(b"BALERIX4");
            let e = baler::container::read_trailer(&mut std::io::Cursor::new(&f)).unwrap_err();
            assert!(e.to_string().contains("implausible"), "{size}: {e}");
        }
        let mut f = vec![0u8; 21];
        f.extend_from_slice(&(u64::MAX - 15).to_le_bytes());
        f.extend_from_slice(&[0u8; 4]);
        f.extend_from_slice(b"BALERIX4");
        let e = baler::container::read_trailer(&mut std::io::Cursor::new(&f)).unwrap_err();
        assert!(e.to_string().contains("implausible"), "{e}");
    }
}

#[test]
fn random_access_through_the_footer_index() {
    let c = container();
    let mut cursor = std::io::Cursor::new(&c);
    let header = baler::container::Header::read_from(&mut cursor).unwrap();
    let trailer = baler::container::read_trailer(&mut cursor).unwrap();
    assert!(trailer.index.len() > 3);
    let mut d = baler::Decompressor::new(std::io::Cursor::new(c.clone())).unwrap();
    let mut sequential = Vec::new();
    while let Some(chunk) = d.next_chunk().unwrap() {
        sequential.push(chunk);
    }
    for k in [2usize, 0, trailer.index.len() - 1] {
        let frame =
            baler::container::read_chunk_at(&mut cursor, k as u64, &trailer.index[k]).unwrap();
        assert_eq!(
            baler::decompress_chunk(&header, frame).unwrap(),
            sequential[k],
            "chunk {k}"
        );
    }
    // A wrong index entry is caught.
    let mut wrong = trailer.index[1];
    wrong.offset += 1;
    assert!(baler::container::read_chunk_at(&mut cursor, 1, &wrong).is_err());
}

#[test]
fn decoding_into_a_buffer_equals_the_stream_and_catches_damage() {
    let c = container();
    let (_, all) = decompress_to_vec(&c).unwrap();
    let baler::ArrayData::F32(all) = all else {
        panic!("f32")
    };
    for threads in [1, 2, 5] {
        let mut out = vec![0f32; all.len()];
        let h = baler::decompress_into(&c, &mut out, threads).unwrap();
        assert_eq!(h.spec.shape, vec![6000, 5]);
        assert!(
            out.iter()
                .zip(&all)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{threads} threads"
        );
    }
    // The destination must hold exactly the values, of the container's type.
    let e = baler::decompress_into(&c, &mut vec![0f32; all.len() - 1], 2).unwrap_err();
    assert!(e.to_string().contains("destination"), "{e}");
    let e = baler::decompress_into(&c, &mut vec![0f64; all.len()], 2).unwrap_err();
    assert!(e.to_string().contains("destination"), "{e}");
    // A flipped payload bit fails that chunk's checksum; a cut container has no footer.
    let index = baler::container::read_trailer(&mut std::io::Cursor::new(&c))
        .unwrap()
        .index;
    let mut bad = c.clone();
    let at = (index[3].offset + index[4].offset) / 2;
    bad[at as usize] ^= 0x04;
    let mut out = vec![0f32; all.len()];
    let e = baler::decompress_into(&bad, &mut out, 2).unwrap_err();
    assert!(e.to_string().contains("chunk 3"), "{e}");
    assert!(baler::decompress_into(&c[..c.len() - 10], &mut out, 2).is_err());
}

/// Two containers of the same shape and bound from different data (each chunk's checksums
/// intact).
fn two_alike() -> (Vec<u8>, Vec<u8>) {
    let make = |seed: u64| {
        let mut rng = Lcg(seed);
        let data: Vec<f32> = (0..6000 * 5)
            .map(|i| ((i / 5) as f32 * 0.01).sin() * 10.0 + rng.normal() as f32)
            .collect();
        let spec = ArraySpec::new(DType::F32, vec![6000, 5]);
        let opts = CompressOptions::new(Bounds::new(BoundSpec::Abs(0.01))).chunk_bytes(16 << 10);
        baler::compress_slice(&data, &spec, &opts).unwrap()
    };
    (make(11), make(12))
}

/// A chunk of another file put in place of one of this file's, at the same position and with
/// every CRC intact, is caught by the content checksum of the end mark (it once decoded with
/// exit 0 and errors 1,063× the bound); so are chunks swapped within a file.
#[test]
fn chunks_from_another_file_are_detected() {
    let (a, b) = two_alike();
    let ta = baler::container::read_trailer(&mut std::io::Cursor::new(&a)).unwrap();
    let tb = baler::container::read_trailer(&mut std::io::Cursor::new(&b)).unwrap();
    assert!(ta.index.len() >= 3 && ta.index.len() == tb.index.len());
    let span = |t: &baler::container::Trailer, k: usize| {
        let end = t.index.get(k + 1).map_or(t.end_offset, |e| e.offset);
        t.index[k].offset as usize..end as usize
    };
    for k in [0, 1, ta.index.len() - 1] {
        let mut forged = a[..span(&ta, k).start].to_vec();
        forged.extend_from_slice(&b[span(&tb, k)]);
        forged.extend_from_slice(&a[span(&ta, k).end..]);
        match decompress_to_vec(&forged) {
            Err(Error::CorruptTrailer(m)) => {
                assert!(
                    m.contains("another file") || m.contains("footer"),
                    "chunk {k}: {m}"
                )
            }
            Err(e) => panic!("chunk {k} from another file: {e}"),
            Ok(_) => panic!(
                "chunk {k} from another file decoded (same bytes: {})",
                a[span(&ta, k)] == b[span(&tb, k)]
            ),
        }
    }
    // The trailer alone cannot tell, the chunks' headers can.
    let k = 1;
    let (sa, sb) = (span(&ta, k), span(&tb, k));
    if sa.len() == sb.len() {
        let mut forged = a.clone();
        forged[sa].copy_from_slice(&b[sb]);
        let mut cur = std::io::Cursor::new(&forged);
        let t = baler::container::read_trailer(&mut cur).unwrap();
        assert!(baler::container::verify_trailer(&mut cur, &t).is_err());
    }
}

/// Anything after a container is an error (another container appended, stray bytes), not
/// silently ignored.
#[test]
fn data_after_the_container_is_an_error() {
    let (a, b) = two_alike();
    let mut two = a.clone();
    two.extend_from_slice(&b);
    let e = decompress_to_vec(&two).unwrap_err().to_string();
    assert!(e.contains("another container"), "{e}");
    let mut stray = a.clone();
    stray.extend_from_slice(b"\n");
    let e = decompress_to_vec(&stray).unwrap_err().to_string();
    assert!(e.contains("not part of it"), "{e}");
    assert!(decompress_to_vec(&a).is_ok());
}

/// A footer index rewritten with a valid checksum of its own (entries pointing at the wrong
/// chunks or claiming other record counts) is refused by the streaming reader and by
/// `verify_trailer` (which `info` runs): it was once shown by `info --chunks` as if true.
#[test]
fn a_forged_footer_index_is_detected() {
    let (a, _) = two_alike();
    let t = baler::container::read_trailer(&mut std::io::Cursor::new(&a)).unwrap();
    let n = t.index.len();
    let footer = a.len() - 20 - 20 * n;
    for (entry, field, delta) in [(1usize, 0usize, 27u64), (2, 16, 1), (0, 8, 5)] {
        let mut forged = a.clone();
        let at = footer + 20 * entry + field;
        let width = if field == 16 { 4 } else { 8 };
        let mut v = [0u8; 8];
        v[..width].copy_from_slice(&forged[at..at + width]);
        let x = u64::from_le_bytes(v) + delta;
        forged[at..at + width].copy_from_slice(&x.to_le_bytes()[..width]);
        let crc = crc32fast::hash(&forged[footer..footer + 20 * n + 8]);
        forged[footer + 20 * n + 8..footer + 20 * n + 12].copy_from_slice(&crc.to_le_bytes());
        let mut cur = std::io::Cursor::new(&forged);
        let t = baler::container::read_trailer(&mut cur).expect("a checksummed footer parses");
        let e = baler::container::verify_trailer(&mut cur, &t).unwrap_err();
        assert!(e.to_string().contains("footer index"), "{e}");
        let e = decompress_to_vec(&forged).unwrap_err();
        assert!(e.to_string().contains("footer index"), "{e}");
    }
}
