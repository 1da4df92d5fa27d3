#!/usr/bin/env python3
"""Test tables of the cluster tests (tests/cluster/*.sh), with NumPy.

  table.py make OUT.npy MB        a float32 table of about MB megabytes: fixtures/delphes_16k.npy
                                  (16 columns) tiled, each tile with its own deterministic
                                  multiplicative noise, and a few NaNs
  table.py check ORIG.npy DECODED.npy REL
                                  every value within REL x (max - min) of its column (of the whole
                                  array where it is not 2-D; computed in
                                  float64 from the stored values, NaNs left out of the range);
                                  NaNs where and only where the original has them
"""
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def make(out, mb):
    base = np.load(ROOT / "fixtures" / "delphes_16k.npy")
    assert base.dtype == np.float32 and base.ndim == 2, (base.dtype, base.shape)
    rows_per_tile, cols = base.shape
    rows = max(rows_per_tile, int(mb * 1e6) // (4 * cols))
    table = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=(rows, cols))
    rng = np.random.default_rng(20240615)
    for start in range(0, rows, rows_per_tile):
        n = min(rows_per_tile, rows - start)
        noise = rng.standard_normal((n, cols), dtype=np.float32)
        table[start : start + n] = base[:n] * (1 + np.float32(1e-3) * noise)
    # A few NaNs (their positions must come back as NaN, and nothing else may).
    nan_rows = rng.choice(rows, size=min(rows, 1000), replace=False)
    nan_cols = rng.integers(0, cols, size=nan_rows.size)
    table[nan_rows, nan_cols] = np.nan
    table.flush()
    print(f"{out}: {rows} x {cols} float32, {table.nbytes / 1e6:.0f} MB, {nan_rows.size} NaNs")


def check(orig_path, dec_path, rel):
    orig = np.load(orig_path, mmap_mode="r")
    dec = np.load(dec_path, mmap_mode="r")
    if orig.shape != dec.shape or orig.dtype != dec.dtype:
        sys.exit(f"FAIL: decoded {dec.shape} {dec.dtype}, original {orig.shape} {orig.dtype}")
    worst = 0.0
    # A table's bound is per column; any other array's is one over all its values.
    table = orig.ndim == 2
    columns = orig.shape[1] if table else 1
    for j in range(columns):
        x = np.asarray(orig[:, j] if table else orig.reshape(-1), dtype=np.float64)
        y = np.asarray(dec[:, j] if table else dec.reshape(-1), dtype=np.float64)
        nx, ny = np.isnan(x), np.isnan(y)
        if not np.array_equal(nx, ny):
            sys.exit(f"FAIL: column {j}: NaN positions differ "
                     f"({int(nx.sum())} in the original, {int(ny.sum())} decoded, "
                     f"{int((nx != ny).sum())} differ)")
        ok = ~nx
        bound = rel * (x[ok].max() - x[ok].min())
        err = np.abs(x[ok] - y[ok])
        if not np.all(err <= bound):
            k = int(np.argmax(err - bound))
            sys.exit(f"FAIL: column {j}: {int((err > bound).sum())} values off by more than "
                     f"{bound!r} (worst {err[k]!r}: {x[ok][k]!r} -> {y[ok][k]!r})")
        if bound > 0:
            worst = max(worst, float(err.max() / bound))
    what = "each column's range" if table else "the array's range"
    print(f"{dec_path}: {' x '.join(map(str, orig.shape))} values within rel:{rel} of {what} "
          f"(largest error {worst:.3f} of the bound); NaN positions equal")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "make":
        make(sys.argv[2], float(sys.argv[3]))
    elif len(sys.argv) == 5 and sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        sys.exit(__doc__)
