//! Command-line flags, parsed into plain structs.

use baler::{BoundSpec, Bounds, ColumnRef};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Error-bounded compression of large floating-point arrays.
///
/// Every value comes back within the bound you choose (abs:E, rel:R of the value range, or
/// lossless); NaN, ±Inf and -0.0 come back bit for bit.
#[derive(Debug, Parser)]
#[command(
    name = "baler",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Flush every output file to disk before renaming it into place, so it survives a crash
    /// of the machine right after baler returns (slower: milliseconds a file on a local disk,
    /// more on a network filesystem). Off by default, as in zstd and gzip: outputs still
    /// appear under their name only once complete, and a container cut short by a crash is
    /// refused as truncated.
    #[arg(long, global = true)]
    pub sync: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compress an array (.npy, an HDF5 dataset, raw values, or standard input) into a .baler
    /// container.
    #[command(visible_alias = "c")]
    Compress(CompressArgs),
    /// Decompress a .baler container to .npy, HDF5 or raw values.
    #[command(visible_alias = "d")]
    Decompress(DecompressArgs),
    /// Show what a .baler container holds (header, bounds, sizes, chunks), or a .npy file, or the
    /// datasets of an HDF5 file.
    Info(InfoArgs),
    /// Measure ratio and in-memory speed on a file (loaded whole into memory), checking the
    /// bound on every value.
    Bench(BenchArgs),
    /// Compare a .baler container with the array it was compressed from: per column the
    /// largest error against its bound, RMSE, PSNR, residual and relative response, and the
    /// ratio with the model's share. Both are streamed, in bounded memory.
    Evaluate(EvaluateArgs),
    /// Train a learned predictor for a table on a random sample of its records, reusable with
    /// `compress --model` on files of the same kind.
    Train(TrainArgs),
    /// Decide once how a file is compressed (value ranges, bounds, learned predictor, chunks)
    /// for `compress --plan PLAN --shard I/N` jobs on many machines, joined by `concat`.
    Plan(PlanArgs),
    /// Rewrite every float32/float64 dataset of an HDF5 file through baler's HDF5 filter (id
    /// 47646), keeping groups, attributes and every other dataset as they are: the bound
    /// options of `compress`, `rel` resolved on each dataset's (each column's) range.
    H5repack(H5RepackArgs),
    /// Join the shards of one plan into one container, copying their chunks (no
    /// recompression): the same bytes as `compress --plan` in one process.
    Concat(ConcatArgs),
    /// Print the licence of baler and the notices of what this binary links in (HDF5's, where
    /// it is linked statically), as a redistribution of the binary must carry them.
    Licenses,
}

/// `baler h5repack`.
#[derive(Debug, Args)]
pub struct H5RepackArgs {
    /// The HDF5 file to convert.
    pub input: String,

    /// The HDF5 file to write (refused if it exists, without -f).
    pub output: String,

    #[command(flatten)]
    pub bound_args: BoundArgs,

    /// A model file from `baler train`, stored in the filter parameters of every 2-D dataset
    /// with its number of columns (it must fit one: an error otherwise).
    #[arg(long, value_name = "FILE")]
    pub model: Option<std::path::PathBuf>,

    /// Target size of one HDF5 chunk of a converted dataset (K, M, G): whole rows of a table,
    /// slabs along the first axis of a field (a slab above twice the size is split along the
    /// next axis).
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = parse_size)]
    pub chunk_size: usize,

    /// Print only the equivalent `h5repack` command (values resolved from this input), and
    /// write nothing.
    #[arg(long)]
    pub print_h5repack: bool,

    /// Overwrite the output if it exists.
    #[arg(short, long)]
    pub force: bool,

    /// No summary.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `baler plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Input: a .npy file, an HDF5 dataset (FILE.h5:/dataset) or a raw file (with --dtype and
    /// --shape); not a stream (every shard reads its part of the file).
    pub input: String,
    /// The plan file to write [default: INPUT.baler-plan].
    #[arg(short, long, value_name = "PLAN")]
    pub output: Option<String>,
    #[command(flatten)]
    pub codec: CodecArgs,
    /// Overwrite the output if it exists.
    #[arg(short, long)]
    pub force: bool,
    /// No progress bar or summary.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `baler concat`.
#[derive(Debug, Args)]
pub struct ConcatArgs {
    /// The shards, in any order (written by `compress --plan PLAN --shard I/N`).
    #[arg(required = true, value_name = "SHARD")]
    pub shards: Vec<String>,
    /// The container to write, or - for standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: String,
    /// Overwrite the output if it exists.
    #[arg(short, long)]
    pub force: bool,
    /// No summary.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `--shard I/N`.
pub fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("'{s}' is not I/N (e.g. 3/16: the fourth of 16 shards)"))?;
    let i: u32 = i
        .trim()
        .parse()
        .map_err(|_| format!("'{i}' is not a shard number"))?;
    let n: u32 = n
        .trim()
        .parse()
        .map_err(|_| format!("'{n}' is not a shard count"))?;
    if n == 0 || i >= n {
        return Err(format!(
            "shard {i} of {n}: shards are numbered 0 to N-1 (N at least 1)"
        ));
    }
    Ok((i, n))
}

