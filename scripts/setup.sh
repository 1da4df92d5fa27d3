#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test baler. Sourced by the other
# scripts; safe to run again (it installs nothing that is already there).
#
# baler needs Rust >= 1.89 (edition 2024). Debian's own rustc is older, so Rust itself is not
# installed from apt: install it with rustup (https://rustup.rs) if `cargo` is missing.
set -euo pipefail

if ! command -v cargo >/dev/null 2>&1; then
  echo "baler: cargo not found. Install Rust >= 1.89 with rustup: https://rustup.rs" >&2
  exit 1
fi

# System packages the build needs, by the command or file that shows they are present.
missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
# The HDF5 C library for the default `hdf5` cargo feature (HDF5 input and output), through the
# hdf5-metno crate. Debian's libhdf5-dev (1.10 on bookworm, 1.14 on trixie) is found by the
# crate's build script through pkg-config or at Debian's own path below, so no HDF5_DIR is
# needed. The alternative, building HDF5 from source (the crate's `static` feature), needs
# cmake >= 3.26, which bookworm does not have, and adds minutes to every clean build.
# BALER_NO_HDF5=1 skips it (for `cargo build --no-default-features`).
if [[ ${BALER_NO_HDF5:-0} != 1 ]] && ! pkg-config --exists hdf5 2>/dev/null \
  && [[ ! -f /usr/include/hdf5/serial/hdf5.h ]]; then
  missing+=(libhdf5-dev)
fi

if ((${#missing[@]})); then
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  echo "baler: installing ${missing[*]} (apt-get)" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
