#!/usr/bin/env bash
# Builds the Python wheel of baler (distribution `baler-rs`, import `baler`; python/) into
# target/wheels/: one abi3 wheel for every CPython >= 3.9, without HDF5 (h5py reads HDF5 on the
# Python side). maturin comes from PyPI into target/wheel-venv; Rust as for the rest of baler.
#
#   scripts/build_wheel.sh            # -> target/wheels/baler_rs-VERSION-cp39-abi3-*.whl
#   pip install target/wheels/baler_rs-*.whl
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
venv=target/wheel-venv
if [[ ! -x $venv/bin/maturin ]]; then
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    sudo=""
    if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
    echo "baler: installing python3-venv (apt-get)" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'maturin>=1.7,<2'
fi
rm -f target/wheels/baler_rs-*.whl
"$venv/bin/maturin" build --release --quiet -m python/Cargo.toml -o target/wheels \
  --interpreter "$venv/bin/python"
ls target/wheels/baler_rs-*.whl
