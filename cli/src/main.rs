//! The `baler` command line: flags in, library calls, a summary or an error out.
//!
//! A thin layer over the `baler` library (the repository's root package): clap, indicatif,
//! plotters and anyhow are this crate's dependencies, not the library's.

mod args;
mod commands;
mod evaluate;
mod h5repack;
mod info;
mod plots;
mod progress;

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

/// Large blocks on transparent huge pages (`baler::alloc`): a worker's first chunk writes its
/// scratch for the first time, and most chunks of the files users compress one by one are.
#[global_allocator]
static ALLOCATOR: baler::alloc::HugePages = baler::alloc::HugePages;

/// Runs the command line and returns the exit code: 0 ok, 1 error, 2 usage.
fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if let Err(e) = check_usage(&cli) {
        let _ = e.print();
        return ExitCode::from(2);
    }
    remove_outputs_on_signals();
    // Datasets written through baler's own HDF5 filter read without HDF5_PLUGIN_PATH (the
    // filter is linked in); a failure only means they need the plugin, as any filter does.
    // Registered only where an argument is an HDF5 file: initializing HDF5 would cost every
    // other command about a millisecond of start-up.
    #[cfg(feature = "hdf5")]
    if names_an_hdf5_file() {
        let _ = h5repack::register_filter();
    }
    baler::io::output::sync_outputs(cli.sync);
    let result = match cli.command {
        Command::Compress(a) => commands::compress(a),
        Command::Decompress(a) => commands::decompress(a),
        Command::Info(a) => info::info(a),
        Command::Bench(a) => commands::bench(a),
        Command::Train(a) => commands::train(a),
        Command::Evaluate(a) => evaluate::evaluate(a),
        Command::Plan(a) => commands::plan(a),
        Command::Concat(a) => commands::concat(a),
        Command::Licenses => {
            print!("{}", commands::licenses());
            Ok(())
        }
        Command::H5repack(a) => h5repack::h5repack(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = format!("baler: error: {e}");
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg.push_str(&format!(": {c}"));
                }
            }
            if let Some(hint) = hint(&e) {
                msg.push_str(&format!("\n  hint: {hint}"));
            }
            let _ = writeln!(io::stderr(), "{msg}");
            ExitCode::from(1)
        }
    }
}

/// Whether an argument is an existing HDF5 file (`FILE.h5` or `FILE.h5:/dataset`), by its
/// signature.
#[cfg(feature = "hdf5")]
fn names_an_hdf5_file() -> bool {
    std::env::args_os().skip(1).any(|a| {
        let Some(a) = a.to_str() else { return false };
        let path = baler::io::hdf5::split_dataset_path(a).map_or(a, |(f, _)| f);
        // Regular files only, checked before opening: opening a FIFO (an output given as a
        // named pipe) would wait for a writer.
        std::fs::metadata(path).is_ok_and(|m| m.is_file())
            && std::fs::File::open(path).is_ok_and(|f| baler::io::hdf5::has_signature(&f))
    })
}

/// On SIGINT, SIGTERM or SIGHUP, removes the temporary files of the outputs being written and
/// exits as the signal would (128 + its number), so an interrupted run leaves nothing behind.
fn remove_outputs_on_signals() {
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            return;
        };
        let _ = std::thread::Builder::new()
            .name("baler-signals".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    baler::io::output::remove_pending();
                    std::process::exit(128 + sig);
                }
            });
    }
}

/// What clap cannot say: a bound is required (`--bound`, or `--bounds` with a default) except
/// where a plan brings its own.
fn check_usage(cli: &Cli) -> Result<(), clap::Error> {
    use clap::CommandFactory;
    if let Command::Compress(a) = &cli.command {
        // (clap lets `requires = "plan"` pass when --plan would conflict with a flag given.)
        if a.plan.is_none() && (a.shard.is_some() || a.shard_from_env) {
            let mut cmd = Cli::command();
            let sub = cmd
                .find_subcommand_mut("compress")
                .expect("compress")
                .clone();
            return Err(sub.bin_name("baler compress").error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "--shard and --shard-from-env compress a shard of a plan: give --plan PLAN \
                 (from `baler plan INPUT --bound ...`)",
            ));
        }
    }
    let (name, bounds) = match &cli.command {
        Command::Compress(a) if a.plan.is_none() => ("compress", &a.codec.bound_args),
        Command::Bench(a) => ("bench", &a.codec.bound_args),
        Command::Train(a) => ("train", &a.codec.bound_args),
        Command::Plan(a) => ("plan", &a.codec.bound_args),
        Command::H5repack(a) => ("h5repack", &a.bound_args),
        _ => return Ok(()),
    };
    if bounds.bound.is_none() && bounds.bounds.is_none() {
        let mut cmd = Cli::command();
        let sub = cmd.find_subcommand_mut(name).expect("a subcommand").clone();
        return Err(sub.bin_name(format!("baler {name}")).error(
            clap::error::ErrorKind::MissingRequiredArgument,
            "a bound is required: --bound SPEC (e.g. --bound rel:1e-3), or --bounds FILE \
             with a 'default SPEC' line",
        ));
    }
    Ok(())
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<baler::Error>()
                .is_some_and(|e| e.is_broken_pipe())
    })
}

/// What the user can do about an error.
fn hint(e: &anyhow::Error) -> Option<&'static str> {
    let b = e
        .chain()
        .filter_map(|c| c.downcast_ref::<baler::Error>())
        .find(|b| !matches!(b, baler::Error::InFile { .. }))?;
    Some(match b {
        baler::Error::Truncated { .. } => {
            "the file is incomplete: was compression interrupted, or the copy cut short?"
        }
        baler::Error::ChunkChecksum { .. }
        | baler::Error::CorruptChunk { .. }
        | baler::Error::CorruptTrailer(_) => "the file is damaged: restore it from a good copy",
        baler::Error::MemoryLimit { .. } => {
            "files written with a large --chunk-size need more memory to decode; a damaged or \
             forged file may claim any size"
        }
        baler::Error::BadMagic => {
            "is this a .baler file? `baler info FILE` tells what a file holds"
        }
        _ => return None,
    })
}

/// Whether progress should be drawn.
fn show_progress(quiet: bool) -> bool {
    !quiet && io::stderr().is_terminal()
}
