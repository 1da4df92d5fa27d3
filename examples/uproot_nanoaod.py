#!/usr/bin/env python3
"""From ROOT files to baler and back: a NanoAOD-like jet collection, read with uproot.

    python examples/uproot_nanoaod.py [--events N] [--dir DIR] [--seed S]

1. Writes a small NanoAOD-like ROOT file with uproot (a TTree `Events`: the jet collection as
   NanoAOD has it, a counter `nJet` and the branches Jet_pt, Jet_eta, Jet_phi, Jet_mass,
   Jet_btagDeepFlavB (float32), Jet_jetId, Jet_hadronFlavour (int32), and one per-event float
   branch, MET_pt), with plausible distributions.
2. Reads it back with uproot into awkward arrays, flattens the jets into one 2-D float32 table
   (a row per jet, a column per Jet_* branch; the integer branches as float32, exact below
   2^24) and keeps the per-event jet counts.
3. Compresses the jet table with NanoAOD's own precisions (examples/nanoaod.bounds: bits:10 for
   pt, mass and b-tag, bits:12 for eta and phi, the integer branches lossless), and the
   per-event table (nJet, MET_pt): the counts lossless, MET_pt at bits:10.
4. Decompresses, rebuilds the jagged arrays with ak.unflatten, and checks with NumPy, apart
   from baler, that every value is within its bound and the counts and integers are exact.
5. Prints the sizes: raw float32 bytes, the ROOT file (uproot's default compression, ZLIB
   level 1), the same file with the floats rounded to NanoAOD's precisions as NanoAOD stores
   them (the same loss as the bounds: a like-for-like comparison), that file again with LZMA
   level 9 (NanoAOD's own setting), the baler containers, the ratios.

Why the counts go in a per-event table at `lossless`: baler takes float32/float64 arrays only;
a count is a small integer, exact as float32; and it must come back exactly, since a count off
by one would move every later jet into another event. One container holds every per-event
branch (one row per event), the other every jet branch (one row per jet).

The functions are imported by tests/python/test_uproot.py.
"""

import argparse
import fnmatch
import os
import sys
import time

import awkward as ak
import numpy as np
import uproot

import baler

HERE = os.path.dirname(os.path.abspath(__file__))
BOUNDS = os.path.join(HERE, "nanoaod.bounds")

JET_FLOAT = ["Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_btagDeepFlavB"]
JET_INT = ["Jet_jetId", "Jet_hadronFlavour"]
JET_BRANCHES = JET_FLOAT + JET_INT
EVENT_COLUMNS = ["nJet", "MET_pt"]
# The per-event table's bounds. Not in the bounds file: baler refuses a file whose lines name
# (exactly, not by a glob) a column the table does not have, and the jet table has no nJet.
EVENT_BOUNDS = {"nJet": "lossless", "MET_*": "bits:10"}


# --- 1. A NanoAOD-like file ------------------------------------------------------------------


def _truncated_normal(rng, sigma, limit, n):
    """Normal(0, sigma) restricted to |x| < limit (redrawn, not clipped: no pile-up at the edge)."""
    x = rng.normal(0.0, sigma, n)
    bad = np.abs(x) >= limit
    while bad.any():
        x[bad] = rng.normal(0.0, sigma, bad.sum())
        bad = np.abs(x) >= limit
    return x


