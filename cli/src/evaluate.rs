//! `baler evaluate`: a container against the array it was compressed from, both streamed in
//! lockstep, chunk by chunk; per column the error against the bound, RMSE, PSNR, residual and
//! relative response; a table on the terminal and the same as JSON.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use baler::evaluate::{ColumnMetrics, Evaluation};
use baler::io::{Input, RawFormat, read_full};
use baler::{DType, Decompressor, Element, Header, Layout, UNKNOWN};

use super::args::EvaluateArgs;
use super::commands::json_str;
use super::plots::Histograms;
use super::progress::{self, size};
use super::show_progress;

/// Counts the bytes read from the container (its size when it comes through a pipe).
struct Counted<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Everything the report shows.
struct Report {
    original: String,
    compressed: String,
    header: Header,
    shape: Vec<u64>,
    original_bytes: u64,
    compressed_bytes: u64,
    seconds: f64,
    columns: Vec<ColumnMetrics>,
}

pub fn evaluate(args: EvaluateArgs) -> Result<()> {
    let started = Instant::now();
    if args.original == "-" && args.compressed == "-" {
        bail!("ORIGINAL and COMPRESSED cannot both be standard input; name at least one file");
    }
    let count = Arc::new(AtomicU64::new(0));
    let (reader, file_size): (Box<dyn Read + Send>, Option<u64>) = if args.compressed == "-" {
        (
            Box::new(BufReader::with_capacity(1 << 20, io::stdin())),
            None,
        )
    } else {
        let f = File::open(&args.compressed).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot open {}: {}",
                    args.compressed,
                    baler::io::io_reason(&e)
                ),
            )
        })?;
        let len = f.metadata().ok().map(|m| m.len());
        (Box::new(BufReader::with_capacity(1 << 20, f)), len)
    };
    let reader = Counted {
        inner: reader,
        count: Arc::clone(&count),
    };
    let options = baler::DecompressOptions {
        threads: args.threads,
        memory_limit: args.memory_limit as u64,
    };
    let d = Decompressor::with_options(reader, options)
        .with_context(|| format!("reading {}", args.compressed))?;
    let header = d.header().clone();

    let raw = raw_format(&args, &header)?;
    let input = Input::open(&args.original, &raw)?;
    check_same_array(&input, &header, &args)?;

    let bar = progress::bar(input.data_bytes, show_progress(args.quiet), "evaluating");
    let name = input.name.clone();
    let mut eval = Evaluation::for_header(&header);
    let mut hist = args.plots.as_ref().map(|_| Histograms::new(&header));
    let (orig, sinks) = (input.into_reader(), (&mut eval, hist.as_mut()));
    let values = match header.spec.dtype {
        DType::F32 => lockstep::<f32, _>(d, orig, sinks, &bar, &args, &name)?,
        DType::F64 => lockstep::<f64, _>(d, orig, sinks, &bar, &args, &name)?,
    };
    bar.finish_and_clear();
    let mut shape = header.spec.shape.clone();
    if shape[0] == UNKNOWN {
        shape[0] = values / header.spec.slice_len().max(1);
    }
    let report = Report {
        original: name,
        compressed: args.compressed.clone(),
        original_bytes: values * header.spec.dtype.size() as u64,
        compressed_bytes: file_size.unwrap_or_else(|| count.load(Ordering::Relaxed)),
        seconds: started.elapsed().as_secs_f64(),
        columns: eval.finish(),
        shape,
        header,
    };
    if !args.quiet {
        print_table(&mut io::stdout().lock(), &report)?;
    }
    if let (Some(dir), Some(hist)) = (&args.plots, &hist) {
        let names: Vec<String> = match report.header.spec.layout {
            Layout::Table => (0..report.columns.len())
                .map(|j| column_name(&report.header, j))
                .collect(),
            Layout::Field => vec!["value".into()],
        };
        let files =
            super::plots::write(dir, &report.header, hist, &report.columns, &names, args.svg)?;
        if !args.quiet {
            eprintln!("plots: {} files in {}", files.len(), dir.display());
        }
    }
    if let Some(out) = &args.json {
        let text = json(&report);
        if out == "-" {
            io::stdout().lock().write_all(text.as_bytes())?;
        } else {
            std::fs::write(out, text).with_context(|| format!("writing {out}"))?;
        }
    }
    let bad: Vec<String> = report
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.bound_met())
        .map(|(j, c)| {
            format!(
                "{}: {} values over the bound {} and {} special values (NaN, Inf, -0.0) \
                 changed, first at {}",
                column_name(&report.header, j),
                c.violations,
                c.bound,
                c.special_mismatches,
                position(&report, c.first_violation_at.unwrap_or(0))
            )
        })
        .collect();
    if !bad.is_empty() {
        bail!(
            "BOUND VIOLATED: {} does not reproduce {} within its bounds: {}; if {} really is \
             the array {} was compressed from, this is a bug in baler: please report it",
            report.compressed,
            report.original,
            bad.join("; "),
            report.original,
            report.compressed
        );
    }
    // The stored bounds are what the container claims; each must be what its spec gives on
    // the original (a relative bound from the original's own range), or stricter.
    let loose: Vec<String> = report
        .columns
        .iter()
        .zip(&report.header.bounds)
        .enumerate()
        .filter_map(|(j, (c, rb))| {
            let stats = baler::normalize::ColumnStats {
                min: c.min,
                max: c.max,
                finite: c.finite,
                nonfinite: c.nonfinite,
            };
            let from_spec = rb.spec.resolve(&stats);
            (!c.bound.within(from_spec)).then(|| {
                format!(
                    "{}: the container's bound {} is looser than {} gives on the original ({})",
                    column_name(&report.header, j),
                    c.bound,
                    rb.spec,
                    from_spec
                )
            })
        })
        .collect();
    if !loose.is_empty() {
        bail!(
            "BOUND NOT AS SPECIFIED: {}: {}; if {} really is the array it was compressed from, \
             this is a bug in baler: please report it",
            report.compressed,
            loose.join("; "),
            report.original
        );
    }
    Ok(())
}

