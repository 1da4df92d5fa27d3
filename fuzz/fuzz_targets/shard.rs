//! The files of a cluster job: a plan (`compress --plan`) and shards (`concat`). The first
//! input byte picks which: even, the rest is a plan, parsed and split into shards; odd, the rest
//! is a shard, opened and joined (alone) into a sink.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    if pick % 2 == 0 {
        if let Ok(plan) = baler::Plan::read_from(&mut &rest[..]) {
            let _ = plan.to_bytes();
            for n in [1, 3, 1000] {
                for i in [0, n / 2, n - 1] {
                    let _ = plan.shard(i, n);
                }
            }
        }
        return;
    }
    // ShardFile reads a file: the input goes to one in memory-backed /dev/shm where there is one.
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("baler-fuzz-shard-{}", std::process::id()));
    let mut f = std::fs::File::create(&path).expect("temporary file");
    f.write_all(rest).expect("write");
    drop(f);
    let file = std::fs::File::open(&path).expect("open");
    if let Ok(s) = baler::shard::ShardFile::open("fuzz", file) {
        let _ = baler::shard::concat(vec![s], std::io::sink());
    }
    let _ = std::fs::remove_file(&path);
});
