//! The streaming API with awkward partners: readers that return a byte at a time or get
//! interrupted, readers and writers that fail midway, values split across writes, containers
//! back to back in one stream, and a compressor dropped without `finish`.

mod common;

use std::io::{self, Cursor, Read, Write};

use baler::{
    ArrayData, ArraySpec, BoundSpec, Bounds, CompressOptions, Compressor, DType, Decompressor,
    Error, UNKNOWN,
};
use common::{Lcg, assert_within};

fn data(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    let mut rng = Lcg(seed);
    (0..rows * cols)
        .map(|i| ((i / cols) as f64 * 0.01).sin() as f32 * 10.0 + rng.normal() as f32)
        .collect()
}

fn opts() -> CompressOptions {
    CompressOptions::new(Bounds::new(BoundSpec::Abs(0.01)))
        .chunk_bytes(16 << 10)
        .threads(2)
}

/// Returns at most `step` bytes per call and an `Interrupted` error every third call.
struct Awkward<R> {
    inner: R,
    step: usize,
    calls: usize,
}

impl<R: Read> Read for Awkward<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        if self.calls.is_multiple_of(3) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "try again"));
        }
        let n = buf.len().min(self.step);
        self.inner.read(&mut buf[..n])
    }
}

/// Fails after `left` bytes.
struct FailingReader<R> {
    inner: R,
    left: usize,
}

impl<R: Read> Read for FailingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::other("the disk went away"));
        }
        let n = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..n])?;
        self.left -= n;
        Ok(n)
    }
}

/// Accepts `left` bytes, then fails.
struct FailingWriter {
    left: usize,
}

impl Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device",
            ));
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn compress(values: &[f32], shape: Vec<u64>) -> Vec<u8> {
    let mut c = Compressor::new(Vec::new(), ArraySpec::new(DType::F32, shape), opts()).unwrap();
    c.write_values(values).unwrap();
    c.finish().unwrap()
}

fn decode_all<R: Read + Send + 'static>(d: &mut Decompressor<R>) -> Vec<f32> {
    let mut out = Vec::new();
    while let Some(chunk) = d.next_chunk().unwrap() {
        let ArrayData::F32(v) = chunk else {
            panic!("dtype")
        };
        out.extend_from_slice(&v);
    }
    out
}

#[test]
fn awkward_readers_on_both_sides() {
    let values = data(3000, 5, 1);
    let bytes: Vec<u8> = bytemuck::cast_slice(&values).to_vec();
    let spec = ArraySpec::new(DType::F32, vec![UNKNOWN, 5]);
    let mut c = Compressor::new(Vec::new(), spec, opts()).unwrap();
    let read = c
        .read_from(Awkward {
            inner: Cursor::new(bytes.clone()),
            step: 7,
            calls: 0,
        })
        .unwrap();
    assert_eq!(read as usize, bytes.len());
    let packed = c.finish().unwrap();
    let mut d = Decompressor::new(Awkward {
        inner: Cursor::new(packed),
        step: 5,
        calls: 0,
    })
    .unwrap();
    assert_within(
        &values,
        &decode_all(&mut d),
        5,
        &[common::Expected::Abs(0.01); 5],
    );
    // The Read adapter gives the same values as little-endian bytes.
    let mut d = Decompressor::new(Cursor::new(compress(&values, vec![3000, 5]))).unwrap();
    let mut raw = Vec::new();
    d.read_to_end(&mut raw).unwrap();
    let back: Vec<f32> = bytemuck::pod_collect_to_vec(&raw);
    assert_within(&values, &back, 5, &[common::Expected::Abs(0.01); 5]);
}

#[test]
fn values_split_anywhere_across_writes() {
    let values = data(2000, 3, 2);
    let bytes: Vec<u8> = bytemuck::cast_slice(&values).to_vec();
    let mut c = Compressor::new(
        Vec::new(),
        ArraySpec::new(DType::F32, vec![2000, 3]),
        opts(),
    )
    .unwrap();
    let mut rng = Lcg(3);
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let n = ((rng.next_u64() % 23) as usize).min(rest.len());
        c.write_all(&rest[..n]).unwrap();
        rest = &rest[n..];
    }
    let packed = c.finish().unwrap();
    let (_, back) = baler::decompress_to_vec(&packed).unwrap();
    let ArrayData::F32(back) = back else {
        panic!("dtype")
    };
    assert_within(&values, &back, 3, &[common::Expected::Abs(0.01); 3]);
}