def make_events(n_events, seed=0):
    """NanoAOD-like events: a dict {"Jet": jagged record array, "MET_pt": float32 per event}."""
    rng = np.random.default_rng(seed)
    counts = np.minimum(rng.poisson(4.5, n_events), 14).astype(np.int64)
    n = int(counts.sum())
    # A falling spectrum from 15 GeV (dN/dpt ~ pt^-4), ordered in pt within each event as in NanoAOD.
    pt = 15.0 * rng.uniform(0.0, 1.0, n) ** (-1.0 / 3.0)
    pt = ak.to_numpy(ak.flatten(ak.sort(ak.unflatten(pt, counts), ascending=False)))
    eta = _truncated_normal(rng, 1.8, 4.7, n)
    phi = np.pi - rng.uniform(0.0, 2.0 * np.pi, n)  # (-pi, pi]
    mass = pt * rng.lognormal(np.log(0.12), 0.35, n)  # m/pt ~ 0.1-0.2
    flavour = rng.choice(np.array([0, 4, 5], dtype=np.int32), size=n, p=[0.80, 0.08, 0.12])
    btag = np.where(flavour == 5, rng.beta(4.0, 0.8, n), np.where(flavour == 4, rng.beta(1.0, 3.0, n), rng.beta(0.4, 8.0, n)))
    jet_id = rng.choice(np.array([0, 2, 6], dtype=np.int32), size=n, p=[0.03, 0.07, 0.90])
    jets = ak.zip(
        {
            "pt": ak.unflatten(pt.astype(np.float32), counts),
            "eta": ak.unflatten(eta.astype(np.float32), counts),
            "phi": ak.unflatten(phi.astype(np.float32), counts),
            "mass": ak.unflatten(mass.astype(np.float32), counts),
            "btagDeepFlavB": ak.unflatten(btag.astype(np.float32), counts),
            "jetId": ak.unflatten(jet_id, counts),
            "hadronFlavour": ak.unflatten(flavour, counts),
        }
    )
    met = np.hypot(rng.normal(0.0, 25.0, n_events), rng.normal(0.0, 25.0, n_events)).astype(np.float32)
    return {"Jet": jets, "MET_pt": met}


def write_root(path, events, compression=None):
    """A ROOT file with a TTree `Events` (uproot's default compression, ZLIB level 1, unless
    `compression` is given). mktree, since uproot 5.7 writes an RNTuple on plain assignment; a
    jagged record `Jet` becomes the counter nJet and the branches Jet_pt, Jet_eta, ..."""
    options = {} if compression is None else {"compression": compression}
    with uproot.recreate(path, **options) as f:
        f.mktree("Events", events)
    return os.path.getsize(path)


def round_mantissa(x, bits):
    """float32 values rounded to `bits` mantissa bits, as NanoAOD stores them (its
    `precision=N`): the same loss as baler's bits:N, for a like-for-like ROOT file."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    shift = 23 - bits
    r = (u + np.uint32(1 << (shift - 1))) & np.uint32(~((1 << shift) - 1) & 0xFFFFFFFF)
    return np.where(np.isfinite(x), r.view(np.float32), x)


def nanoaod_rounded(events, bounds=BOUNDS):
    """The events with every float branch rounded to its bits:N of the bounds file."""
    jets = events["Jet"]
    fields = {}
    for field in jets.fields:
        spec = bound_of("Jet_" + field, bounds)
        col = jets[field]
        if spec.startswith("bits:"):
            flat = round_mantissa(ak.to_numpy(ak.flatten(col)), int(spec[5:]))
            col = ak.unflatten(flat, ak.num(col))
        fields[field] = col
    return {"Jet": ak.zip(fields), "MET_pt": round_mantissa(events["MET_pt"], 10)}


# --- 2. Read with uproot, flatten --------------------------------------------------------------


def read_jets(path):
    """Reads the jets and the per-event branches: (arrays, jet table, jet names, event table,
    event names). The jet table is float32, a row per jet, a column per Jet_* branch."""
    with uproot.open(path) as f:
        arrays = f["Events"].arrays(filter_name=["nJet", "Jet_*", "MET_pt"])
    names = list(JET_BRANCHES)
    missing = set(names + EVENT_COLUMNS) - set(arrays.fields)
    if missing:
        raise KeyError(f"branches not in the file: {sorted(missing)}")
    counts = ak.to_numpy(ak.num(arrays["Jet_pt"]))
    if not np.array_equal(counts, ak.to_numpy(arrays["nJet"])):
        raise ValueError("nJet does not match the jet collection's lengths")
    jets = np.empty((int(counts.sum()), len(names)), dtype=np.float32)
    for i, name in enumerate(names):
        col = ak.to_numpy(ak.flatten(arrays[name]))
        if col.dtype.kind in "iu" and np.abs(col).max(initial=0) >= 2**24:
            raise ValueError(f"{name}: integers beyond 2^24 are not exact as float32")
        jets[:, i] = col
    event = np.empty((len(counts), len(EVENT_COLUMNS)), dtype=np.float32)
    event[:, 0] = counts
    event[:, 1] = ak.to_numpy(arrays["MET_pt"])
    return arrays, jets, names, event, list(EVENT_COLUMNS)


# --- 3. Compress -------------------------------------------------------------------------------


def compress(jets, jet_names, event, event_names, bounds=BOUNDS):
    """The two baler containers (bytes): the jet table and the per-event table. With a mapping,
    baler.compress wants bound= too (even when the mapping covers every column): lossless, so
    that a column the mapping missed would come back exact."""
    return (
        baler.compress(jets, bounds=bounds, names=jet_names),
        baler.compress(event, bound="lossless", bounds=EVENT_BOUNDS, names=event_names),
    )


# --- 4. Restore and check ----------------------------------------------------------------------


def restore(jet_blob, event_blob, jet_names, event_names):
    """The jagged arrays back from the containers: an awkward record array with the fields
    nJet, Jet_*, MET_pt, as tree.arrays() gives them."""
    jets = baler.decompress(jet_blob)
    event = baler.decompress(event_blob)
    counts = event[:, event_names.index("nJet")].astype(np.int64)
    out = {"nJet": counts.astype(np.int32)}
    for i, name in enumerate(jet_names):
        col = jets[:, i]
        if name in JET_INT:
            col = col.astype(np.int32)
        out[name] = ak.unflatten(col, counts)
    out["MET_pt"] = event[:, event_names.index("MET_pt")]
    return ak.Array(out)


def read_bounds(path):
    """The bounds file, read here apart from baler: (default spec, [(pattern, spec), ...])."""
    default, rules = None, []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            key, spec = line.split()
            if key == "default":
                default = spec
            else:
                rules.append((key, spec))
    return default, rules


def bound_of(name, bounds=BOUNDS):
    """A column's spec from the bounds file: the last matching line wins, else the default."""
    default, rules = read_bounds(bounds)
    spec = default
    for pattern, s in rules:
        if fnmatch.fnmatchcase(name, pattern):
            spec = s
    return spec