/// `baler evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// The original: a .npy file, an HDF5 dataset (FILE.h5:/dataset), a raw file (with --dtype
    /// and --shape; by default those of the container when it was compressed from raw values),
    /// or - for standard input.
    pub original: String,

    /// The .baler container compressed from it, or - for standard input.
    pub compressed: String,

    /// Also write every figure as JSON to this file (- for standard output).
    #[arg(long, value_name = "OUT")]
    pub json: Option<String>,

    /// Also draw PNG plots into this directory: per column the original and reconstructed
    /// distributions, the residual with the bound marked and the relative response; and an
    /// overview page.
    #[arg(long, value_name = "DIR")]
    pub plots: Option<std::path::PathBuf>,

    /// With --plots, also write every plot as SVG beside its PNG.
    #[arg(long, requires = "plots")]
    pub svg: bool,

    #[command(flatten)]
    pub source: SourceArgs,

    /// Decoding threads [default: one per core].
    #[arg(short = 'T', long, value_name = "N", default_value_t = 0)]
    pub threads: usize,

    /// Most memory the decoding may take for its chunks, e.g. 4G (K, M, G); a chunk needing
    /// more than half of it is refused, whatever the file claims.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_memory)]
    pub memory_limit: usize,

    /// No progress bar and no table (the JSON, errors and a bound violation are still written).
    #[arg(short, long)]
    pub quiet: bool,
}

/// `baler train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Input: a .npy file, an HDF5 dataset (FILE.h5:/dataset) or a raw file (with --dtype and
    /// --shape) holding a table.
    pub input: String,
    /// The model file to write.
    #[arg(short, long, value_name = "MODEL")]
    pub output: String,
    #[command(flatten)]
    pub codec: CodecArgs,
    /// Overwrite the output if it exists.
    #[arg(short, long)]
    pub force: bool,
    /// No progress bar or summary.
    #[arg(short, long)]
    pub quiet: bool,
}

/// How to train the learned predictor (`train`, and `compress` when it trains inline).
#[derive(Debug, Clone, Args)]
pub struct TrainFlags {
    /// Hidden units per predicted column (default: sized from the data so the model stays
    /// about 2% of the output).
    #[arg(long, value_name = "N")]
    pub hidden: Option<usize>,
    /// Most earlier columns each column is predicted from.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub inputs: usize,
    /// Most passes of the network over the sample, 0 for the linear parts alone (training
    /// stops earlier when the held-out loss stalls) [default: from --effort for compress, 12
    /// for train].
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,
    /// Records in the training sample, drawn uniformly from the whole file [default: from
    /// --effort for compress, 200000 for train].
    #[arg(long, value_name = "N")]
    pub sample: Option<usize>,
    /// Seed of the sample, the split, the initialization and the noise.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Where to train: cpu, or cuda / cuda:N for a GPU (a build with the `cuda` feature).
    /// Only training runs there; the file decodes the same on any machine.
    #[arg(long, value_name = "DEVICE", default_value = "cpu")]
    pub device: baler::model::train::TrainDevice,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LayoutArg {
    /// 2-D rows × columns, one bound per column.
    Table,
    /// Any array, one bound over all of it.
    Field,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DTypeArg {
    F32,
    F64,
}

/// How to read an input that does not describe itself, or which dataset of an HDF5 file:
/// shared by the commands that read arrays.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Element type of raw input.
    #[arg(long, value_enum)]
    pub dtype: Option<DTypeArg>,

    /// Shape of raw input, e.g. 1000,24 or -1,24 (-1: as many rows as the input holds).
    #[arg(long, value_name = "DIMS", allow_hyphen_values = true)]
    pub shape: Option<String>,

    /// The dataset of an HDF5 input, e.g. /group/data (or write FILE.h5:/group/data) [default:
    /// the file's only float dataset].
    #[arg(long, value_name = "PATH")]
    pub dataset: Option<String>,
}

impl SourceArgs {
    /// The flags as the library's [`RawFormat`](baler::io::RawFormat).
    pub fn raw_format(&self) -> baler::Result<baler::io::RawFormat> {
        Ok(baler::io::RawFormat {
            dtype: self.dtype.map(|d| match d {
                DTypeArg::F32 => baler::DType::F32,
                DTypeArg::F64 => baler::DType::F64,
            }),
            shape: self
                .shape
                .as_deref()
                .map(baler::io::parse_shape)
                .transpose()?,
            dataset: self.dataset.clone(),
        })
    }
}

/// The bound options: shared by `compress` (and every command that takes its flags) and
/// `h5repack`, so the bound language is the same everywhere.
#[derive(Debug, Args)]
pub struct BoundArgs {
    /// Error bound: abs:E (|x - x'| <= E), rel:R (E = R x value range, per column for tables),
    /// pwrel:R (|x - x'| <= R|x| for every value), bits:N (N mantissa bits: pwrel:2^-(N+1))
    /// or lossless. Required unless --bounds gives a default.
    #[arg(short, long, value_name = "SPEC")]
    pub bound: Option<BoundSpec>,