#[test]
fn containers_back_to_back_in_one_stream() {
    let (a, b) = (data(1000, 4, 4), data(1700, 2, 5));
    let mut stream = compress(&a, vec![1000, 4]);
    stream.extend(compress(&b, vec![1700, 2]));
    stream.extend_from_slice(b"trailing bytes");
    let mut first = Decompressor::new(Cursor::new(stream)).unwrap();
    assert_within(
        &a,
        &decode_all(&mut first),
        4,
        &[common::Expected::Abs(0.01); 4],
    );
    let rest = first.into_inner().unwrap();
    let mut second = Decompressor::new(rest).unwrap();
    assert_within(
        &b,
        &decode_all(&mut second),
        2,
        &[common::Expected::Abs(0.01); 2],
    );
    let mut tail = Vec::new();
    second.into_inner().unwrap().read_to_end(&mut tail).unwrap();
    assert_eq!(tail, b"trailing bytes");
}

#[test]
fn a_failing_reader_is_an_error_not_a_hang() {
    let packed = compress(&data(4000, 4, 6), vec![4000, 4]);
    let mut d = Decompressor::new(FailingReader {
        inner: Cursor::new(packed.clone()),
        left: packed.len() / 2,
    })
    .unwrap();
    let err = loop {
        match d.next_chunk() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("a failed read ended cleanly"),
            Err(e) => break e,
        }
    };
    assert!(err.to_string().contains("the disk went away"), "{err}");
    // And on the compressing side.
    let values = data(4000, 4, 7);
    let mut c = Compressor::new(
        Vec::new(),
        ArraySpec::new(DType::F32, vec![UNKNOWN, 4]),
        opts(),
    )
    .unwrap();
    let bytes: Vec<u8> = bytemuck::cast_slice(&values).to_vec();
    let err = c
        .read_from(FailingReader {
            inner: Cursor::new(bytes),
            left: 10_000,
        })
        .unwrap_err();
    assert!(err.to_string().contains("the disk went away"), "{err}");
}

#[test]
fn a_failing_writer_reports_its_error() {
    let values = data(20_000, 4, 8);
    let mut c = Compressor::new(
        FailingWriter { left: 3000 },
        ArraySpec::new(DType::F32, vec![20_000, 4]),
        opts(),
    )
    .unwrap();
    let err = c
        .write_values(&values)
        .and_then(|()| c.finish().map(|_| ()))
        .unwrap_err();
    assert!(err.to_string().contains("no space left"), "{err}");
}

#[test]
fn dropped_without_finish_is_detectably_incomplete() {
    let values = data(5000, 4, 9);
    let shared = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut c = Compressor::new(
        Shared(shared.clone()),
        ArraySpec::new(DType::F32, vec![5000, 4]),
        opts(),
    )
    .unwrap();
    c.write_values(&values).unwrap();
    drop(c);
    // Give the writer thread a moment to write what it had.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let partial = shared.lock().unwrap().clone();
    match baler::decompress_to_vec(&partial) {
        Err(Error::Truncated { .. }) | Err(Error::BadMagic) => {}
        other => panic!(
            "an unfinished container decoded: {:?}",
            other.map(|(h, _)| h)
        ),
    }
}

