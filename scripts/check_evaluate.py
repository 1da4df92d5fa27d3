#!/usr/bin/env python3
"""Independent check of `baler evaluate --json`, written with numpy only (no baler code).

    check_evaluate.py ORIGINAL.npy DECODED.npy REPORT.json

Loads the original and the decompressed array (`baler decompress`), computes per column (a
2-D table; or the whole array for a field) the largest |x' - x| over values finite in both,
where it first occurs, the RMSE, and the finite range, and compares them with the report:
max errors and positions exactly, RMSE to 1e-9 relative. Prints the worst error / bound;
exits 1 on any mismatch. Loads both arrays whole: meant for test-sized files.
"""
import json
import sys

import numpy as np


def main():
    orig_path, back_path, report_path = sys.argv[1:4]
    x = np.load(orig_path)
    y = np.load(back_path)
    report = json.load(open(report_path))
    if x.shape != y.shape:
        sys.exit(f"shapes differ: {x.shape} vs {y.shape}")
    if report["layout"] == "table":
        xs = [x[:, j] for j in range(x.shape[1])]
        ys = [y[:, j] for j in range(y.shape[1])]
    else:
        xs, ys = [x.ravel()], [y.ravel()]
    bad = 0
    worst = 0.0
    for j, (a, b, col) in enumerate(zip(xs, ys, report["columns"])):
        a = a.astype(np.float64)
        b = b.astype(np.float64)
        ok = np.isfinite(a) & np.isfinite(b)
        err = np.where(ok, np.abs(b - a), 0.0)
        mx = float(err.max()) if err.size else 0.0
        at = int(np.argmax(err)) if ok.any() else None
        rmse = float(np.sqrt(np.mean((b[ok] - a[ok]) ** 2))) if ok.any() else None
        fin = a[ok]
        lo, hi = (float(fin.min()), float(fin.max())) if fin.size else (None, None)
        problems = []
        if col["max_abs_error"] != mx:
            problems.append(f"max_abs_error {col['max_abs_error']!r} != {mx!r}")
        if col["max_error_at"] != at:
            problems.append(f"max_error_at {col['max_error_at']} != {at}")
        if rmse is not None and abs(col["rmse"] - rmse) > 1e-9 * rmse:
            problems.append(f"rmse {col['rmse']!r} != {rmse!r}")
        if (col["min"], col["max"]) != (lo, hi):
            problems.append(f"range {(col['min'], col['max'])} != {(lo, hi)}")
        if col["bound"] > 0:
            worst = max(worst, mx / col["bound"])
            if mx > col["bound"]:
                problems.append(f"max error {mx!r} over the bound {col['bound']!r}")
        if problems:
            bad += 1
            print(f"column {j} ({col['name']}): " + "; ".join(problems))
    print(f"{len(xs)} columns checked, worst error / bound {worst:.6f}, "
          f"{'all match' if not bad else f'{bad} mismatched'}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
