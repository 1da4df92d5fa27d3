//! The threads baler parks between calls, and `release_scratch` letting them go: alone in its
//! own test binary, so the process's thread count is this test's.

#![cfg(target_os = "linux")]

use baler::{ArraySpec, BoundSpec, Bounds, CompressOptions, DType};

/// The process's threads, as the kernel counts them (what a `fork` after the call would see).
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
    line["Threads:".len()..].trim().parse().unwrap()
}

/// The process's threads once those already ended are counted out: the kernel wakes whoever
/// waits for a thread (`release_scratch` does) a little before it stops counting it, which
/// was seen to take up to 2 ms here. Waited for 200 ms at most, far less than the second a
/// parked thread waits before it leaves on its own, so a thread `release_scratch` did not
/// end is still counted.
fn threads_settled(expected: usize) -> usize {
    let start = std::time::Instant::now();
    loop {
        let n = threads();
        if n == expected || start.elapsed() > std::time::Duration::from_millis(200) {
            return n;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn released_threads_are_gone_and_calls_go_on() {
    let before = threads();
    let values: Vec<f32> = (0..300_000).map(|i| (i as f32 * 0.01).sin()).collect();
    let mut spec = ArraySpec::new(DType::F32, vec![600, 500]);
    spec.layout = baler::Layout::Field;
    let options = CompressOptions::new(Bounds::new(BoundSpec::Rel(1e-3))).threads(2);
    let first = baler::compress_slice(&values, &spec, &options).unwrap();
    assert!(
        threads() > before,
        "the call's threads stay parked for the next: {} then {}",
        before,
        threads()
    );
    baler::release_scratch();
    assert_eq!(threads_settled(before), before, "every parked thread ended");
    // Calls go on, with new threads, to the same bytes; released again, and again with
    // nothing parked.
    let again = baler::compress_slice(&values, &spec, &options).unwrap();
    assert_eq!(first, again);
    let (_, back) = baler::decompress_to_vec(&again).unwrap();
    assert_eq!(back.len(), values.len());
    baler::release_scratch();
    baler::release_scratch();
    assert_eq!(threads_settled(before), before);
}
