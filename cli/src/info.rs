//! `baler info`.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};

use anyhow::{Context, Result, bail};

use baler::chunk::{PayloadKind, inspect_payload};
use baler::container::{
    ContainerReader, Frame, Header, MAGIC, SourceFormat, StatsSource, read_trailer, verify_trailer,
};
use baler::io::npy;
use baler::predict::Predictor;
use baler::{Layout, UNKNOWN};

use super::args::InfoArgs;
use super::progress::size;

pub fn info(args: InfoArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if let Some((file, dataset)) = baler::io::hdf5::split_dataset_path(&args.file) {
        return hdf5_info(&mut out, file, Some(dataset));
    }
    let path = &args.file;
    let mut f = File::open(path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot open {path}: {}", baler::io::io_reason(&e)),
        )
    })?;
    let file_size = f.metadata()?.len();
    let mut magic = [0u8; 8];
    let n = f.read(&mut magic)?;
    f.seek(SeekFrom::Start(0))?;
    if n == 8 && magic == MAGIC {
        return container_info(&mut out, path, f, file_size, &args);
    }
    if n == 8 && &magic == b"BALERMDL" {
        return model_info(&mut out, path, file_size);
    }
    if n == 8 && magic == baler::plan::PLAN_MAGIC {
        return plan_info(&mut out, path, file_size);
    }
    if n == 8 && magic == baler::shard::SHARD_MAGIC {
        return shard_info(&mut out, path, f);
    }
    if magic.starts_with(b"\x93NUMPY") {
        let h = npy::read_header(&mut f)?;
        writeln!(out, "{path}: .npy array")?;
        writeln!(
            out,
            "  dtype    {}{}",
            h.dtype,
            if h.big_endian { " (big-endian)" } else { "" }
        )?;
        writeln!(out, "  shape    {}", baler::array::shape_string(&h.shape))?;
        writeln!(
            out,
            "  layout   {} by default",
            Layout::default_for(h.shape.len())
        )?;
        writeln!(
            out,
            "  size     {}",
            size(h.shape.iter().product::<u64>() * h.dtype.size() as u64)
        )?;
        return Ok(());
    }
    if baler::io::hdf5::has_signature(&f) {
        drop(f);
        return hdf5_info(&mut out, path, None);
    }
    bail!(
        "{path} is neither a .baler container, nor a model from `baler train`, nor a plan or a \
         shard, nor a .npy file, nor an HDF5 file"
    )
}

/// A model file from `baler train`: its architecture and size.
fn model_info(out: &mut impl Write, path: &str, file_size: u64) -> Result<()> {
    let m = baler::model::Model::load(std::path::Path::new(path))
        .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    let width = m.columns.len();
    let name = |i: usize| format!("col{i}");
    writeln!(
        out,
        "{path}: baler model (conditional MLP for tables of {width} columns), {}",
        size(file_size)
    )?;
    writeln!(
        out,
        "  predicts  {} of {width} columns from columns coded before them",
        m.active_columns()
    )?;
    writeln!(
        out,
        "  size      {} parameters (f32), {} derived features",
        m.parameters(),
        m.features.len()
    )?;
    let order: Vec<String> = m.order.iter().map(|&j| name(j as usize)).collect();
    writeln!(out, "  order     {}", order.join(", "))?;
    writeln!(
        out,
        "\n  {:>6}  {:>6} {:>6} {:>10}  inputs (linear term + one hidden ReLU layer)",
        "column", "inputs", "hidden", "parameters"
    )?;
    for (j, c) in m.columns.iter().enumerate() {
        let inputs: Vec<String> = c
            .inputs
            .iter()
            .map(|&i| super::commands::input_name(&m, i, &name))
            .collect();
        writeln!(
            out,
            "  {:>6}  {:>6} {:>6} {:>10}  {}",
            name(j),
            c.inputs.len(),
            c.hidden,
            c.parameters(),
            if c.is_active() {
                inputs.join(", ")
            } else {
                "- (not predicted)".into()
            }
        )?;
    }
    Ok(())
}

/// What a header fixes, in a plan or a shard: the array, the bounds, the model.
fn planned(out: &mut impl Write, h: &Header) -> Result<()> {
    let spec = &h.spec;
    writeln!(
        out,
        "  array    {} {}, {}",
        spec.dtype,
        baler::array::shape_string(&spec.shape),
        spec.layout
    )?;
    writeln!(out, "  bounds   {}", super::commands::summarize_bounds(h))?;
    let model = if h.model.is_empty() {
        "none".to_string()
    } else {
        match baler::model::Model::read(&h.model, h.record_len as usize) {
            Ok(m) => format!(
                "{} of {} columns predicted, {}",
                m.active_columns(),
                m.columns.len(),
                size(h.model.len() as u64)
            ),
            Err(e) => format!("unreadable ({e})"),
        }
    };
    writeln!(out, "  model    {model}")?;
    Ok(())
}

