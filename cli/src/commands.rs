//! `baler compress` and `baler decompress`.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;

use baler::compress::resolve_threads;
use baler::container::SourceFormat;
use baler::io::Input;
use baler::io::output::{Named, OutputFile, OutputPath, ValueFormat, ValueSink, ValueWriter};
use baler::{
    BoundSpec, Bounds, BoundsFile, CompressOptions, Compressor, DType, Decompressor, Finished,
    Layout,
};

use super::args::{
    BenchArgs, BoundArgs, CodecArgs, CompressArgs, ConcatArgs, DecompressArgs, LayoutArg, PlanArgs,
};
use super::progress::{self, Counting};
use super::show_progress;

/// The bounds of `--bounds FILE`, `--bound` and `--bound-col`, in that order of precedence
/// (later wins).
pub(super) fn bounds_from(args: &BoundArgs) -> Result<Bounds> {
    let mut bounds = Bounds::new(args.bound.unwrap_or(BoundSpec::Lossless));
    if let Some(path) = &args.bounds {
        let file = BoundsFile::read(path)?;
        if args.bound.is_none() && file.default.is_none() {
            bail!(
                "{} has no 'default SPEC' line: give one there, or --bound for the columns it \
                 does not name",
                path.display()
            );
        }
        bounds = bounds.with_file(file);
        if let Some(b) = args.bound {
            bounds.default = b;
        }
    }
    bounds.overrides.extend(args.bound_col.iter().cloned());
    Ok(bounds)
}

