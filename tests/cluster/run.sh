#!/usr/bin/env bash
# The cluster tests, run by scripts/test.sh after the Rust suite:
#   * tests/cluster/dask_test.py  the Dask driver on a LocalCluster of 2 workers;
#   * tests/cluster/htcondor.sh   the HTCondor submit files, expanded by HTCondor's own code;
#   * tests/cluster/slurm.sh      the Slurm recipe on a single-node Slurm started here (as root:
#                                 it installs slurmctld, slurmd, slurm-client and munge).
# Needs the release binary (cargo build --release); the Python environments are created in
# target/ where missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
export BALER=$PWD/target/release/baler
py=$(scripts/cluster-venv.sh)
"$py" tests/cluster/dask_test.py --baler "$BALER"
tests/cluster/htcondor.sh
if [[ $(id -u) -eq 0 ]]; then
  tests/cluster/slurm.sh
else
  echo "cluster tests: the Slurm test needs root (it starts slurmctld, slurmd and munged): run" \
    "sudo tests/cluster/slurm.sh" >&2
fi
