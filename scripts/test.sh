#!/usr/bin/env bash
# The test command: installs what a fresh Debian machine lacks, then builds baler and runs the
# whole suite (unit, property, CLI, corruption, fixture, format and memory tests, doc tests),
# release build, then the cluster tests (tests/cluster/run.sh: a Python environment with Dask
# in target/cluster-venv) and the Python package's (scripts/test_python.sh: the wheel built with
# maturin from PyPI, installed into a fresh venv, pytest) and the HDF5 filter plugin's
# (tests/hdf5_filter/run.sh: h5py and Debian's hdf5-tools). The memory test streams BALER_MEMORY_TEST_MIB MiB (default 1024) through the
# binary.
#
#   scripts/test.sh          # everything (what CI runs)
#   scripts/test.sh --fast   # the fast tier, for the edit-test loop: unit tests, the format
#                            # fixtures, the real-data fixtures, the CLI, evaluate, streaming and shards
#                            # (about a minute once built; no property, corruption, HDF5 or
#                            # memory tests)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
if [[ ${1:-} == --fast ]]; then
  cargo test --release -p baler --lib --test fixtures --test streaming
  cargo test --release -p baler-cli --test format_compat --test cli --test evaluate --test shard
else
  cargo test --release
  # The cluster drivers end to end (Dask LocalCluster), with the release binary just built.
  cargo build --release --quiet
  tests/cluster/run.sh
  # The Python wheel (maturin), installed into a fresh venv, and its pytest suite.
  scripts/test_python.sh
  # The HDF5 filter plugin through h5py's HDF5 and Debian's h5dump / h5repack.
  tests/hdf5_filter/run.sh
fi