/// Opens the input and builds its spec and options from the flags. With `scan`, a file whose
/// bounds need the columns' ranges gets its range pre-pass ([`Input::stats_scan`]) into the
/// options' statistics, on a thread of its own while the model trains (the two are
/// independent: training takes its statistics from its sample); otherwise no statistics yet.
fn open_input(
    path: &str,
    args: &CodecArgs,
    show: bool,
    scan: bool,
) -> Result<(Input, baler::ArraySpec, CompressOptions)> {
    let bounds = bounds_from(&args.bound_args)?;
    let mut input = Input::open(path, &args.source.raw_format()?)?;
    let layout = args.layout.map(|l| match l {
        LayoutArg::Table => Layout::Table,
        LayoutArg::Field => Layout::Field,
    });
    let names: Vec<String> = args
        .names
        .as_deref()
        .map(|n| n.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    let spec = input.spec(layout, names)?;
    let mut options = CompressOptions::new(bounds).threads(args.threads);
    if let Some(size) = args.chunk_size {
        options = options.chunk_bytes(size);
    }
    options.source = input.format;
    options.source_path = input.source_path.clone();
    let scanner = if scan && input.can_scan() && options.bounds.needs_range() {
        // On one thread beside a model's training (which uses every core, for tens of
        // milliseconds), else on all: a file of 64 MiB or more takes the pass longer than the
        // training whatever it shares.
        let trains = args.model == "auto" && spec.layout == Layout::Table;
        let large = input.data_bytes.is_some_and(|b| b >= 64 << 20);
        let threads = if trains && !large {
            1
        } else {
            resolve_threads(options.threads)
        };
        Some(input.stats_scan(spec.bound_columns(), threads)?)
    } else {
        None
    };
    let (model, stats) = std::thread::scope(|s| {
        let stats = scanner.map(|f| {
            std::thread::Builder::new()
                .name("baler-ranges".into())
                .spawn_scoped(s, f)
        });
        let model = prepare_model(&mut input, &spec, &options, args, show);
        let stats = match stats {
            None => Ok(None),
            Some(spawned) => spawned
                .map_err(anyhow::Error::from)
                .and_then(|h| {
                    h.join()
                        .map_err(|_| anyhow::anyhow!("the range pre-pass panicked"))
                })
                .and_then(|r| r.map_err(anyhow::Error::from))
                .map(Some),
        };
        (model, stats)
    });
    options.model = model?;
    options.stats = stats.with_context(|| format!("scanning {} for value ranges", input.name))?;
    Ok((input, spec, options))
}

/// The learned predictor for `compress` and `bench`: none for fields or `--model none`; a
/// model file; or (`auto`) one trained on a sample of a table file's records, or on a
/// stream's first records (read ahead, they stay in front of the rest).
fn prepare_model(
    input: &mut Input,
    spec: &baler::ArraySpec,
    options: &CompressOptions,
    args: &CodecArgs,
    show: bool,
) -> Result<Option<baler::model::Model>> {
    match args.model.as_str() {
        "none" => Ok(None),
        "auto" => {
            if spec.layout != Layout::Table {
                return Ok(None);
            }
            let records = spec.shape[0];
            let effort = args.effort.unwrap_or(baler::model::budget::DEFAULT_EFFORT);
            let budget = baler::model::budget::TrainBudget::new(effort, records);
            let sample = args.train.sample.unwrap_or(budget.sample);
            let epochs = args.train.epochs.unwrap_or(budget.epochs);
            if sample == 0 {
                return Ok(None);
            }
            let plan = (sample, epochs, None);
            let (model, _) = train_on(input, spec, options, args, plan, show)?;
            Ok(Some(model).filter(|m| m.active_columns() > 0))
        }
        path => {
            if spec.layout != Layout::Table {
                bail!("--model applies to tables; {} is a field", input.name);
            }
            let m = baler::model::Model::load(Path::new(path))
                .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
            if m.columns.len() as u64 != spec.shape[1] {
                bail!(
                    "{path}: the model is for tables of {} columns; {} has {}",
                    m.columns.len(),
                    input.name,
                    spec.shape[1]
                );
            }
            Ok(Some(m))
        }
    }
}

/// Trains on `sample` of `input`'s records ([`Input::training_sample`]) for at most `epochs`,
/// for a model that will code `records` (`None`: this input's, [`Input::coded_extent`]).
fn train_on(
    input: &mut Input,
    spec: &baler::ArraySpec,
    options: &CompressOptions,
    args: &CodecArgs,
    (sample, epochs, records): (usize, usize, Option<u64>),
    show: bool,
) -> Result<(baler::model::Model, baler::model::train::TrainReport)> {
    let width = spec.shape[1] as usize;
    let f = &args.train;
    let sample = input
        .training_sample(width, sample, f.seed)
        .with_context(|| format!("sampling {} for training", input.name))?;
    let (coded, raw) = input.coded_extent(sample.len());
    let records = records.unwrap_or(coded);
    let specs = options.bounds.per_column(width, &spec.column_names, true)?;
    let opts = baler::model::train::TrainOptions {
        hidden: f.hidden.unwrap_or(0),
        max_inputs: f.inputs,
        epochs,
        seed: f.seed,
        device: f.device,
        records,
        ..Default::default()
    };
    let bar = progress::epochs(epochs as u64, show);
    let (model, report) =
        baler::model::train::fit_table(&sample, spec, options, &specs, raw, &opts, |e, t, v| {
            bar.set_position(e as u64 + 1);
            bar.set_message(format!("loss {t:.2e} / held-out {v:.2e}"));
        })?;
    bar.finish_and_clear();
    if show && model.active_columns() > 0 {
        eprintln!(
            "trained on {} records ({}, {:.1} s): {} of {width} columns predicted, {} parameters, held-out loss {:.3e} after {} epochs",
            report.records,
            report.device,
            report.seconds,
            model.active_columns(),
            model.parameters(),
            report
                .val_loss
                .iter()
                .cloned()
                .fold(f32::INFINITY, f32::min),
            report.val_loss.len()
        );
    }
    Ok((model, report))
}

/// A JSON string literal.
pub(super) fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// What a model's input `i` is: a column's name, or a derived feature of named columns.
pub(super) fn input_name(
    model: &baler::model::Model,
    i: u32,
    name: &dyn Fn(usize) -> String,
) -> String {
    let (i, width) = (i as usize, model.columns.len());
    if i < width {
        name(i)
    } else {
        let f = &model.features[i - width];
        let args: Vec<String> = f.args.iter().map(|&a| name(a as usize)).collect();
        f.op.describe(&args)
    }
}

/// What training did, as JSON: the loss curve (training and held-out loss per epoch, MSE in
/// normalized units), the coding order, and per column its inputs, hidden units and the share
/// of its variance left unexplained on held-out records.
fn training_json(
    model: &baler::model::Model,
    report: &baler::model::train::TrainReport,
    names: &[String],
) -> String {
    let width = model.columns.len();
    let name = |j: usize| names.get(j).cloned().unwrap_or_else(|| format!("col{j}"));
    let num = |v: f64| {
        if v.is_finite() {
            format!("{v:e}")
        } else {
            "null".into()
        }
    };
    let epochs: Vec<String> = report
        .train_loss
        .iter()
        .zip(&report.val_loss)
        .enumerate()
        .map(|(e, (t, v))| {
            format!(
                "{{\"epoch\": {}, \"train_loss\": {}, \"val_loss\": {}}}",
                e + 1,
                num(f64::from(*t)),
                num(f64::from(*v))
            )
        })
        .collect();
    let order: Vec<String> = model
        .order
        .iter()
        .map(|&j| json_str(&name(j as usize)))
        .collect();
    let columns: Vec<String> = (0..width)
        .map(|j| {
            let c = &model.columns[j];
            let inputs: Vec<String> = c
                .inputs
                .iter()
                .map(|&i| json_str(&input_name(model, i, &name)))
                .collect();
            format!(
                "{{\"name\": {}, \"inputs\": [{}], \"hidden\": {}, \"unexplained\": {}}}",
                json_str(&name(j)),
                inputs.join(", "),
                c.hidden,
                report.explained[j].map_or("null".into(), |v| num(f64::from(v)))
            )
        })
        .collect();
    format!(
        "{{\n  \"records\": {},\n  \"device\": {},\n  \"seconds\": {:.3},\n  \"epochs\": [\n    {}\n  ],\n  \"order\": [{}],\n  \"columns\": [\n    {}\n  ]\n}}\n",
        report.records,
        json_str(&report.device.to_string()),
        report.seconds,
        epochs.join(",\n    "),
        order.join(", "),
        columns.join(",\n    ")
    )
}

/// `baler train`.
pub fn train(args: super::args::TrainArgs) -> Result<()> {
    let mut codec = args.codec;
    codec.model = "none".into();
    let (mut input, spec, options) = open_input(&args.input, &codec, false, false)?;
    if spec.layout != Layout::Table {
        bail!(
            "{}: the learned predictor is for tables (rows × columns); this input is a field",
            input.name
        );
    }
    // The model, and beside it the loss curve and what each column reads: all three reserved
    // (refused if they exist, without --force) before training, and written under temporary
    // names renamed only once all are complete.
    let out = Path::new(&args.output);
    let mut curve = out.as_os_str().to_owned();
    curve.push(".json");
    let curve = PathBuf::from(curve);
    let png = curve.with_extension("png");
    for p in [out, &curve, &png] {
        refuse_input_as_output(&args.input, p)?;
    }
    let reserved = [out, curve.as_path(), png.as_path()].map(|p| OutputPath::new(p, args.force));
    let [out_model, out_curve, out_png] = reserved;
    let (out_model, out_curve, out_png) = (out_model?, out_curve?, out_png?);
    // A model trained once for many files: the thorough defaults unless --effort says
    // otherwise (then the sample and epochs `compress` would train at that level), and
    // networks kept wherever they predict better (their weights are paid once).
    let f = &codec.train;
    let (sample, epochs) = match codec.effort {
        None => (200_000, 12),
        Some(effort) => {
            let b = baler::model::budget::TrainBudget::new(effort, spec.shape[0]);
            if b.sample == 0 && f.sample.is_none() {
                bail!(
                    "--effort {effort} trains no model (it compresses with the plain and neighbour predictors): give 2 or more, or leave --effort out for train's thorough defaults"
                );
            }
            (b.sample, b.epochs)
        }
    };
    let budget = (
        f.sample.unwrap_or(sample),
        f.epochs.unwrap_or(epochs),
        Some(u64::MAX),
    );
    let (model, report) = train_on(&mut input, &spec, &options, &codec, budget, !args.quiet)?;
    if model.active_columns() == 0 {
        bail!(
            "{}: no column could be predicted from the others (too few records, or nothing to learn)",
            input.name
        );
    }
    model
        .save(out_model.tmp())
        .with_context(|| format!("writing {}", out.display()))?;
    std::fs::write(
        out_curve.tmp(),
        training_json(&model, &report, &spec.column_names),
    )
    .with_context(|| format!("writing {}", curve.display()))?;
    super::plots::loss_curve(out_png.tmp(), &report.train_loss, &report.val_loss)
        .with_context(|| format!("writing {}", png.display()))?;
    for o in [out_model, out_curve, out_png] {
        let name = o.path().display().to_string();
        o.commit().with_context(|| format!("writing {name}"))?;
    }
    if !args.quiet {
        eprintln!(
            "{} -> {}: {} bytes",
            input.name,
            out.display(),
            model.to_bytes().len() + 14
        );
    }
    Ok(())
}

/// The file an input argument reads: `FILE.h5:/dataset` reads `FILE.h5`.
fn input_file(arg: &str) -> &str {
    baler::io::hdf5::split_dataset_path(arg).map_or(arg, |(f, _)| f)
}

/// Refuses an output that is the file the input argument reads (standard input has none).
fn refuse_input_as_output(input: &str, output: &Path) -> Result<()> {
    if input != "-" {
        baler::io::output::refuse_input_as_output(Path::new(input_file(input)), output)?;
    }
    Ok(())
}

enum Target {
    File(PathBuf),
    Stdout,
}

impl Target {
    /// Refuses a terminal for standard output.
    fn refuse_terminal(&self) -> Result<()> {
        if matches!(self, Target::Stdout) && io::stdout().is_terminal() {
            bail!(
                "refusing to write compressed data to a terminal; use -o FILE or redirect standard output"
            );
        }
        Ok(())
    }

    /// Opens a container output: a file under a temporary name until committed, or standard
    /// output.
    fn open(&self, force: bool) -> Result<Sink> {
        Ok(match self {
            Target::File(path) => Sink::File(OutputFile::create(path, force)?),
            Target::Stdout => Sink::Stdout(Named::new(
                BufWriter::with_capacity(1 << 20, io::stdout()),
                "standard output",
            )),
        })
    }

    /// The output's name in summaries.
    fn name(&self) -> String {
        match self {
            Target::File(path) => path.display().to_string(),
            Target::Stdout => "<stdout>".to_string(),
        }
    }
}

/// A container output being written (see [`Target::open`]).
enum Sink {
    File(OutputFile),
    Stdout(Named<BufWriter<io::Stdout>>),
}

impl Sink {
    /// Completes the output: a file is synced and renamed into place (standard output was
    /// flushed by the container writer).
    fn commit(self) -> Result<()> {
        if let Sink::File(f) = self {
            let name = f.path().display().to_string();
            f.commit().with_context(|| format!("writing {name}"))?;
        }
        Ok(())
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::File(f) => f.write(buf),
            Sink::Stdout(s) => s.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::File(f) => f.write_all(buf),
            Sink::Stdout(s) => s.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::File(f) => f.flush(),
            Sink::Stdout(s) => s.flush(),
        }
    }
}