/// The raw format of the original: from the flags, or (a raw container, no flags, an
/// original that is neither .npy nor HDF5) the container's own element type and shape.
fn raw_format(args: &EvaluateArgs, header: &Header) -> Result<RawFormat> {
    let mut raw = args.source.raw_format()?;
    if raw.dtype.is_none()
        && raw.shape.is_none()
        && raw.dataset.is_none()
        && header.source == baler::container::SourceFormat::Raw
        && args.original != "-"
        && !self_describing(&args.original)
    {
        raw.dtype = Some(header.spec.dtype);
        let mut dims = vec![-1i64];
        dims.extend(header.spec.shape[1..].iter().map(|&d| d as i64));
        raw.shape = Some(dims);
    }
    Ok(raw)
}

/// Whether a file starts as a .npy or HDF5 file does (or names an HDF5 dataset).
fn self_describing(path: &str) -> bool {
    if baler::io::hdf5::split_dataset_path(path).is_some() {
        return true;
    }
    let Ok(mut f) = File::open(path) else {
        return true; // let the real open report it
    };
    let mut magic = [0u8; 6];
    let npy = f.read_exact(&mut magic).is_ok() && &magic == b"\x93NUMPY";
    npy || baler::io::hdf5::has_signature(&f)
}

/// Refuses an original that is not the container's array: another element type or shape.
fn check_same_array(input: &Input, header: &Header, args: &EvaluateArgs) -> Result<()> {
    let spec = &header.spec;
    let same_shape = input.shape.len() == spec.shape.len()
        && input.shape[1..] == spec.shape[1..]
        && (input.shape[0] == spec.shape[0]
            || input.shape[0] == UNKNOWN
            || spec.shape[0] == UNKNOWN);
    if input.dtype != spec.dtype || !same_shape {
        bail!(
            "{} ({} {}) is not the array {} was compressed from ({} {}): evaluate compares a \
             container with its original; check the two paths{}",
            input.name,
            input.dtype,
            baler::array::shape_string(&input.shape),
            args.compressed,
            spec.dtype,
            baler::array::shape_string(&spec.shape),
            if input.format == baler::container::SourceFormat::Raw {
                " (for raw values, --dtype and --shape)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// Streams the container's chunks and the same spans of the original through `eval`; returns
/// the number of values compared.
fn lockstep<T: Element, R: Read + Send + 'static>(
    mut d: Decompressor<R>,
    mut original: Box<dyn Read + Send>,
    (eval, mut hist): (&mut Evaluation, Option<&mut Histograms>),
    bar: &indicatif::ProgressBar,
    args: &EvaluateArgs,
    name: &str,
) -> Result<u64> {
    let record_len = d.header().record_len.max(1);
    let mut buf: Vec<T> = Vec::new();
    let mut values = 0u64;
    while let Some(chunk) = d
        .next_chunk()
        .with_context(|| format!("decompressing {}", args.compressed))?
    {
        let decoded: &[T] = chunk_values(&chunk);
        buf.resize(decoded.len(), T::from_f64(0.0));
        let want = decoded.len() * T::BYTES;
        let got = read_full(&mut original, bytemuck::cast_slice_mut(&mut buf))
            .with_context(|| format!("reading {name}"))?;
        if got < want {
            bail!(
                "{name} ends after {} records, but {} holds more: is it the array {} was compressed from?",
                (values + (got / T::BYTES) as u64) / record_len,
                args.compressed,
                args.compressed
            );
        }
        T::from_le_in_place(&mut buf);
        eval.add(&buf, decoded);
        if let Some(h) = hist.as_deref_mut() {
            h.add(&buf, decoded);
        }
        values += decoded.len() as u64;
        bar.inc(want as u64);
        d.recycle(chunk);
    }
    d.finish()
        .with_context(|| format!("decompressing {}", args.compressed))?;
    let mut extra = [0u8; 1];
    if read_full(&mut original, &mut extra).with_context(|| format!("reading {name}"))? > 0 {
        bail!(
            "{name} holds more values than the {} records of {}: is it the array {} was compressed from?",
            values / record_len,
            args.compressed,
            args.compressed
        );
    }
    Ok(values)
}

fn chunk_values<T: Element>(chunk: &baler::ArrayData) -> &[T] {
    match chunk {
        baler::ArrayData::F32(v) => bytemuck::cast_slice(v.as_slice()),
        baler::ArrayData::F64(v) => bytemuck::cast_slice(v.as_slice()),
    }
}

fn column_name(h: &Header, j: usize) -> String {
    match h.spec.layout {
        Layout::Table => h
            .spec
            .column_names
            .get(j)
            .cloned()
            .unwrap_or_else(|| format!("col{j}")),
        Layout::Field => "(all values)".into(),
    }
}

/// A position in a column, as the user reads it: `row N` of a table, `[i, j, k]` of a field.
fn position(r: &Report, pos: u64) -> String {
    match r.header.spec.layout {
        Layout::Table => format!("row {pos}"),
        Layout::Field => format!("[{}]", unravel(pos, &r.shape).join(", ")),
    }
}

fn unravel(mut pos: u64, shape: &[u64]) -> Vec<String> {
    let mut idx = vec![String::new(); shape.len()];
    for (k, &d) in shape.iter().enumerate().rev() {
        let d = d.max(1);
        idx[k] = if k == 0 { pos } else { pos % d }.to_string();
        pos /= d;
    }
    idx
}

fn g(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf".into() } else { "-inf".into() }
    } else if v == 0.0 {
        "0".into()
    } else {
        format!("{v:.3e}")
    }
}

fn print_table(out: &mut impl Write, r: &Report) -> Result<()> {
    let h = &r.header;
    writeln!(out, "{} vs {}", r.original, r.compressed)?;
    writeln!(
        out,
        "  array     {} {}, {}",
        h.spec.dtype,
        baler::array::shape_string(&r.shape),
        h.spec.layout
    )?;
    let model = h.model.len() as u64;
    writeln!(
        out,
        "  size      {} -> {} ({:.2}x, counting the decoder); model {} ({:.2}% of the container)",
        size(r.original_bytes),
        size(r.compressed_bytes),
        r.original_bytes as f64 / r.compressed_bytes.max(1) as f64,
        size(model),
        100.0 * model as f64 / r.compressed_bytes.max(1) as f64
    )?;
    let (worst_j, worst) = r
        .columns
        .iter()
        .enumerate()
        .map(|(j, c)| (j, c.error_over_bound()))
        .fold((0, 0.0f64), |a, b| if b.1 > a.1 { b } else { a });
    let met = r.columns.iter().all(ColumnMetrics::bound_met);
    writeln!(
        out,
        "  bound     {}; worst max|err|/bound {:.6}{}",
        if met {
            "met by every value"
        } else {
            "VIOLATED (see below)"
        },
        worst,
        match h.spec.layout {
            Layout::Table => format!(" (column {})", column_name(h, worst_j)),
            Layout::Field => String::new(),
        }
    )?;
    let nonfinite: u64 = r.columns.iter().map(|c| c.nonfinite).sum();
    let mismatched: u64 = r.columns.iter().map(|c| c.special_mismatches).sum();
    writeln!(
        out,
        "  special   {nonfinite} NaN/Inf in the original; {mismatched} NaN/Inf/-0.0 not reproduced bit for bit"
    )?;
    writeln!(
        out,
        "  figures   over finite values; residual = x' - x; response = (x' - x)/x over x != 0 \
         (x = 0 left out, counted under 'x=0'); PSNR = 20 log10(range/RMSE)"
    )?;
    writeln!(
        out,
        "  speed     {:.2} s ({:.0} MB/s of original)",
        r.seconds,
        r.original_bytes as f64 / 1e6 / r.seconds.max(1e-9)
    )?;
    let nw = (0..r.columns.len())
        .map(|j| column_name(h, j).chars().count())
        .max()
        .unwrap_or(6)
        .clamp(6, 24);
    let at = if h.spec.layout == Layout::Table {
        "at row"
    } else {
        "at"
    };
    writeln!(
        out,
        "\n  {:>4}  {:<nw$} {:>10} {:>10} {:>9} {:>10} {:>10} {:>8} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "#",
        "column",
        "bound",
        "max|err|",
        "/bound",
        at,
        "RMSE",
        "PSNR dB",
        "mean res",
        "RMS res",
        "mean resp",
        "RMS resp",
        "x=0"
    )?;
    for (j, c) in r.columns.iter().enumerate() {
        let name: String = column_name(h, j).chars().take(nw).collect();
        // Where the worst error against the bound is: the largest |x' − x|, or under a
        // point-wise relative bound the largest |x' − x| / |x|.
        let worst_at = match c.bound {
            baler::Bound::PwRel(_) => c.max_rel_error_at,
            _ => c.max_error_at,
        };
        let at = match (h.spec.layout, worst_at) {
            (_, None) => "-".to_string(),
            (Layout::Table, Some(p)) => p.to_string(),
            (Layout::Field, Some(p)) => position(r, p),
        };
        let psnr = match c.psnr_db() {
            Some(p) if p.is_finite() => format!("{p:.1}"),
            Some(_) => "inf".into(),
            None => "-".into(),
        };
        writeln!(
            out,
            "  {j:>4}  {name:<nw$} {:>10} {:>10} {:>9} {:>10} {:>10} {:>8} {:>10} {:>10} {:>10} {:>10} {:>8}{}",
            match c.bound {
                baler::Bound::Lossless => "lossless".into(),
                baler::Bound::Abs(e) => g(e),
                baler::Bound::PwRel(r) => format!("{}|x|", g(r)),
            },
            g(c.max_abs_error),
            format!("{:.5}", c.error_over_bound()),
            at,
            g(c.rmse()),
            psnr,
            g(c.residual_mean()),
            g(c.residual_rms()),
            g(c.response_mean()),
            g(c.response_rms()),
            c.response_zeros,
            if c.bound_met() {
                String::new()
            } else {
                format!(
                    "  VIOLATED: {} over the bound, {} special values changed",
                    c.violations, c.special_mismatches
                )
            }
        )?;
    }
    Ok(())
}

/// A JSON number; `null` for NaN and infinities (JSON has none).
fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:e}")
    } else {
        "null".into()
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or("null".into(), |v| v.to_string())
}

