"""Ratio and speed of the baler HDF5 filter against hdf5plugin's SZ3 and ZFP, in one run.

    HDF5_PLUGIN_PATH=target/release target/h5filter-venv/bin/python scripts/h5filter_compare.py
    (needs `pip install hdf5plugin` in that venv; tests/hdf5_filter/run.sh makes the venv)

Each dataset is written through h5py with chunks of about 1 MiB at the same absolute bound
E = R x (max - min of the whole dataset) for every codec, then read back; the time is h5py's
create_dataset (compression included) and a full read, each the best of three, in MB/s of raw
values; the error is the worst |x - y| / E over all values (above 1 breaks the bound). baler is
also run with its own per-column `rel` bound (relative to each chunk's column ranges).
"""

import os
import sys
import tempfile
import time

import h5py
import hdf5plugin
import numpy as np

BALER = 47646
DATA = os.environ.get("BALER_SHARED_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
CASES = [
    ("hep_delphes_genparticles.h5", (16384, 16)),
    ("climate_echam5_3d.h5", (1, 17, 96, 192)),
]


def f64_words(v):
    b = np.float64(v).view(np.uint64)
    return int(b >> np.uint64(32)), int(b & np.uint64(0xFFFFFFFF))


def best(f, n=3):
    t = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = f()
        t.append(time.perf_counter() - t0)
    return min(t), r


def run(x, chunks, name, kwargs, e):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "c.h5")

        def write():
            with h5py.File(path, "w") as f:
                f.create_dataset("d", data=x, chunks=chunks, **kwargs)

        tw, _ = best(write)

        def read():
            with h5py.File(path, "r") as f:
                return f["d"][...], f["d"].id.get_storage_size()

        tr, (y, size) = best(read)
    err = np.abs(x.astype(np.float64) - y.astype(np.float64)).max()
    mb = x.nbytes / 1e6
    return x.nbytes / size, mb / tw, mb / tr, err / e if e else float("nan")


def main():
    print(f"h5py {h5py.version.version} (HDF5 {h5py.version.hdf5_version}), hdf5plugin {hdf5plugin.version}")
    print("| file | bound | codec | ratio | write MB/s | read MB/s | max error / E |")
    print("|---|---|---|---|---|---|---|")
    for fname, chunks in CASES:
        with h5py.File(os.path.join(DATA, fname), "r") as f:
            x = f["data"][...]
        fin = x[np.isfinite(x)].astype(np.float64)
        span = fin.max() - fin.min()
        for r, (a, b) in [(1e-3, (1, 3)), (1e-4, (1, 4))]:
            e = r * span
            rows = [
                ("baler", {"compression": BALER, "compression_opts": (1 | 256, *f64_words(e))}),
                ("SZ3", hdf5plugin.SZ3(absolute=e)),
                ("ZFP", hdf5plugin.Zfp(accuracy=e)),
            ]
            if x.ndim == 2:
                rows.append((f"baler rel:{r:g} per column and chunk",
                             {"compression": BALER, "compression_opts": (2, a, b)}))
            for name, kw in rows:
                ratio, w, rd, over = run(x, chunks, name, dict(kw), e if "per column" not in name else 0)
                over_s = "per-column bound" if "per column" in name else f"{over:.6f}"
                print(f"| {fname} | abs {e:.3g} (rel {r:g} of the range) | {name} | {ratio:.2f} | {w:.0f} | {rd:.0f} | {over_s} |")
                sys.stdout.flush()


if __name__ == "__main__":
    main()