def spec_of(name, bounds=BOUNDS):
    """The spec the check holds a branch to: the bounds file's for the jets, the per-event ones."""
    return {"nJet": "lossless", "MET_pt": "bits:10"}.get(name) or bound_of(name, bounds)


def check_within(name, orig, back, spec):
    """Asserts (NumPy, in float64) that `back` is within `spec` of `orig`, value by value."""
    orig = np.asarray(orig)
    back = np.asarray(back)
    assert orig.shape == back.shape, f"{name}: shape {back.shape} != {orig.shape}"
    if spec == "lossless":
        assert np.array_equal(orig, back), f"{name}: not exact"
        return 0.0
    mode, _, value = spec.partition(":")
    x = orig.astype(np.float64)
    y = back.astype(np.float64)
    if mode == "bits":
        allowed = 2.0 ** -(int(value) + 1) * np.abs(x)
    elif mode == "pwrel":
        allowed = float(value) * np.abs(x)
    elif mode == "abs":
        allowed = np.full(x.shape, float(value))
    else:
        raise ValueError(f"{name}: the check knows bits, pwrel, abs and lossless, not {spec}")
    err = np.abs(x - y)
    worst = np.argmax(err - allowed) if err.size else None
    assert np.all(err <= allowed), (
        f"{name}: {np.count_nonzero(err > allowed)} values beyond {spec}, e.g. {x[worst]!r} -> {y[worst]!r}"
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.nanmax(np.where(allowed > 0, err / allowed, 0.0), initial=0.0))


def check_restored(original, restored, bounds=BOUNDS):
    """Checks the restored arrays against those read from the file: the same fields, the same
    jets per event, every value within its column's bound, the integers and counts exact.
    Returns {branch: largest error / allowed error}."""
    assert sorted(restored.fields) == sorted(original.fields), (restored.fields, original.fields)
    assert len(restored) == len(original)
    n_orig = ak.to_numpy(ak.num(original["Jet_pt"]))
    assert np.array_equal(ak.to_numpy(restored["nJet"]), ak.to_numpy(original["nJet"]))
    used = {}
    for name in JET_BRANCHES:
        assert np.array_equal(ak.to_numpy(ak.num(restored[name])), n_orig), f"{name}: jets per event differ"
        a = ak.to_numpy(ak.flatten(original[name]))
        b = ak.to_numpy(ak.flatten(restored[name]))
        assert b.dtype == a.dtype, f"{name}: {b.dtype} != {a.dtype}"
        used[name] = check_within(name, a, b, bound_of(name, bounds))
    used["MET_pt"] = check_within("MET_pt", ak.to_numpy(original["MET_pt"]), ak.to_numpy(restored["MET_pt"]), "bits:10")
    used["nJet"] = check_within("nJet", ak.to_numpy(original["nJet"]), ak.to_numpy(restored["nJet"]), "lossless")
    return used


