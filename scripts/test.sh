#!/usr/bin/env bash
# The test command: installs what a fresh Debian machine lacks, then builds baler and runs the
# whole suite (unit, property, CLI, corruption, fixture and memory tests, doc tests), release
# build. The memory test streams BALER_MEMORY_TEST_MIB MiB (default 1024) through the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo test --release