fn json(r: &Report) -> String {
    let h = &r.header;
    let columns: Vec<String> = r
        .columns
        .iter()
        .enumerate()
        .map(|(j, c)| {
            format!(
                "{{\"index\": {j}, \"name\": {}, \"bound_spec\": {}, \"bound_kind\": \"{}\", \
                 \"bound\": {}, \"count\": {}, \
                 \"finite\": {}, \"nonfinite\": {}, \"special_mismatches\": {}, \"violations\": {}, \
                 \"first_violation_at\": {}, \"bound_met\": {}, \"max_abs_error\": {}, \
                 \"max_error_at\": {}, \"max_rel_error\": {}, \"max_rel_error_at\": {}, \
                 \"max_error_over_bound\": {}, \"min\": {}, \"max\": {}, \
                 \"range\": {}, \"rmse\": {}, \"psnr_db\": {}, \"residual_mean\": {}, \
                 \"residual_rms\": {}, \"response_count\": {}, \"response_zeros_excluded\": {}, \
                 \"response_mean\": {}, \"response_rms\": {}}}",
                json_str(&column_name(h, j)),
                json_str(&h.bounds[j].to_string()),
                match c.bound {
                    baler::Bound::Lossless => "lossless",
                    baler::Bound::Abs(_) => "abs",
                    baler::Bound::PwRel(_) => "pwrel",
                },
                num(c.bound.value()),
                c.count,
                c.finite,
                c.nonfinite,
                c.special_mismatches,
                c.violations,
                opt(c.first_violation_at),
                c.bound_met(),
                num(c.max_abs_error),
                opt(c.max_error_at),
                num(c.max_rel_error),
                opt(c.max_rel_error_at),
                num(c.error_over_bound()),
                num(c.min),
                num(c.max),
                num(c.range()),
                num(c.rmse()),
                c.psnr_db().map_or("null".into(), num),
                num(c.residual_mean()),
                num(c.residual_rms()),
                c.response_count,
                c.response_zeros,
                num(c.response_mean()),
                num(c.response_rms()),
            )
        })
        .collect();
    let worst = r
        .columns
        .iter()
        .map(ColumnMetrics::error_over_bound)
        .fold(0.0f64, f64::max);
    let shape: Vec<String> = r.shape.iter().map(u64::to_string).collect();
    let model = h.model.len() as u64;
    format!(
        "{{\n  \"original\": {},\n  \"compressed\": {},\n  \"dtype\": \"{}\",\n  \"shape\": [{}],\n  \
         \"layout\": \"{}\",\n  \"original_bytes\": {},\n  \"compressed_bytes\": {},\n  \
         \"ratio\": {},\n  \"model_bytes\": {},\n  \"model_share\": {},\n  \"bound_met\": {},\n  \
         \"worst_error_over_bound\": {},\n  \"seconds\": {},\n  \"notes\": {},\n  \"columns\": [\n    {}\n  ]\n}}\n",
        json_str(&r.original),
        json_str(&r.compressed),
        h.spec.dtype,
        shape.join(", "),
        h.spec.layout,
        r.original_bytes,
        r.compressed_bytes,
        num(r.original_bytes as f64 / r.compressed_bytes.max(1) as f64),
        model,
        num(model as f64 / r.compressed_bytes.max(1) as f64),
        r.columns.iter().all(ColumnMetrics::bound_met),
        num(worst),
        num(r.seconds),
        json_str(
            "statistics over values finite in both; residual = x' - x; response = (x' - x)/x \
             over x != 0, values with x = 0 excluded and counted; psnr_db = 20 log10(range/rmse), \
             null when rmse = 0 (exact) or the range is 0; positions are rows of a table or flat \
             indices of a field"
        ),
        columns.join(",\n    ")
    )
}
