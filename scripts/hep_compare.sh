#!/usr/bin/env bash
# baler at bits:N / pwrel:R next to the HEP experiments' practice (../shared/peers/hep.py) on the
# same tables, in one run, every output checked by ../shared/peers/check.py. See
# scripts/hep_compare.py for the options.
#   scripts/hep_compare.sh                     # every 2-D .npy in ../shared/data
#   scripts/hep_compare.sh --fields            # and every field at bits:10
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
py=$(../shared/peers/venv.sh)
exec "$py" scripts/hep_compare.py "$@"