pub fn compress(args: CompressArgs) -> Result<()> {
    if args.plan.is_some() {
        return compress_planned(args);
    }
    let started = Instant::now();
    let (input, spec, mut options) =
        open_input(&args.input, &args.codec, show_progress(args.quiet), true)?;
    let target = match args.output.as_deref() {
        Some("-") => Target::Stdout,
        Some(p) => Target::File(p.into()),
        None if args.input == "-" => Target::Stdout,
        // FILE.h5:/dataset -> FILE.h5.baler
        None => Target::File(format!("{}.baler", input_file(&args.input)).into()),
    };
    target.refuse_terminal()?;
    if let Target::File(out) = &target {
        refuse_input_as_output(&args.input, out)?;
    }

    // A `rel` bound needs each column's range: a file gets a fast pre-pass for it (done by
    // `open_input` while the model trained). Otherwise (and for streams) the statistics come
    // from the first chunks, and the input is read once.
    if options.stats.is_none() && input.can_scan() && options.bounds.needs_range() {
        let columns = spec.bound_columns();
        options.stats = Some(
            input
                .scan_stats(columns, resolve_threads(options.threads))
                .with_context(|| format!("scanning {} for value ranges", input.name))?,
        );
    }
    let name = input.name.clone();
    let total = input.data_bytes;
    let bar = progress::bar(total, show_progress(args.quiet), "compressing");
    let reader = Counting {
        inner: input.into_reader(),
        bar: bar.clone(),
    };

    let out = target.open(args.force)?;
    let f = run_compressor(Compressor::new(out, spec, options)?, reader, &name)?;
    let (finished_header, records, chunks, bytes_out) =
        (f.header, f.records, f.chunks, f.bytes_out);
    f.writer.commit()?;
    let out_name = target.name();
    bar.finish_and_clear();
    if !args.quiet {
        let bytes_in =
            records * finished_header.record_len * finished_header.spec.dtype.size() as u64;
        let secs = started.elapsed().as_secs_f64();
        let bounds = summarize_bounds(&finished_header);
        eprintln!(
            "{name} -> {out_name}: {} -> {} ({:.2}x), {records} records in {chunks} chunks, {bounds}, {:.2} s ({:.0} MB/s)",
            progress::size(bytes_in),
            progress::size(bytes_out),
            bytes_in as f64 / bytes_out.max(1) as f64,
            secs,
            bytes_in as f64 / 1e6 / secs.max(1e-9),
        );
    }
    Ok(())
}

