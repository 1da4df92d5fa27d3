#!/usr/bin/env bash
# The HDF5 filter plugin's tests (hdf5-filter/, libh5baler.so), end to end:
#   * builds the plugin (cargo build --release -p baler-hdf5-filter) and runs its unit tests;
#   * a fresh venv in target/h5filter-venv with h5py (from PyPI: its wheel bundles its own HDF5,
#     loaded RTLD_LOCAL by Python), NumPy and pytest;
#   * Debian's HDF5 command-line tools (h5dump, h5repack: hdf5-tools, HDF5 1.10), installed
#     with apt-get where missing;
#   * tests/hdf5_filter/test_filter.py with HDF5_PLUGIN_PATH=target/release: both HDF5 builds
#     load the same plugin file.
# Extra arguments go to pytest (e.g. -k corrupt).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup.sh
cargo build --release --quiet -p baler-hdf5-filter
cargo test --release --quiet -p baler-hdf5-filter

if ! command -v h5dump >/dev/null 2>&1 || ! command -v h5repack >/dev/null 2>&1; then
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  echo "hdf5 filter tests: installing hdf5-tools (apt-get)" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends hdf5-tools
fi

# A fresh venv each run, as on a new machine (BALER_H5_KEEP_VENV=1 reuses the last one).
venv=target/h5filter-venv
if [[ ${BALER_H5_KEEP_VENV:-0} != 1 ]] || ! "$venv/bin/python" -c 'import h5py, numpy, pytest' 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check h5py numpy pytest
fi
"$venv/bin/python" -c 'import h5py; print("h5py", h5py.version.version, "with HDF5", h5py.version.hdf5_version)'
h5dump --version

HDF5_PLUGIN_PATH=$PWD/target/release "$venv/bin/python" -m pytest -q tests/hdf5_filter "$@"
