#!/usr/bin/env bash
# baler next to SZ3, ZFP, zstd, lz4 and fpzip on the same files, at the same bounds, in one run,
# with an independent check of every value. See scripts/compare.py for the options.
#   scripts/compare.sh                         # every .npy in ../shared/data
#   scripts/compare.sh ../shared/data/hep_delphes_genparticles.npy --rel 1e-3
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
py=$(../shared/peers/venv.sh)
exec "$py" scripts/compare.py "$@"
