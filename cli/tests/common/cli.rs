//! Running the real binary: success, failure with a message, pipes, temporary directories.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The binary, with HDF5 file locking off: a child inherits the descriptors of the HDF5 files
/// other test threads have open at the moment it is spawned, and with them their `flock` locks,
/// which would then refuse a later open of those files (`errno = 11`) until the child exits.
pub fn baler() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_baler"));
    c.env("HDF5_USE_FILE_LOCKING", "FALSE");
    c
}

pub fn run(args: &[&str]) -> Output {
    baler().args(args).output().expect("run baler")
}

pub fn ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "baler {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn fails(args: &[&str], code: i32, needle: &str) -> String {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "baler {args:?}: expected exit {code}, stderr: {err}"
    );
    assert!(
        err.contains(needle),
        "baler {args:?}: stderr lacks '{needle}': {err}"
    );
    assert!(!err.contains("panicked"), "panic: {err}");
    err
}

/// Runs baler with `input` on standard input; returns its standard output.
pub fn piped(args: &[&str], input: &[u8]) -> Vec<u8> {
    let out = piped_output(args, input);
    assert!(
        out.status.success(),
        "baler {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs baler with `input` on standard input (a write cut short by an early exit is fine);
/// returns its status and output, whatever they are.
pub fn piped_output(args: &[&str], input: &[u8]) -> Output {
    let mut child = baler()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn p(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}
