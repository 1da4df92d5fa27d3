#!/usr/bin/env bash
# The Python package's tests: builds the wheel (scripts/build_wheel.sh), installs it into a
# fresh virtual environment (target/python-test-venv) with pytest, and runs tests/python/.
# Needs the release binary for the tests that exchange containers with the command line.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build_wheel.sh >/dev/null
venv=target/python-test-venv
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check target/wheels/baler_rs-*.whl pytest numcodecs zarr h5py uproot awkward 'dask[distributed]'
BALER=$PWD/target/release/baler "$venv/bin/python" -m pytest -q tests/python