/// A plan from `baler plan`: the input it is for, its chunks and what its header fixes.
fn plan_info(out: &mut impl Write, path: &str, file_size: u64) -> Result<()> {
    let plan = baler::Plan::load(std::path::Path::new(path))?;
    writeln!(
        out,
        "{path}: baler plan (for `baler compress INPUT --plan {path} --shard I/N`), {}",
        size(file_size)
    )?;
    writeln!(
        out,
        "  input    {} ({} of values, sampled checksum {:#010x})",
        plan.input.name,
        size(plan.input.bytes),
        plan.input.digest
    )?;
    planned(out, &plan.header)?;
    writeln!(
        out,
        "  chunks   {} of {} records ({} records)",
        plan.chunks(),
        plan.chunk_records,
        plan.records()
    )?;
    Ok(())
}

/// A shard from `compress --plan --shard`: which records it holds.
fn shard_info(out: &mut impl Write, path: &str, f: File) -> Result<()> {
    let s = baler::shard::ShardFile::open(path, f)?;
    let r = s.end.range;
    writeln!(
        out,
        "{path}: baler shard {} of {} (join with `baler concat`), {}",
        r.index,
        r.count,
        size(s.size())
    )?;
    writeln!(
        out,
        "  records  {}..{} of {} (chunks {}..{} of {})",
        r.first_record,
        r.first_record + r.records,
        s.end.total_records,
        r.first_chunk,
        r.first_chunk + r.chunks,
        s.end.total_chunks
    )?;
    planned(out, &s.header)
}

/// The datasets of an HDF5 file, or one dataset in detail.
#[cfg(feature = "hdf5")]
fn hdf5_info(out: &mut impl Write, path: &str, dataset: Option<&str>) -> Result<()> {
    let all = baler::io::hdf5::list_datasets(std::path::Path::new(path), path)?;
    let chunking = |c: &Option<Vec<u64>>| {
        c.as_ref()
            .map_or("contiguous".to_string(), |c| baler::array::shape_string(c))
    };
    let filters = |f: &[String]| {
        if f.is_empty() {
            "-".to_string()
        } else {
            f.join(" + ")
        }
    };
    if let Some(wanted) = dataset {
        // Opening it reports a missing, mistyped or non-float dataset with suggestions.
        let opened = baler::io::hdf5::open(std::path::Path::new(path), path, Some(wanted))?;
        let d = all
            .iter()
            .find(|d| d.path == opened.source.path)
            .context("the dataset vanished while listing")?;
        writeln!(out, "{path}:{}: HDF5 dataset", d.path)?;
        writeln!(out, "  type     {}", d.type_name)?;
        writeln!(
            out,
            "  shape    {}{}",
            baler::array::shape_string(&d.shape),
            if opened.compound {
                format!(" (a table of {} columns)", opened.shape[1])
            } else {
                String::new()
            }
        )?;
        writeln!(out, "  chunks   {}", chunking(&d.chunks))?;
        writeln!(out, "  filters  {}", filters(&d.filters))?;
        writeln!(
            out,
            "  layout   {} by default",
            Layout::default_for(opened.shape.len())
        )?;
        writeln!(
            out,
            "  size     {} of values",
            size(opened.shape.iter().product::<u64>() * opened.dtype.size() as u64)
        )?;
        if let Some((from, names)) = &opened.columns {
            writeln!(out, "  columns  {} (from {from})", names.join(","))?;
        }
        let names = opened.columns.as_ref().map(|(_, n)| n.as_slice());
        baler_filtered(out, path, &d.path, names.unwrap_or(&[]), "  ")?;
        return Ok(());
    }
    let usable = all.iter().filter(|d| d.is_float()).count();
    writeln!(
        out,
        "{path}: HDF5 file, {} datasets, {usable} of float32/float64 values",
        all.len()
    )?;
    let pw = all.iter().map(|d| d.path.len()).max().unwrap_or(0).max(7);
    writeln!(
        out,
        "\n  {:<pw$}  {:<18} {:<28} {:<16} filters",
        "dataset", "shape", "type", "chunks"
    )?;
    for d in &all {
        writeln!(
            out,
            "  {:<pw$}  {:<18} {:<28} {:<16} {}",
            d.path,
            d.shape_string(),
            d.short_type(),
            chunking(&d.chunks),
            filters(&d.filters)
        )?;
    }
    let filtered: Vec<&baler::io::hdf5::DatasetInfo> = all
        .iter()
        .filter(|d| d.filters.iter().any(|f| f == "baler"))
        .collect();
    if !filtered.is_empty() {
        writeln!(
            out,
            "\n  written through baler's HDF5 filter (id {}; readers need libh5baler.so on \
             HDF5_PLUGIN_PATH):",
            h5baler::FILTER_ID
        )?;
        let file = hdf5::File::open(path).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
        for d in filtered {
            writeln!(out, "  {}", d.path)?;
            let names = file
                .dataset(&d.path)
                .ok()
                .and_then(|ds| baler::io::hdf5::column_names(&ds))
                .map(|(_, n)| n)
                .unwrap_or_default();
            baler_filtered(out, path, &d.path, &names, "    ")?;
        }
    }
    if let Some(first) = all.iter().find(|d| d.is_float()) {
        writeln!(
            out,
            "\n  one dataset in detail (column names):  baler info {path}:{}\n  \
             compress it:                           baler compress {path}:{} -b rel:1e-3",
            first.path, first.path
        )?;
    }
    Ok(())
}