# --- 5. The whole path -------------------------------------------------------------------------


def run(n_events=100_000, directory=".", seed=0, bounds=BOUNDS, out=sys.stdout):
    """Writes, reads, compresses, restores and checks; prints the sizes; returns them."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "nanoaod_like.root")
    events = make_events(n_events, seed)
    root_size = write_root(path, events)
    rounded = nanoaod_rounded(events, bounds)
    rounded_size = write_root(os.path.join(directory, "nanoaod_like_rounded.root"), rounded)
    lzma_size = write_root(os.path.join(directory, "nanoaod_like_rounded_lzma.root"), rounded, uproot.LZMA(9))
    arrays, jets, jet_names, event, event_names = read_jets(path)
    t0 = time.perf_counter()
    jet_blob, event_blob = compress(jets, jet_names, event, event_names, bounds)
    t1 = time.perf_counter()
    restored = restore(jet_blob, event_blob, jet_names, event_names)
    t2 = time.perf_counter()
    used = check_restored(arrays, restored, bounds)
    raw = jets.nbytes + event.nbytes
    baler_size = len(jet_blob) + len(event_blob)
    figures = {
        "events": len(event),
        "jets": len(jets),
        "raw_bytes": raw,
        "jet_raw_bytes": jets.nbytes,
        "root_bytes": root_size,
        "root_rounded_bytes": rounded_size,
        "root_rounded_lzma_bytes": lzma_size,
        "baler_bytes": baler_size,
        "jet_baler_bytes": len(jet_blob),
        "event_baler_bytes": len(event_blob),
        "ratio": raw / baler_size,
        "root_over_baler": root_size / baler_size,
        "root_rounded_over_baler": rounded_size / baler_size,
        "root_rounded_lzma_over_baler": lzma_size / baler_size,
        "compress_s": t1 - t0,
        "decompress_s": t2 - t1,
        "worst": used,
    }
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p(f"{figures['events']} events, {figures['jets']} jets ({figures['jets'] / figures['events']:.2f} per event)")
    p(f"raw float32 columns: {raw / 1e6:.2f} MB (jets {len(jet_names)} x {len(jets)}, events {len(event_names)} x {len(event)})")
    p(f"ROOT file ({path}, uproot's default compression): {root_size / 1e6:.2f} MB ({raw / root_size:.2f}x)")
    p(f"ROOT file of the values rounded as NanoAOD stores them (same bits): {rounded_size / 1e6:.2f} MB ({raw / rounded_size:.2f}x)")
    p(f"...and with LZMA level 9, as NanoAOD writes its files: {lzma_size / 1e6:.2f} MB ({raw / lzma_size:.2f}x)")
    p(f"baler containers: {baler_size / 1e6:.2f} MB (jets {len(jet_blob) / 1e6:.2f} MB, events {len(event_blob) / 1e6:.3f} MB)")
    p(
        f"ratio: {figures['ratio']:.2f}x the raw columns; {figures['root_over_baler']:.2f}x smaller than the ROOT file, "
        f"{figures['root_rounded_over_baler']:.2f}x than the rounded one, {figures['root_rounded_lzma_over_baler']:.2f}x than the rounded LZMA one"
    )
    p(f"compress {figures['compress_s']:.2f} s, decompress {figures['decompress_s']:.2f} s")
    p("every value within its bound (largest error / allowed): " + ", ".join(f"{k} {spec_of(k, bounds)} {v:.2f}" for k, v in used.items()))
    return figures


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000, help="events to generate (default 100000)")
    ap.add_argument("--dir", default=".", help="where the ROOT file goes (default: here)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bounds", default=BOUNDS, help="the bounds file (default examples/nanoaod.bounds)")
    args = ap.parse_args(argv)
    run(args.events, args.dir, args.seed, args.bounds)


if __name__ == "__main__":
    main()