    /// Bounds per column from a file: lines `COLUMN SPEC` (a name, a glob such as Jet_*, or a
    /// 0-based index) and `default SPEC`; later lines win, # starts a comment. --bound, if
    /// given, replaces the file's default; --bound-col comes after the file.
    #[arg(long, value_name = "FILE")]
    pub bounds: Option<std::path::PathBuf>,

    /// Bound for columns of a table, as COL=SPEC with COL a 0-based index, a column name or a
    /// glob (repeatable), e.g. --bound-col 3=abs:0.5 --bound-col PID=lossless
    /// --bound-col 'Jet_*=bits:10'.
    #[arg(long = "bound-col", value_name = "COL=SPEC", value_parser = parse_column_bound)]
    pub bound_col: Vec<(ColumnRef, BoundSpec)>,
}

/// What to compress and how: shared by `compress` and `bench`.
#[derive(Debug, Args)]
pub struct CodecArgs {
    #[command(flatten)]
    pub bound_args: BoundArgs,

    /// table: 2-D rows x columns, bound per column; field: bound over the whole array
    /// [default: table for 2-D arrays, field otherwise].
    #[arg(long, value_enum)]
    pub layout: Option<LayoutArg>,

    #[command(flatten)]
    pub source: SourceArgs,

    /// Column names of a table, comma-separated (stored in the container, usable in --bound-col)
    /// [default: from the file, where it has them: an HDF5 `columns` attribute or compound fields].
    #[arg(long, value_name = "A,B,...")]
    pub names: Option<String>,

    /// Target size of a chunk of input (K, M, G suffixes) [default: 4M, and a table's chunks
    /// hold at least 16384 rows where up to 16M allows: each chunk pays a table per column].
    /// Given, it is the size used. Decoding takes about three times a chunk's size (f32; twice
    /// for f64) of the decompressor's --memory-limit, half of which one chunk may use: chunks
    /// above 170M of f32 need a limit above the default 1G to decompress.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub chunk_size: Option<usize>,

    /// Worker threads [default: one per core].
    #[arg(short = 'T', long, value_name = "N", default_value_t = 0)]
    pub threads: usize,

    /// Learned predictor for a table: `auto` trains one on a random sample of the input first
    /// (standard input: on its first records; kept only for the columns and chunks where it
    /// pays), `none` uses the plain and neighbour predictors only, or a model file from `baler
    /// train`.
    #[arg(long, value_name = "auto|none|FILE", default_value = "auto")]
    pub model: String,

    /// How hard to work on the learned predictor (`--model auto`), from 1 (none: fastest) to 9,
    /// like zstd's levels: 2 fits linear predictors on a small sample, 3 on a larger one, and
    /// from 4 on a network is trained too, given more of the input's records to learn from at
    /// each level (it costs time at both ends: its predictions are computed for every record
    /// when compressing and decompressing). --sample and --epochs, given, win. `train` uses
    /// the same budget where it is given (2 or more), and its own thorough one (200,000
    /// records, 12 epochs) where not [default: 3].
    #[arg(short = 'e', long, value_name = "1-9", value_parser = baler::model::budget::parse_effort)]
    pub effort: Option<u8>,

    #[command(flatten)]
    pub train: TrainFlags,
}

#[derive(Debug, Args)]
pub struct CompressArgs {
    /// Input: a .npy file, an HDF5 file (FILE.h5, or FILE.h5:/group/dataset), a raw file (with
    /// --dtype and --shape), or - for standard input.
    pub input: String,

    /// Output file, or - for standard output [default: INPUT.baler (for FILE.h5:/dataset,
    /// FILE.h5.baler); standard output when reading standard input].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<String>,

    #[command(flatten)]
    pub codec: CodecArgs,