/// For a dataset written through baler's HDF5 filter, what its stored parameters say (read by
/// the filter's own parser): the chunk, the element size, the bounds, the model.
#[cfg(feature = "hdf5")]
fn baler_filtered(
    out: &mut impl Write,
    path: &str,
    dataset: &str,
    names: &[String],
    indent: &str,
) -> Result<()> {
    let file = hdf5::File::open(path).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    let ds = file
        .dataset(dataset)
        .map_err(|e| anyhow::anyhow!("{path}:{dataset}: {e}"))?;
    let pipeline = baler::io::hdf5::filter_pipeline(&ds)?;
    let Some((words, total)) = pipeline
        .into_iter()
        .find_map(|(id, cd, n)| (id == h5baler::FILTER_ID).then_some((cd, n)))
    else {
        return Ok(());
    };
    let p = match h5baler::params::parse_stored_prefix(&words, total) {
        Ok(p) => p,
        Err(e) => {
            writeln!(
                out,
                "{indent}baler    filter {}, parameters unreadable: {e}",
                h5baler::FILTER_ID
            )?;
            return Ok(());
        }
    };
    let table = p.layout == Layout::Table;
    writeln!(
        out,
        "{indent}baler    filter {} (stored parameters, layout version {}): chunks of {} {} \
         ({}-byte elements), each a {}",
        h5baler::FILTER_ID,
        words[0] & 0xffff,
        baler::array::shape_string(&p.dims),
        match p.dtype {
            baler::DType::F32 => "float32",
            baler::DType::F64 => "float64",
        },
        p.dtype.size(),
        if table {
            "table (bounds per column)"
        } else {
            "field (one bound)"
        }
    )?;
    if table {
        let columns = p.dims[1] as usize;
        let specs = p.bounds.per_column(columns, &[], true)?;
        let name = |j: usize| names.get(j).cloned().unwrap_or_else(|| format!("col{j}"));
        let default = p.bounds.default;
        if specs.iter().all(|&s| s == default) {
            writeln!(
                out,
                "{indent}bound    {default} (every column of {columns})"
            )?;
        } else {
            writeln!(out, "{indent}bound    per column:")?;
            for (j, s) in specs.iter().enumerate() {
                writeln!(out, "{indent}  {j:>4}  {:<24} {s}", name(j))?;
            }
        }
    } else {
        writeln!(out, "{indent}bound    {}", p.bounds.default)?;
    }
    let model = match &p.model {
        None if p.model_bytes > 0 => format!(
            "{} in the parameters (and in every chunk; beyond the {} values HDF5 hands a \
             reader, so not decoded here)",
            size(p.model_bytes as u64),
            h5baler::params::MAX_READ
        ),
        None => "none".to_string(),
        Some(m) => format!(
            "{} of {} columns predicted, {} in the parameters (and in every chunk)",
            m.active_columns(),
            m.columns.len(),
            size(p.model_bytes as u64)
        ),
    };
    writeln!(out, "{indent}model    {model}")?;
    Ok(())
}

#[cfg(not(feature = "hdf5"))]
fn hdf5_info(_out: &mut impl Write, path: &str, _dataset: Option<&str>) -> Result<()> {
    bail!(
        "{path} is an HDF5 file, but this baler was built without HDF5 support; rebuild it with \
         the default features"
    )
}

