#!/usr/bin/env bash
# An HDF5 round trip checked independently: compress a dataset, decompress it to a new .h5,
# and check the result with h5py and numpy (scripts/check_h5.py, in its own virtual
# environment: PyPI numpy and h5py).
#   scripts/h5_roundtrip.sh                                     # the shared Delphes table
#   scripts/h5_roundtrip.sh FILE.h5:/dataset rel:1e-4
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
input=${1:-../shared/data/hep_delphes_genparticles.h5:/data}
bound=${2:-rel:1e-3}
cargo build --release --quiet
venv=${BALER_H5_VENV:-/tmp/baler-h5-venv}
if ! "$venv/bin/python" -c 'import h5py, numpy' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q numpy h5py
fi
b=target/release/baler
mkdir -p out
$b compress "$input" --bound "$bound" -o out/h5_roundtrip.baler -f
$b decompress out/h5_roundtrip.baler -o out/h5_roundtrip.h5 -f
case $bound in
  rel:*) flag=(--rel "${bound#rel:}") ;;
  abs:*) flag=(--abs "${bound#abs:}") ;;
  *) flag=(--lossless) ;;
esac
"$venv/bin/python" scripts/check_h5.py "$input" out/h5_roundtrip.h5 "${flag[@]}"