/// `baler plan`: the range pass and the training, once, for every shard of a cluster job.
pub fn plan(args: PlanArgs) -> Result<()> {
    let started = Instant::now();
    let show = show_progress(args.quiet);
    if args.input == "-" {
        bail!(
            "a plan is made for a file, which every shard then reads its part of; standard \
             input cannot be planned (compress it in one process with `baler compress -`)"
        );
    }
    let out = PathBuf::from(
        args.output
            .clone()
            .unwrap_or_else(|| format!("{}.baler-plan", input_file(&args.input))),
    );
    refuse_input_as_output(&args.input, &out)?;
    let reserved = OutputPath::new(&out, args.force)?;
    let (input, spec, options) = open_input(&args.input, &args.codec, show, false)?;
    let fingerprint = input.fingerprint()?;
    let stats = input
        .scan_stats(spec.bound_columns(), resolve_threads(options.threads))
        .with_context(|| format!("scanning {} for value ranges", input.name))?;
    let plan = baler::Plan::new(spec, &options, stats, fingerprint)
        .with_context(|| format!("planning {}", input.name))?;
    std::fs::write(reserved.tmp(), plan.to_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    reserved
        .commit()
        .with_context(|| format!("writing {}", out.display()))?;
    if !args.quiet {
        let h = &plan.header;
        let model = match h.model.len() {
            0 => "no learned predictor".to_string(),
            n => format!("a learned predictor of {}", progress::size(n as u64)),
        };
        eprintln!(
            "{} -> {}: {} records in {} chunks of {}, {}, {model}, {:.2} s\n\
             next: baler compress {} --plan {} --shard I/N (I = 0..N-1), then baler concat \
             SHARDS... -o OUT",
            input.name,
            out.display(),
            plan.records(),
            plan.chunks(),
            plan.chunk_records,
            summarize_bounds(h),
            started.elapsed().as_secs_f64(),
            args.input,
            out.display()
        );
    }
    Ok(())
}

/// The shard number and count from a job's environment (`--shard-from-env`): a Slurm array
/// task, a Slurm task, an Open MPI or a PMI rank; `shards` overrides the count.
fn shard_from_env(shards: Option<u32>) -> Result<(u32, u32)> {
    let get = |k: &str| -> Result<Option<u64>> {
        match std::env::var(k) {
            Ok(v) => v
                .trim()
                .parse::<u64>()
                .map(Some)
                .with_context(|| format!("{k}={v} is not a number")),
            Err(_) => Ok(None),
        }
    };
    let (from, i, n) = if let Some(id) = get("SLURM_ARRAY_TASK_ID")? {
        let min = get("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let step = get("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
        let n = get("SLURM_ARRAY_TASK_COUNT")?;
        ("SLURM_ARRAY_TASK_ID", id.saturating_sub(min) / step, n)
    } else if let Some(id) = get("SLURM_PROCID")? {
        ("SLURM_PROCID", id, get("SLURM_NTASKS")?)
    } else if let Some(id) = get("OMPI_COMM_WORLD_RANK")? {
        ("OMPI_COMM_WORLD_RANK", id, get("OMPI_COMM_WORLD_SIZE")?)
    } else if let Some(id) = get("PMI_RANK")? {
        ("PMI_RANK", id, get("PMI_SIZE")?)
    } else {
        bail!(
            "--shard-from-env: none of SLURM_ARRAY_TASK_ID, SLURM_PROCID, OMPI_COMM_WORLD_RANK \
             or PMI_RANK is set (not inside a job?); give --shard I/N"
        );
    };
    let n = match (shards, n) {
        (Some(n), _) => u64::from(n),
        (None, Some(n)) => n,
        (None, None) => {
            bail!("--shard-from-env: {from} is set but not the task count; give --shards N")
        }
    };
    if n == 0 || i >= n || n > u64::from(u32::MAX) {
        bail!("--shard-from-env: {from} gives shard {i} of {n}: shards are numbered 0 to N-1");
    }
    Ok((i as u32, n as u32))
}

/// `-o` of a shard with `{i}` and `{n}` replaced, or the default name (numbers padded so that
/// the names sort in shard order).
fn shard_output(output: Option<&str>, input: &str, (i, n): (u32, u32)) -> String {
    let width = (n - 1).to_string().len();
    match output {
        Some(o) => o
            .replace("{i}", &i.to_string())
            .replace("{n}", &n.to_string()),
        None => format!("{}.baler.shard-{i:0width$}-of-{n}", input_file(input)),
    }
}

/// `baler compress --plan PLAN [--shard I/N]`.
fn compress_planned(args: CompressArgs) -> Result<()> {
    let started = Instant::now();
    let plan_path = args.plan.as_deref().expect("a plan");
    let plan = baler::Plan::load(plan_path)?;
    let h = &plan.header;
    if args.input == "-" {
        bail!("a plan compresses the file it was made from; standard input is not a file");
    }
    // The input as the plan read it: raw values of its type and shape, its HDF5 dataset.
    let mut raw = args.codec.source.raw_format()?;
    if h.source == SourceFormat::Raw && raw.dtype.is_none() && raw.shape.is_none() {
        raw.dtype = Some(h.spec.dtype);
        raw.shape = Some(h.spec.shape.iter().map(|&d| d as i64).collect());
    }
    if matches!(h.source, SourceFormat::Hdf5 | SourceFormat::Hdf5Compound)
        && raw.dataset.is_none()
        && baler::io::hdf5::split_dataset_path(&args.input).is_none()
    {
        raw.dataset = h.source_path.clone();
    }
    let input = Input::open(&args.input, &raw)?;
    let spec = input.spec(Some(h.spec.layout), h.spec.column_names.clone())?;
    plan.check_input(&spec, &input.fingerprint()?)
        .with_context(|| format!("compressing with the plan {}", plan_path.display()))?;
    let shard = match (args.shard, args.shard_from_env) {
        (Some(s), _) => Some(s),
        (None, true) => Some(shard_from_env(args.shards)?),
        (None, false) => None,
    };
    let range = shard.map(|(i, n)| plan.shard(i, n)).transpose()?;
    let target = match (&range, args.output.as_deref()) {
        (_, Some("-")) => Target::Stdout,
        (Some(r), o) => Target::File(shard_output(o, &args.input, (r.index, r.count)).into()),
        (None, Some(p)) => Target::File(p.into()),
        (None, None) => Target::File(format!("{}.baler", input_file(&args.input)).into()),
    };
    target.refuse_terminal()?;
    if let Target::File(out) = &target {
        refuse_input_as_output(&args.input, out)?;
    }
    let record_len = h.record_len;
    let (first, records) = range.map_or((0, plan.records()), |r| (r.first_record, r.records));
    let reader = input.range_reader(first * record_len, records * record_len)?;
    let bytes_in = records * record_len * spec.dtype.size() as u64;
    let bar = progress::bar(Some(bytes_in), show_progress(args.quiet), "compressing");
    let reader = Counting {
        inner: reader,
        bar: bar.clone(),
    };
    let name = input.name.clone();
    let out = target.open(args.force)?;
    let c = Compressor::with_plan(out, &plan, range, args.codec.threads)?;
    let f = run_compressor(c, reader, &name)?;
    let (bytes_out, chunks) = (f.bytes_out, f.chunks);
    f.writer.commit()?;
    let out_name = target.name();
    bar.finish_and_clear();
    if !args.quiet {
        let part = range.map_or(String::new(), |r| {
            format!(
                " [shard {} of {}: records {}..{}]",
                r.index,
                r.count,
                r.first_record,
                r.first_record + r.records
            )
        });
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "{name}{part} -> {out_name}: {} -> {} ({:.2}x), {records} records in {chunks} chunks, {}, {:.2} s ({:.0} MB/s)",
            progress::size(bytes_in),
            progress::size(bytes_out),
            bytes_in as f64 / bytes_out.max(1) as f64,
            summarize_bounds(h),
            secs,
            bytes_in as f64 / 1e6 / secs.max(1e-9),
        );
    }
    Ok(())
}

/// `baler concat`: the shards of one plan joined into one container.
pub fn concat(args: ConcatArgs) -> Result<()> {
    let started = Instant::now();
    let out = PathBuf::from(&args.output);
    let mut shards = Vec::with_capacity(args.shards.len());
    for name in &args.shards {
        if args.output != "-" && baler::io::output::same_file(Path::new(name), &out) {
            bail!("{name} is both a shard and the output");
        }
        let f = File::open(name).with_context(|| format!("cannot open {name}"))?;
        shards.push(baler::shard::ShardFile::open(name, f)?);
    }
    let bytes_in: u64 = shards.iter().map(|s| s.size()).sum();
    let n = shards.len();
    let target = if args.output == "-" {
        Target::Stdout
    } else {
        Target::File(out)
    };
    target.refuse_terminal()?;
    // (Coverage is checked before anything is written; a refused join leaves no file.)
    let j = baler::shard::concat(shards, target.open(args.force)?)?;
    let (records, chunks, bytes_out, header) = (j.records, j.chunks, j.bytes_out, j.header);
    j.writer.commit()?;
    if !args.quiet {
        let raw = records * header.record_len * header.spec.dtype.size() as u64;
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "{n} shards ({}) -> {}: {records} records in {chunks} chunks, {} ({:.2}x), {:.2} s ({:.0} MB/s)",
            progress::size(bytes_in),
            target.name(),
            progress::size(bytes_out),
            raw as f64 / bytes_out.max(1) as f64,
            secs,
            bytes_in as f64 / 1e6 / secs.max(1e-9)
        );
    }
    Ok(())
}