fn container_info(
    out: &mut impl Write,
    path: &str,
    mut f: File,
    file_size: u64,
    args: &InfoArgs,
) -> Result<()> {
    let header = Header::read_from(&mut BufReader::new(&mut f))
        .with_context(|| format!("reading {path}"))?;
    let trailer = read_trailer(&mut f).with_context(|| format!("reading the footer of {path}"))?;
    // What the footer says is checked against the chunks' own headers before it is shown.
    verify_trailer(&mut f, &trailer).with_context(|| format!("checking the footer of {path}"))?;
    let footer = file_size.saturating_sub(trailer.end_offset);
    let header_len = trailer
        .index
        .first()
        .map_or(trailer.end_offset, |e| e.offset);
    let spec = &header.spec;
    let mut shape = spec.shape.clone();
    if shape[0] == UNKNOWN {
        shape[0] = trailer.records.saturating_mul(header.record_len) / spec.slice_len().max(1);
    }
    let values = shape.iter().fold(1u64, |a, &d| a.saturating_mul(d));
    let raw = values.saturating_mul(spec.dtype.size() as u64);
    writeln!(
        out,
        "{path}: baler container, format version {}, written by {}",
        header.version, header.writer
    )?;
    writeln!(
        out,
        "  array    {} {}, {}",
        spec.dtype,
        baler::array::shape_string(&shape),
        spec.layout
    )?;
    writeln!(
        out,
        "  source   {}",
        match (header.source, &header.source_path) {
            (SourceFormat::Npy, _) => ".npy".to_string(),
            (SourceFormat::Raw, _) => "raw values".to_string(),
            (SourceFormat::Hdf5, Some(p)) => format!("HDF5 dataset {p}"),
            (SourceFormat::Hdf5Compound, Some(p)) => {
                format!("HDF5 compound dataset {p} (one column per field)")
            }
            _ => "not recorded".to_string(),
        }
    )?;
    writeln!(
        out,
        "  records  {} of {} values, in {} chunks",
        trailer.records, header.record_len, trailer.chunks
    )?;
    writeln!(
        out,
        "  size     {} -> {} ({:.2}x, {:.2}% of the input)",
        size(raw),
        size(file_size),
        raw as f64 / file_size.max(1) as f64,
        100.0 * file_size as f64 / raw.max(1) as f64
    )?;
    writeln!(
        out,
        "  parts    header {} (model {}, {:.2}% of the file), chunk data {}, end mark and index {}",
        size(header_len),
        size(header.model.len() as u64),
        100.0 * header.model.len() as f64 / file_size.max(1) as f64,
        size(file_size.saturating_sub(header_len + footer)),
        size(footer)
    )?;
    writeln!(
        out,
        "  model    {}",
        match baler::model::Model::read(&header.model, header.record_len as usize) {
            _ if header.model.is_empty() => {
                "none (plain and neighbour predictors, chosen per column and chunk)".to_string()
            }
            Ok(m) => format!(
                "conditional MLP: {} of {} columns predicted from earlier ones, {} parameters, {}",
                m.active_columns(),
                m.columns.len(),
                m.parameters(),
                size(header.model.len() as u64)
            ),
            Err(e) => format!("unreadable ({e})"),
        }
    )?;
    writeln!(
        out,
        "  ranges   {}",
        match header.stats_source {
            StatsSource::Whole => "from a pass over the whole input".to_string(),
            StatsSource::FirstRecords(n) => format!("from the first {n} records of the stream"),
        }
    )?;
    let label = if spec.layout == Layout::Table {
        "column"
    } else {
        "field"
    };
    writeln!(
        out,
        "\n  {:>4}  {:<24} {:<34} {:>14} {:>14}",
        "#", label, "bound", "min", "max"
    )?;
    for (i, (b, s)) in header.bounds.iter().zip(&header.stats).enumerate() {
        let name = spec.column_names.get(i).cloned().unwrap_or_else(|| {
            if spec.layout == Layout::Table {
                format!("col{i}")
            } else {
                "(all values)".into()
            }
        });
        let (lo, hi) = if s.finite > 0 {
            (format!("{:.6e}", s.min), format!("{:.6e}", s.max))
        } else {
            ("-".into(), "-".into())
        };
        let nonfinite = if s.nonfinite > 0 {
            format!("  ({} non-finite)", s.nonfinite)
        } else {
            String::new()
        };
        writeln!(
            out,
            "  {i:>4}  {name:<24} {:<34} {lo:>14} {hi:>14}{nonfinite}",
            b.to_string()
        )?;
    }
    if args.chunks {
        writeln!(
            out,
            "\n  {:>6} {:>14} {:>12} {:>12} {:>12}",
            "chunk", "offset", "first", "records", "bytes"
        )?;
        for (i, e) in trailer.index.iter().enumerate() {
            let end = trailer
                .index
                .get(i + 1)
                .map_or(file_size.saturating_sub(footer), |n| n.offset);
            writeln!(
                out,
                "  {i:>6} {:>14} {:>12} {:>12} {:>12}",
                e.offset,
                e.first_record,
                e.records,
                end.saturating_sub(e.offset)
            )?;
        }
    }
    if args.columns {
        column_breakdown(out, path, &header)?;
    }
    Ok(())
}