#[test]
fn wrong_types_and_sizes_are_refused() {
    let mut c =
        Compressor::new(Vec::new(), ArraySpec::new(DType::F32, vec![10, 2]), opts()).unwrap();
    assert!(c.write_values(&[1.0f64, 2.0]).is_err());
    c.write_values(&[1.0f32; 19]).unwrap();
    let e = c.finish().unwrap_err().to_string();
    assert!(e.contains("19 of the 20 values"), "{e}");
    let mut c =
        Compressor::new(Vec::new(), ArraySpec::new(DType::F32, vec![2, 2]), opts()).unwrap();
    assert!(c.write_values(&[1.0f32; 5]).is_err());
    let mut c = Compressor::new(
        Vec::new(),
        ArraySpec::new(DType::F32, vec![UNKNOWN, 3]),
        opts(),
    )
    .unwrap();
    c.write_le_bytes(&[0u8; 13]).unwrap();
    assert!(c.finish().unwrap_err().to_string().contains("stray bytes"));
}

#[test]
fn the_range_pre_pass_is_the_same_on_any_thread_count() {
    // A raw file above the size scanned in parallel, of 7-value records (so the parts split
    // at record boundaries, not at the threads' even shares), with non-finite values and the
    // extremes in different parts.
    let (rows, cols) = (200_003, 7);
    let mut values = data(rows, cols, 5);
    values[3] = f32::NAN;
    values[cols * (rows - 1) + 2] = f32::INFINITY;
    values[cols * (rows / 2)] = -1e30;
    values[cols * (rows - 3) + 6] = 7e30;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("values.f32");
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert!(bytes.len() > 5 << 20);
    std::fs::write(&path, bytes).unwrap();
    let raw = baler::io::RawFormat {
        dtype: Some(DType::F32),
        shape: Some(vec![-1, cols as i64]),
        dataset: None,
    };
    let input = baler::io::Input::open(path.to_str().unwrap(), &raw).unwrap();
    let one = input.scan_stats(cols, 1).unwrap();
    assert_eq!(one[0].min, f64::from(-1e30f32));
    assert_eq!(one[2].nonfinite, 1);
    assert_eq!(
        (one[6].max, one[2].finite),
        (f64::from(7e30f32), rows as u64 - 1)
    );
    for threads in [2, 3, 8] {
        assert_eq!(input.scan_stats(cols, threads).unwrap(), one, "{threads}");
    }
}

#[test]
fn scratch_kept_between_calls_changes_no_byte() {
    // A field, a table and a field of doubles, coded and decoded in turn: each call's workers
    // take the codecs (and their scratch) the calls before left, in whatever state the other
    // kind of data left them; the bytes are those of a first call with fresh codecs.
    let field = data(200, 150, 3);
    let table = data(3000, 7, 4);
    let doubles: Vec<f64> = data(120, 90, 5)
        .iter()
        .map(|&v| f64::from(v) * 1e3)
        .collect();
    let options = CompressOptions::new(Bounds::new(BoundSpec::Rel(1e-3))).threads(2);
    let as_field = |mut spec: ArraySpec| {
        spec.layout = baler::Layout::Field;
        spec
    };
    let field_spec = as_field(ArraySpec::new(DType::F32, vec![200, 150]));
    let table_spec = ArraySpec::new(DType::F32, vec![3000, 7]);
    let doubles_spec = as_field(ArraySpec::new(DType::F64, vec![120, 90]));
    let all = || {
        let f = baler::compress_slice(&field, &field_spec, &options).unwrap();
        let t = baler::compress_slice(&table, &table_spec, &options).unwrap();
        let d = baler::compress_slice(&doubles, &doubles_spec, &options).unwrap();
        let back: Vec<ArrayData> = [&f, &t, &d]
            .iter()
            .map(|c| baler::decompress_to_vec(c).unwrap().1)
            .collect();
        // Into a caller's buffer too (scoped workers, as the Python module decodes).
        let mut into = (vec![0f32; field.len()], vec![0f64; doubles.len()]);
        baler::decompress_into(&f, &mut into.0, 2).unwrap();
        baler::decompress_into(&d, &mut into.1, 2).unwrap();
        assert!(
            ArrayData::F32(into.0.clone()) == back[0] && ArrayData::F64(into.1.clone()) == back[2]
        );
        (f, t, d, back, into)
    };
    baler::release_scratch();
    let first = all();
    for _ in 0..3 {
        assert!(all() == first, "a later call wrote or read other bytes");
    }
}