pub(super) fn summarize_bounds(h: &baler::Header) -> String {
    let first = h.bounds[0];
    if h.bounds.iter().all(|b| b.spec == first.spec) {
        match first.spec {
            BoundSpec::Rel(r) if h.bounds.len() > 1 => format!("bound rel:{r:e} per column"),
            _ => format!("bound {first}"),
        }
    } else {
        format!("{} column bounds", h.bounds.len())
    }
}

fn run_compressor<W: Write + Send + 'static, R: Read>(
    mut c: Compressor<W>,
    reader: R,
    name: &str,
) -> Result<Finished<W>> {
    c.read_from(reader)
        .with_context(|| format!("reading {name}"))?;
    c.finish_detailed()
        .with_context(|| format!("compressing {name}"))
}

pub fn decompress(args: DecompressArgs) -> Result<()> {
    let started = Instant::now();
    // OUT.h5:/group/dataset names the dataset to write.
    let (output, out_dataset) = match args.output.as_deref() {
        Some(o) => {
            let (file, ds) = baler::io::hdf5::split_output_path(o);
            (Some(file), ds.map(str::to_string))
        }
        None => (None, None),
    };
    let target = match output {
        Some("-") => Target::Stdout,
        Some(p) => Target::File(p.into()),
        None if args.input == "-" => Target::Stdout,
        None => match args.input.strip_suffix(".baler") {
            Some(stem) if !stem.is_empty() => Target::File(stem.into()),
            _ => bail!(
                "cannot name the output of {}: it does not end in .baler; use -o FILE (or -o - for standard output)",
                args.input
            ),
        },
    };
    let size_in = if args.input == "-" {
        None
    } else {
        std::fs::metadata(&args.input).ok().map(|m| m.len())
    };
    let reader: Box<dyn Read + Send> = if args.input == "-" {
        Box::new(io::BufReader::with_capacity(1 << 20, io::stdin()))
    } else {
        let f = File::open(&args.input).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open {}: {}", args.input, baler::io::io_reason(&e)),
            )
        })?;
        Box::new(io::BufReader::with_capacity(1 << 20, f))
    };
    let options = baler::DecompressOptions {
        threads: args.threads,
        memory_limit: args.memory_limit as u64,
    };
    let d = Decompressor::with_options(reader, options)
        .with_context(|| format!("reading {}", args.input))?;
    let header = d.header().clone();
    let total = header
        .spec
        .len()
        .map(|n| n * header.spec.dtype.size() as u64);
    let bar = progress::bar(total, show_progress(args.quiet), "decompressing");
    let written = match &target {
        Target::File(path) => {
            let format = ValueFormat::from_extension(path).unwrap_or(match header.source {
                SourceFormat::Npy => ValueFormat::Npy,
                SourceFormat::Hdf5 | SourceFormat::Hdf5Compound => ValueFormat::Hdf5,
                _ => ValueFormat::Raw,
            });
            refuse_input_as_output(&args.input, path)?;
            if format == ValueFormat::Hdf5 {
                let dataset = out_dataset
                    .as_deref()
                    .or(header.source_path.as_deref())
                    .unwrap_or("/data");
                write_hdf5(d, path, dataset, args.force, &bar, &args.input)?
            } else {
                let out = OutputFile::create(path, args.force)?;
                let mut w =
                    ValueWriter::new(out, format, header.spec.dtype, header.spec.shape.clone())?;
                let n = drain(d, &mut w, &bar, &args.input)?;
                w.finish_seekable()
                    .with_context(|| format!("decompressing {}", args.input))?
                    .commit()
                    .with_context(|| format!("writing {}", path.display()))?;
                n
            }
        }
        Target::Stdout => {
            let out = Named::new(
                BufWriter::with_capacity(1 << 20, io::stdout().lock()),
                "standard output",
            );
            let mut w = ValueWriter::new(
                out,
                ValueFormat::Raw,
                header.spec.dtype,
                header.spec.shape.clone(),
            )?;
            let n = drain(d, &mut w, &bar, &args.input)?;
            w.finish()
                .with_context(|| format!("decompressing {}", args.input))?;
            n
        }
    };
    bar.finish_and_clear();
    if !args.quiet {
        let secs = started.elapsed().as_secs_f64();
        let out_name = match &target {
            Target::File(p) => p.display().to_string(),
            Target::Stdout => "<stdout>".into(),
        };
        eprintln!(
            "{} -> {out_name}: {} -> {}, {:.2} s ({:.0} MB/s)",
            args.input,
            size_in.map_or("?".into(), progress::size),
            progress::size(written),
            secs,
            written as f64 / 1e6 / secs.max(1e-9)
        );
    }
    Ok(())
}

