//! Writes a container with a *streamed* header from raw little-endian float32 records on
//! standard input: the first dimension is unknown (`u64::MAX` in the header, the record count
//! only in the end mark) and the column ranges come from the first records only
//! (`StatsSource::FirstRecords`).
//!
//! `baler compress -` writes such a header only once more than 16 MiB (its statistics sample)
//! has arrived; this sets the sample small, so a few kilobytes are enough. Used by
//! `scripts/make_format_fixtures.sh` for `fixtures/format/*/`.
//!
//! ```sh
//! cargo run --release --example stream_fixture -- OUT.baler COLS BOUND CHUNK_BYTES SAMPLE_BYTES [NAMES] < values.raw
//! ```

use std::io::Read;
use std::process::ExitCode;

use baler::container::SourceFormat;
use baler::{ArraySpec, BoundSpec, Bounds, CompressOptions, Compressor, DType, UNKNOWN};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(5..=6).contains(&args.len()) {
        eprintln!(
            "usage: stream_fixture OUT.baler COLS BOUND CHUNK_BYTES SAMPLE_BYTES [NAMES] < raw-f32"
        );
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stream_fixture: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let cols: u64 = args[1].parse()?;
    let bound: BoundSpec = args[2].parse()?;
    let chunk_bytes: usize = args[3].parse()?;
    let sample_bytes: usize = args[4].parse()?;
    let mut spec = ArraySpec::new(DType::F32, vec![UNKNOWN, cols]);
    if let Some(names) = args.get(5) {
        spec.column_names = names.split(',').map(str::to_owned).collect();
    }
    let mut opts = CompressOptions::new(Bounds::new(bound))
        .chunk_bytes(chunk_bytes)
        .threads(1);
    opts.sample_bytes = sample_bytes;
    opts.source = SourceFormat::Raw;
    let mut input = Vec::new();
    std::io::stdin().lock().read_to_end(&mut input)?;
    let mut c = Compressor::new(Vec::new(), spec, opts)?;
    // In pieces that split values and records, as a pipe delivers them.
    for part in input.chunks(1000) {
        c.read_from(part)?;
    }
    std::fs::write(&args[0], c.finish()?)?;
    Ok(())
}
