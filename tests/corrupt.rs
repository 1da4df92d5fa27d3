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
    c[8] = 2;
    let e = decompress_to_vec(&c).unwrap_err();
    assert!(
        matches!(
            e,
            Error::UnsupportedVersion {
                found: 2,
                supported: 1
            }
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
    let data: Vec<f64> = (0..200_000).map(|i| (i as f64 * 1e-3).sin() * 50.0 + rng.normal()).collect();
    let mut field = ArraySpec::new(DType::F64, vec![200_000]);
    field.layout = baler::Layout::Field;
    containers.push(baler::compress_slice(&data, &field, &CompressOptions::new(Bounds::new(BoundSpec::Rel(1e-4)))).unwrap());
    let table: Vec<f32> = (0..4000 * 3).map(|i| [1.5f32, -0.0, f32::NAN][i % 3] * (i / 3) as f32).collect();
    containers.push(
        baler::compress_slice(&table, &ArraySpec::new(DType::F32, vec![4000, 3]), &CompressOptions::new(Bounds::new(BoundSpec::Lossless)))
            .unwrap(),
    );
    for c in containers {
        let index = baler::container::read_trailer(&mut std::io::Cursor::new(&c)).unwrap().index;
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