/// Writes the decoded values as one dataset of a new HDF5 file: a table's column names become
/// its `columns` attribute, or its fields when it came from a compound dataset.
#[cfg(feature = "hdf5")]
fn write_hdf5<R: Read + Send + 'static>(
    d: Decompressor<R>,
    path: &Path,
    dataset: &str,
    force: bool,
    bar: &ProgressBar,
    name: &str,
) -> Result<u64> {
    use baler::io::hdf5::{DatasetSpec, H5Writer};
    let header = d.header().clone();
    let spec = &header.spec;
    let out = baler::io::output::OutputPath::new(path, force)?;
    let mut w = H5Writer::create(
        out,
        &DatasetSpec {
            path: dataset,
            dtype: spec.dtype,
            shape: &spec.shape,
            columns: if spec.layout == Layout::Table {
                &spec.column_names
            } else {
                &[]
            },
            compound: header.source == SourceFormat::Hdf5Compound,
        },
    )?;
    let n = drain(d, &mut w, bar, name)?;
    let target = w.name().to_string();
    w.finish().with_context(|| format!("writing {target}"))?;
    Ok(n)
}

#[cfg(not(feature = "hdf5"))]
fn write_hdf5<R: Read + Send + 'static>(
    _d: Decompressor<R>,
    path: &Path,
    _dataset: &str,
    _force: bool,
    _bar: &ProgressBar,
    _name: &str,
) -> Result<u64> {
    bail!(
        "{} is an HDF5 output, but this baler was built without HDF5 support; rebuild it with \
         the default features, or write .npy or raw values",
        path.display()
    )
}

