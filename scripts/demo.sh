#!/usr/bin/env bash
# The main job on a bundled fixture: compress generator-level particles (a Delphes table) at a
# relative bound of 1e-3 per column, show the container, decompress, and check every value;
# then the same kind of table from an HDF5 file and back into one.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --quiet
b=target/release/baler
mkdir -p out
names=$(cat fixtures/delphes_16k.columns)
$b compress fixtures/delphes_16k.npy -o out/delphes_16k.baler --bound rel:1e-3 --names "$names" -f
$b info out/delphes_16k.baler
$b decompress out/delphes_16k.baler -o out/delphes_16k.npy -f
# In-memory round trip with a check of every value against its bound:
$b bench fixtures/delphes_16k.npy --bound rel:1e-3
# HDF5: a file written by h5py (column names in its `columns` attribute), back to a new .h5.
$b info fixtures/h5py_single.h5
$b compress fixtures/h5py_single.h5:/data -o out/single.baler --bound rel:1e-3 -f
$b decompress out/single.baler -o out/single.h5 -f
$b info out/single.h5:/data
