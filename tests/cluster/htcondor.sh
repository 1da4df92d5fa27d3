#!/usr/bin/env bash
# The HTCondor submit descriptions (scripts/htcondor/) parsed and expanded by HTCondor's own
# submit code, without a pool: the PyPI `htcondor` bindings' Submit.jobs() turns a submit
# description into the job ClassAds condor_submit would send to a schedd. The expanded jobs are
# then run here and their shards joined (tests/cluster/htcondor_expand.py says what is checked).
#
#   tests/cluster/htcondor.sh
#
# Pinned to htcondor 24.0.x: its version-1 module `htcondor` has Submit.jobs(); the 25.x wheels
# ship only `htcondor2`, whose Submit.jobs() raises NotImplementedError. The bindings go into
# their own venv, target/htcondor-venv (about 55 MB; CPython 3.9-3.13 wheels, x86_64 glibc
# >= 2.28). Debian 12 has no condor_submit package (-dry-run would need it and its config).
# BALER names a baler binary to use instead of building target/release/baler.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

if [[ -z ${BALER:-} ]]; then
  cargo build --release -q
  BALER=$root/target/release/baler
fi
BALER=$(realpath -- "$BALER")

venv=target/htcondor-venv
pin='htcondor==24.0.24'
if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -W ignore -c 'import htcondor; htcondor.Submit.jobs' 2>/dev/null; then
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    [[ $(id -u) -eq 0 ]] || { echo "htcondor-test: needs python3-venv (apt-get install python3-venv, as root)" >&2; exit 1; }
    echo "htcondor-test: installing python3-venv (apt-get)" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >&2
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "$pin"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/baler-htcondor.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
"$venv/bin/python" tests/cluster/htcondor_expand.py "$BALER" "$work"
