#!/usr/bin/env bash
# Prints the Python of a virtual environment with what the cluster tests and drivers need
# (NumPy, Dask's distributed scheduler), creating it first in target/cluster-venv if it is
# missing; installs python3-venv with apt-get where a fresh Debian machine lacks it.
#
#   py=$(scripts/cluster-venv.sh)   # then: $py scripts/baler_dask.py ...
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/cluster-venv
if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import numpy, dask.distributed' 2>/dev/null; then
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    sudo=""
    if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
    echo "baler: installing python3-venv (apt-get)" >&2
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
      python3-venv >&2
  fi
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check numpy 'dask[distributed]' >&2
fi
echo "$PWD/$venv/bin/python"
