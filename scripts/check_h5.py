#!/usr/bin/env python3
"""Independent check of an HDF5 round trip, written with h5py and numpy only (no baler code).

    check_h5.py ORIG.h5:/dataset DECODED.h5[:/dataset] (--rel R | --abs E | --lossless)
                [--layout table|field]

Opens both datasets with h5py, checks that the decoded one has the original's shape, element
type and column names (the `columns` attribute of a 2-D dataset, or the fields of a compound
one), then checks every value: finite values within the bound (per column for tables, with
E = R * (max - min) of the column's finite values, computed here in float64), non-finite values
bit for bit. The comparison is exact: no tolerance. Prints the worst error / bound; exits 1 on
any failure. Loads both datasets whole: meant for test-sized files.
"""
import argparse
import sys

import h5py
import numpy as np


def open_ds(arg, default=None):
    path, _, name = arg.partition(":")
    f = h5py.File(path, "r")
    if not name:
        name = default
    if not name:
        floats = []
        f.visititems(lambda n, o: floats.append(n) if isinstance(o, h5py.Dataset) and (
            o.dtype.kind == "f" or o.dtype.names) else None)
        if len(floats) != 1:
            sys.exit(f"{path}: name the dataset (float datasets: {floats})")
        name = floats[0]
    return f[name], name


def names_of(ds):
    if ds.dtype.names:
        return list(ds.dtype.names)
    for key in ("columns", "column_names"):
        if key in ds.attrs:
            v = ds.attrs[key]
            if isinstance(v, bytes):
                v = v.decode()
            if isinstance(v, str):
                return [s.strip() for s in v.split(",")]
            return [s.decode() if isinstance(s, bytes) else str(s) for s in v]
    return None


def values_of(ds):
    """The dataset as a plain array: a compound's fields as the columns of a 2-D table."""
    a = ds[...]
    if a.dtype.names:
        common = np.result_type(*[a.dtype[n] for n in a.dtype.names]).newbyteorder("=")
        return np.stack([a[n].astype(common) for n in a.dtype.names], axis=1)
    return a.astype(a.dtype.newbyteorder("="))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("orig")
    ap.add_argument("decoded")
    ap.add_argument("--rel", type=float)
    ap.add_argument("--abs", type=float)
    ap.add_argument("--lossless", action="store_true")
    ap.add_argument("--layout", choices=["table", "field"])
    o = ap.parse_args()
    ods, oname = open_ds(o.orig)
    dds, dname = open_ds(o.decoded, default=None)
    print(f"original {o.orig.partition(':')[0]}:/{oname.lstrip('/')} {ods.shape} {ods.dtype}")
    print(f"decoded  {o.decoded.partition(':')[0]}:/{dname.lstrip('/')} {dds.shape} {dds.dtype} "
          f"chunks {dds.chunks}")
    on, dn = names_of(ods), names_of(dds)
    print(f"column names: {dn}")
    fail = []
    if on != dn:
        fail.append(f"column names differ: {on} vs {dn}")
    if ods.dtype.names and not dds.dtype.names:
        fail.append("the original is compound, the decoded dataset is not")
    a, b = values_of(ods), values_of(dds)
    if a.shape != b.shape or a.dtype != b.dtype:
        fail.append(f"shape/dtype {a.shape} {a.dtype} vs {b.shape} {b.dtype}")
        print("FAIL " + "; ".join(fail))
        return 1
    table = (o.layout or ("table" if a.ndim == 2 else "field")) == "table"
    ui = {4: np.uint32, 8: np.uint64}[a.dtype.itemsize]
    nonfin = ~np.isfinite(a)
    if o.lossless:
        if not np.array_equal(a.view(ui), b.view(ui)):
            fail.append("not bit-exact")
        worst = 0.0
    else:
        if nonfin.any() and not np.array_equal(a[nonfin].view(ui), b[nonfin].view(ui)):
            fail.append("non-finite values not reproduced bit for bit")
        x = a.astype(np.float64)
        fin = np.where(nonfin, np.nan, x)
        if table:
            rng = np.nanmax(fin, axis=0) - np.nanmin(fin, axis=0)
        else:
            rng = np.nanmax(fin) - np.nanmin(fin)
        e = np.broadcast_to(o.abs if o.abs is not None else o.rel * rng, a.shape if not table else (a.shape[1],))
        err = np.abs(x - b.astype(np.float64))
        err[nonfin] = 0
        if not (np.isfinite(b) | nonfin).all():
            fail.append("a finite value came back non-finite")
        over = err > e
        if over.any():
            i = np.argwhere(over)[0]
            fail.append(f"{int(over.sum())} values over the bound, first at {tuple(i)}")
        ratio = np.where(e > 0, err / np.where(e > 0, e, 1), np.where(err > 0, np.inf, 0))
        worst = float(np.max(ratio)) if ratio.size else 0.0
    print(f"values {a.size}, non-finite {int(nonfin.sum())}, layout {'table' if table else 'field'}")
    print(f"worst error / bound: {worst:.6f}")
    if fail:
        print("FAIL " + "; ".join(fail))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