/// Writes every decoded chunk; returns the bytes of values written.
fn drain<R: Read + Send + 'static>(
    mut d: Decompressor<R>,
    w: &mut dyn ValueSink,
    bar: &ProgressBar,
    name: &str,
) -> Result<u64> {
    let mut bytes = 0u64;
    while let Some(chunk) = d
        .next_chunk()
        .with_context(|| format!("decompressing {name}"))?
    {
        let b = chunk.as_le_bytes();
        w.write_le(&b)
            .with_context(|| format!("decompressing {name}"))?;
        bytes += b.len() as u64;
        bar.inc(b.len() as u64);
        drop(b);
        d.recycle(chunk);
    }
    d.finish()
        .with_context(|| format!("decompressing {name}"))?;
    Ok(bytes)
}

pub fn bench(args: BenchArgs) -> Result<()> {
    let (input, spec, mut options) = open_input(&args.input, &args.codec, false, false)?;
    let name = input.name.clone();
    let dtype = input.dtype;
    let len = input
        .data_bytes
        .context("bench needs an input of known size")?;
    let mut bytes = Vec::with_capacity(len as usize);
    input
        .into_reader()
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {name}"))?;
    if bytes.len() as u64 != len {
        bail!("{name}: expected {len} bytes, read {}", bytes.len());
    }
    let data = match dtype {
        DType::F32 => baler::ArrayData::F32(bytemuck::pod_collect_to_vec(&bytes)),
        DType::F64 => baler::ArrayData::F64(bytemuck::pod_collect_to_vec(&bytes)),
    };
    drop(bytes);
    let threads = resolve_threads(args.codec.threads);
    options.threads = threads;
    let repeat = args.repeat.max(1);
    let mut packed = Vec::new();
    let mut best_c = f64::INFINITY;
    for _ in 0..repeat {
        let t = Instant::now();
        packed =
            baler::with_array!(&data, v => baler::compress_slice(v.as_slice(), &spec, &options))?;
        best_c = best_c.min(t.elapsed().as_secs_f64());
    }
    // In memory, as the compression: the one-shot decompression into a new array
    // (`decompress_to_vec`, as the Python module's `decompress` decodes), as SZ3's
    // decompression returns a new array; on the threads asked.
    let mut best_d = f64::INFINITY;
    let mut decoded = None;
    for _ in 0..repeat {
        drop(decoded.take());
        let t = Instant::now();
        decoded = Some(baler::decompress_to_vec_with_threads(&packed, threads)?);
        best_d = best_d.min(t.elapsed().as_secs_f64());
    }
    let (header, decoded) = decoded.expect("at least one run");
    let worst = worst_error_ratio(&data, &decoded, &header)?;
    let mb = len as f64 / 1e6;
    let ratio = len as f64 / packed.len() as f64;
    if args.json {
        println!(
            "{{\"file\": {name:?}, \"bytes\": {len}, \"compressed\": {}, \"ratio\": {ratio}, \"comp_MBps\": {}, \"decomp_MBps\": {}, \"threads\": {threads}, \"max_err_over_bound\": {worst}}}",
            packed.len(),
            mb / best_c,
            mb / best_d
        );
    } else {
        println!(
            "{name}: {} -> {} ({ratio:.3}x), compress {:.0} MB/s, decompress {:.0} MB/s, {threads} threads, worst error/bound {worst:.6}",
            progress::size(len),
            progress::size(packed.len() as u64),
            mb / best_c,
            mb / best_d,
        );
    }
    Ok(())
}

