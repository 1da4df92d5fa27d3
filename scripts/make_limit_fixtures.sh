#!/usr/bin/env bash
# Writes fixtures/limits/: containers whose chunks are huge once decoded (constant values, a
# few kB coded), for the decoder's memory limit (cli/tests/memory.rs, cli/tests/cli.rs). Written once;
# they are valid files, so any later baler must decode them alike.
#   const_2x1GiB.baler  2 chunks of 2^28 f32 (1 GiB each)
#   const_16x64MiB.baler 16 chunks of 2^24 f32 (64 MiB each)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BALER:-target/release/baler}
out=fixtures/limits
mkdir -p "$out"
gen() { # values: how many f32 1.5 to write to stdout
  python3 -c "
import struct, sys
n = $1
blk = struct.pack('<f', 1.5) * (1 << 20)
for _ in range(n >> 20):
    sys.stdout.buffer.write(blk)
"
}
gen $((1 << 29)) | "$B" compress - --dtype f32 --shape -1 -b abs:0.1 --chunk-size 1G \
  -o "$out/const_2x1GiB.baler" -f -q
gen $((1 << 28)) | "$B" compress - --dtype f32 --shape -1 -b abs:0.1 --chunk-size 64M \
  -o "$out/const_16x64MiB.baler" -f -q
ls -l "$out"
