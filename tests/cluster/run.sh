#!/usr/bin/env bash
# The cluster tests: the Dask driver on a LocalCluster (tests/cluster/dask_test.py). Needs the
# release binary (cargo build --release) and creates the Python environment it needs
# (scripts/cluster-venv.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
py=$(scripts/cluster-venv.sh)
"$py" tests/cluster/dask_test.py --baler target/release/baler