fn column_breakdown(out: &mut impl Write, path: &str, header: &Header) -> Result<()> {
    let f = File::open(path)?;
    let mut r = ContainerReader::new(BufReader::with_capacity(1 << 20, f))?;
    let ncols = header.spec.bound_columns();
    let mut bytes = vec![0u64; ncols];
    let mut exceptions = vec![0u64; ncols];
    let mut lossless = vec![0u64; ncols];
    let mut relations = vec![0u64; ncols];
    let mut predictors = vec![[0u64; Predictor::ALL.len()]; ncols];
    // The bit-exact columns' transforms, in the order first met.
    let mut transforms: Vec<Vec<(&'static str, u64)>> = vec![Vec::new(); ncols];
    let order = header.codec_params().column_order(ncols);
    let ordinal: Vec<bool> = header
        .bounds
        .iter()
        .map(|b| matches!(b.bound, baler::Bound::PwRel(_)))
        .collect();
    let (mut raw_chunks, mut chunks) = (0u64, 0u64);
    while let Frame::Chunk {
        index,
        kind,
        payload,
        ..
    } = r.next_frame()?
    {
        chunks += 1;
        if kind != PayloadKind::Coded {
            raw_chunks += 1;
            continue;
        }
        let cols = inspect_payload(&payload, &order, &ordinal).map_err(|e| {
            baler::Error::CorruptChunk {
                chunk: index,
                reason: e,
            }
        })?;
        for (j, c) in cols.iter().enumerate() {
            bytes[j] += c.bytes as u64;
            exceptions[j] += c.exceptions;
            lossless[j] += c.lossless as u64;
            relations[j] += c.relation as u64;
            if let Some(p) = c.predictor {
                predictors[j][p.id() as usize] += 1;
            }
            if let Some(t) = c.transform {
                match transforms[j].iter_mut().find(|(name, _)| *name == t) {
                    Some((_, count)) => *count += 1,
                    None => transforms[j].push((t, 1)),
                }
            }
        }
    }
    let values_per_col = match header.spec.layout {
        Layout::Table => r.records_read(),
        Layout::Field => r.records_read() * header.record_len,
    };
    let total: u64 = bytes.iter().sum();
    writeln!(
        out,
        "\n  {:>4}  {:<24} {:>12} {:>7} {:>10} {:>11} {:>9}  predictors, lossless transforms (chunks)",
        "#", "column", "bytes", "share", "bits/value", "exceptions", "lossless"
    )?;
    for j in 0..ncols {
        let name = header
            .spec
            .column_names
            .get(j)
            .cloned()
            .unwrap_or_else(|| format!("col{j}"));
        let mut used: Vec<String> = Predictor::ALL
            .iter()
            .filter(|p| predictors[j][p.id() as usize] > 0)
            .map(|p| format!("{} {}", p.name(), predictors[j][p.id() as usize]))
            .collect();
        if relations[j] > 0 {
            used.push(format!("relation {}", relations[j]));
        }
        used.extend(
            transforms[j]
                .iter()
                .map(|(t, count)| format!("{t} {count}")),
        );
        writeln!(
            out,
            "  {j:>4}  {name:<24} {:>12} {:>6.1}% {:>10.3} {:>11} {:>6}/{chunks}  {}",
            bytes[j],
            100.0 * bytes[j] as f64 / total.max(1) as f64,
            bytes[j] as f64 * 8.0 / values_per_col.max(1) as f64,
            exceptions[j],
            lossless[j],
            used.join(", ")
        )?;
    }
    if raw_chunks > 0 {
        writeln!(
            out,
            "  ({raw_chunks} of {chunks} chunks are stored raw: coding did not pay there)"
        )?;
    }
    Ok(())
}