    /// Compress as a plan from `baler plan` says (its bounds, model and chunks; the input must
    /// be the file it was made from): the whole file, or one shard of it with --shard.
    #[arg(long, value_name = "PLAN", conflicts_with_all = [
        "bound", "bounds", "bound_col", "layout", "names", "chunk_size", "model", "effort",
        "hidden", "inputs", "epochs", "sample", "seed", "device",
    ])]
    pub plan: Option<std::path::PathBuf>,

    /// Compress the I-th of N shards (from 0) of the plan's chunks, for `baler concat`; in -o,
    /// {i} and {n} stand for I and N [default output: INPUT.baler.shard-I-of-N].
    #[arg(long, value_name = "I/N", value_parser = parse_shard, requires = "plan")]
    pub shard: Option<(u32, u32)>,

    /// Take I (and N) from the job's environment: SLURM_ARRAY_TASK_ID (less
    /// SLURM_ARRAY_TASK_MIN, by SLURM_ARRAY_TASK_STEP) of SLURM_ARRAY_TASK_COUNT, SLURM_PROCID of
    /// SLURM_NTASKS, OMPI_COMM_WORLD_RANK of OMPI_COMM_WORLD_SIZE, or PMI_RANK of PMI_SIZE.
    #[arg(long, requires = "plan", conflicts_with = "shard")]
    pub shard_from_env: bool,

    /// N for --shard-from-env, where the environment's count is not the shard count.
    #[arg(long, value_name = "N", requires = "shard_from_env")]
    pub shards: Option<u32>,

    /// Overwrite the output if it exists.
    #[arg(short, long)]
    pub force: bool,

    /// No progress bar and no summary.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Input: a .npy file, an HDF5 dataset, or a raw file (with --dtype and --shape).
    pub input: String,

    #[command(flatten)]
    pub codec: CodecArgs,

    /// Runs of each direction; the best time counts.
    #[arg(short, long, value_name = "N", default_value_t = 3)]
    pub repeat: usize,

    /// Print one JSON object instead of a sentence.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DecompressArgs {
    /// A .baler container, or - for standard input.
    pub input: String,

    /// Output: .npy, HDF5 (.h5, .hdf5; OUT.h5:/group/dataset names the dataset) or raw (.raw,
    /// .bin) by extension, or - for raw values on standard output [default: INPUT without
    /// .baler; the dataset: the one compressed, or /data].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<String>,

    /// Worker threads [default: one per core].
    #[arg(short = 'T', long, value_name = "N", default_value_t = 0)]
    pub threads: usize,

    /// Most memory the decoding may take for its chunks, e.g. 4G (K, M, G); a chunk needing
    /// more than half of it is refused, whatever the file claims.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_memory)]
    pub memory_limit: usize,

    /// Overwrite the output if it exists.
    #[arg(short, long)]
    pub force: bool,

    /// No progress bar and no summary.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// A .baler container, a .npy file, or an HDF5 file (FILE.h5:/dataset for one dataset).
    pub file: String,

    /// Also list every chunk.
    #[arg(long)]
    pub chunks: bool,

    /// Also break the size down by column (reads the whole file).
    #[arg(long)]
    pub columns: bool,
}

/// Parses `COL=SPEC`.
pub fn parse_column_bound(s: &str) -> Result<(ColumnRef, BoundSpec), String> {
    let b = Bounds::new(BoundSpec::Lossless)
        .with_override_str(s)
        .map_err(|e| e.to_string())?;
    Ok(b.overrides[0].clone())
}

/// Parses a chunk size: `4M`, `512K`, `1G`, `4096` (4K to 1G).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let bytes = parse_bytes(s)?;
    if bytes as u64 > baler::container::MAX_CHUNK_BYTES {
        return Err(format!("size '{s}' is too large (at most 1G)"));
    }
    Ok(bytes)
}

/// Parses a memory size: `64M`, `4G`, `1.5G` (at least 4K).
pub fn parse_memory(s: &str) -> Result<usize, String> {
    parse_bytes(s)
}

/// Parses a byte count with an optional unit (K, M, G; KiB, MB and the like read alike).
fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let unit = t[i..].to_ascii_lowercase();
            let m = match unit.trim_end_matches("ib").trim_end_matches('b') {
                "" => 1,
                "k" => 1 << 10,
                "m" => 1 << 20,
                "g" => 1 << 30,
                _ => return Err(format!("unknown size unit in '{s}' (use K, M or G)")),
            };
            (&t[..i], m)
        }
        None => (t, 1),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid size '{s}'"))?;
    let bytes = (v * mult as f64) as usize;
    if !(v.is_finite() && v > 0.0) || bytes < 4096 {
        return Err(format!("size '{s}' is too small (at least 4K)"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1.5m"), Ok(3 << 19));
        assert_eq!(parse_size("8192"), Ok(8192));
        assert!(parse_size("10").is_err());
        assert!(parse_size("4Q").is_err());
        assert!(parse_size("2G").is_err());
    }

    #[test]
    fn flags_parse() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
