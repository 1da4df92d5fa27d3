//! One HDF5 chunk ⇄ one baler container, in safe code: the filter function only moves bytes
//! between HDF5's buffers and these.

use baler::{ArrayData, ArraySpec, CompressOptions, DType};

use crate::params::Params;

/// Compresses one chunk's bytes (little-endian `f32` or `f64`, C order, the chunk's full shape)
/// into a self-contained baler container.
pub fn compress_chunk(p: &Params, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let want = p.chunk_bytes().ok_or("the chunk is too large")?;
    if bytes.len() != want {
        return Err(format!(
            "the chunk holds {} bytes; its shape and type need {want}",
            bytes.len()
        ));
    }
    let mut spec = ArraySpec::new(p.dtype, p.dims.clone());
    spec.layout = p.layout;
    let mut options = CompressOptions::new(p.bounds.clone());
    // Chunk by chunk, HDF5 calls the filter on one thread; baler's workers still share a chunk
    // larger than its own chunk size.
    if let Some(m) = &p.model {
        options = options.model(m.clone());
    }
    let out = match p.dtype {
        DType::F32 => {
            let v: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect();
            baler::compress_slice(&v, &spec, &options)
        }
        DType::F64 => {
            let v: Vec<f64> = bytes
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect();
            baler::compress_slice(&v, &spec, &options)
        }
    };
    out.map_err(|e| e.to_string())
}

/// Decodes one chunk's container into `out` (cleared first): the chunk's values as
/// little-endian bytes. The container's checksums catch damage; its type and value count must be
/// the chunk's.
pub fn decompress_chunk(p: &Params, packed: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let (_, data) = baler::decompress_to_vec(packed).map_err(|e| e.to_string())?;
    let want = p.chunk_len().ok_or("the chunk is too large")?;
    out.clear();
    match (p.dtype, data) {
        (DType::F32, ArrayData::F32(v)) if v.len() == want => {
            out.reserve(want * 4);
            v.iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        }
        (DType::F64, ArrayData::F64(v)) if v.len() == want => {
            out.reserve(want * 8);
            v.iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        }
        (_, data) => {
            return Err(format!(
                "the chunk decodes to {} {} values; the dataset's chunk holds {want} {}",
                data.len(),
                data.dtype(),
                p.dtype
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{parse_stored, stored};

    fn params(user: &[u32], elem: usize, dims: &[u64]) -> Params {
        parse_stored(&stored(user, elem, dims).unwrap()).unwrap()
    }

    #[test]
    fn a_table_chunk_round_trips_within_its_column_bounds() {
        // abs:1e-3 by default, column 1 lossless, column 2 bits:8.
        let p = params(&[1, 1, 3, 2, 1, 3, 0, 0, 2, 5, 8, 0], 4, &[500, 3]);
        let v: Vec<f32> = (0..1500).map(|i| (i as f32 * 0.37).sin() * 10.0).collect();
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        let packed = compress_chunk(&p, &bytes).unwrap();
        let mut out = Vec::new();
        decompress_chunk(&p, &packed, &mut out).unwrap();
        assert_eq!(out.len(), bytes.len());
        for (i, c) in out.chunks_exact(4).enumerate() {
            let (x, y) = (v[i], f32::from_le_bytes(c.try_into().unwrap()));
            match i % 3 {
                0 => assert!((f64::from(x) - f64::from(y)).abs() <= 1e-3),
                1 => assert_eq!(x.to_bits(), y.to_bits()),
                _ => assert!((f64::from(x) - f64::from(y)).abs() <= f64::from(x).abs() / 512.0),
            }
        }
    }

    #[test]
    fn damage_and_mismatch_are_errors() {
        let p = params(&[1, 1, 3], 8, &[4, 8, 8]);
        let v: Vec<f64> = (0..256).map(|i| f64::from(i).sqrt()).collect();
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert!(compress_chunk(&p, &bytes[..bytes.len() - 8]).is_err());
        let packed = compress_chunk(&p, &bytes).unwrap();
        let mut out = Vec::new();
        for i in 0..packed.len() {
            let mut bad = packed.clone();
            bad[i] ^= 0x20;
            // Every flipped bit is caught, by a checksum or a framing check, never decoded
            // into other values.
            assert!(decompress_chunk(&p, &bad, &mut out).is_err(), "byte {i}");
        }
        let other = params(&[1, 1, 3], 8, &[4, 8, 4]);
        assert!(decompress_chunk(&other, &packed, &mut out).is_err());
        let other = params(&[1, 1, 3], 4, &[4, 8, 8]);
        assert!(decompress_chunk(&other, &packed, &mut out).is_err());
    }
}