/// Checks every value against its column's bound; returns the worst |error| / bound.
fn worst_error_ratio(
    orig: &baler::ArrayData,
    back: &baler::ArrayData,
    h: &baler::Header,
) -> Result<f64> {
    fn go<T: baler::Element>(a: &[T], b: &[T], h: &baler::Header) -> Result<f64> {
        let width = if h.spec.layout == Layout::Table {
            h.record_len as usize
        } else {
            1
        };
        let mut worst = 0.0f64;
        for j in 0..width {
            let bound = h.bounds[j].bound;
            let col_a: Vec<T> = a.iter().skip(j).step_by(width).copied().collect();
            let col_b: Vec<T> = b.iter().skip(j).step_by(width).copied().collect();
            if let Some((i, err)) = baler::residual::first_violation(&col_a, &col_b, bound) {
                bail!("BOUND VIOLATED: column {j}, value {i}: error {err:e} > bound {bound}");
            }
            if !bound.is_lossless() {
                for (x, y) in col_a.iter().zip(&col_b) {
                    if x.is_finite() {
                        worst = worst.max(bound.error_ratio(x.to_f64(), y.to_f64()));
                    }
                }
            }
        }
        Ok(worst)
    }
    match (orig, back) {
        (baler::ArrayData::F32(a), baler::ArrayData::F32(b)) => go(a, b, h),
        (baler::ArrayData::F64(a), baler::ArrayData::F64(b)) => go(a, b, h),
        _ => bail!("decoded type differs from the input"),
    }
}

/// `baler licenses`: baler's licence, then each notice of what is compiled or linked into
/// this binary: the plots' font, and HDF5's where the build script linked its static library
/// (a shared HDF5 carries its own).
pub fn licenses() -> String {
    let mut text = format!(
        "baler {}: Apache License, Version 2.0 (the LICENSE file of its source,\nhttps://www.apache.org/licenses/LICENSE-2.0). The Rust crates compiled in carry\npermissive licences (MIT, Apache-2.0, Zlib, Unicode-3.0; `cargo tree -e normal -f\n'{{p}} {{l}}'` lists them).\n\nThe plots' font, DejaVu Sans, is compiled in. Its notice:\n\n{}",
        env!("CARGO_PKG_VERSION"),
        include_str!("../assets/DejaVuSans.LICENSE")
    );
    match option_env!("BALER_HDF5_LINKED") {
        Some("static") => {
            let version = option_env!("BALER_HDF5_VERSION").unwrap_or("(version unknown)");
            text.push_str(&format!(
                "\nThis binary contains HDF5 {version}, linked statically. Its notice:\n\n"
            ));
            text.push_str(include_str!("../licenses/HDF5.txt"));
        }
        Some(_) => text.push_str(
            "\nHDF5 is loaded from the system's shared library, which carries its own notice.\n",
        ),
        None => text.push_str("\nThis binary is built without HDF5.\n"),
    }
    text
}
