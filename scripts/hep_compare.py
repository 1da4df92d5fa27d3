#!/usr/bin/env python3
"""baler at point-wise relative bounds next to what HEP experiments do today, in one run.

    scripts/hep_compare.sh [TABLE.npy ...] [--bits 12,10,7] [--pwrel 1e-3] [--fields] [--json OUT]

For every table (default: every 2-D .npy in ../shared/data) it runs ../shared/peers/hep.py
(mantissa rounding to N bits, then per-column LZMA-9 / zstd-5 / shuffled zstd-19 / pcodec) and
`baler compress -b bits:N` file to file, decompresses, checks every value with the independent
../shared/peers/check.py (`--bits N`, `--pwrel R`), and prints baler's ratio (the whole
container counted) over the best baseline. It also times `-b rel:1e-3` on the same file, for the
speed of the two bound modes side by side. `--fields` also checks every field (the .npy files
that are not 2-D tables) at bits:10.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared"))
PEERS = os.path.join(SHARED, "peers")
TABLES_2D = None


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True)


def baler_round_trip(baler, src, bound, tmp, check_args):
    """Compress and decompress `src` at `bound` through the CLI; returns (ratio, seconds to
    compress, check.py's verdict)."""
    out = os.path.join(tmp, "c.baler")
    back = os.path.join(tmp, "back.npy")
    for p in (out, back):
        if os.path.exists(p):
            os.remove(p)
    t0 = time.perf_counter()
    run([baler, "compress", src, "-b", bound, "-o", out, "-q"])
    secs = time.perf_counter() - t0
    run([baler, "decompress", out, "-o", back, "-q"])
    ratio = os.path.getsize(src) / os.path.getsize(out)
    chk = subprocess.run([sys.executable, os.path.join(PEERS, "check.py"), "bound", src, back] + check_args,
                         capture_output=True, text=True)
    verdict = chk.stdout.strip().splitlines()[-1] if chk.stdout.strip() else chk.stderr.strip()
    ok = chk.returncode == 0
    return ratio, secs, ("ok " if ok else "FAIL ") + verdict.replace("worst error / bound: ", "worst ")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*")
    ap.add_argument("--bits", default="12,10,7")
    ap.add_argument("--pwrel", default="1e-3")
    ap.add_argument("--fields", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--baler", default=os.path.join(ROOT, "target", "release", "baler"))
    a = ap.parse_args()
    import numpy as np

    files = a.files or sorted(glob.glob(os.path.join(SHARED, "data", "*.npy")))
    tables, fields = [], []
    for f in files:
        shape = np.load(f, mmap_mode="r").shape
        (tables if len(shape) == 2 else fields).append(f)
    bits = [int(b) for b in a.bits.split(",")]
    results = []
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for f in tables:
            name = os.path.basename(f).removesuffix(".npy")
            hep_json = os.path.join(tmp, "hep.json")
            run([sys.executable, os.path.join(PEERS, "hep.py"), f, "--bits", a.bits, "--json", hep_json])
            with open(hep_json) as fh:
                hep = json.load(fh)
            best = {r["bits"]: r for r in hep["rows"] if r["codec"] == "best"}
            _, rel_secs, _ = baler_round_trip(a.baler, f, "rel:1e-3", tmp, ["--rel", "1e-3"])
            for n in bits:
                ratio, secs, verdict = baler_round_trip(a.baler, f, f"bits:{n}", tmp, ["--bits", str(n)])
                failed |= not verdict.startswith("ok")
                results.append({"data": name, "bound": f"bits:{n}", "baler": ratio, "best": best[n]["ratio"],
                                "best_codec": best[n]["of"], "secs": secs, "rel_secs": rel_secs,
                                "check": verdict})
            for r in a.pwrel.split(","):
                ratio, secs, verdict = baler_round_trip(a.baler, f, f"pwrel:{r}", tmp, ["--pwrel", r])
                failed |= not verdict.startswith("ok")
                results.append({"data": name, "bound": f"pwrel:{r}", "baler": ratio, "best": None,
                                "best_codec": "", "secs": secs, "rel_secs": rel_secs, "check": verdict})
            print(f"done {name}", file=sys.stderr)
        if a.fields:
            for f in fields:
                name = os.path.basename(f).removesuffix(".npy")
                ratio, secs, verdict = baler_round_trip(a.baler, f, "bits:10", tmp, ["--bits", "10"])
                failed |= not verdict.startswith("ok")
                results.append({"data": name, "bound": "bits:10", "baler": ratio, "best": None,
                                "best_codec": "(field)", "secs": secs, "rel_secs": None, "check": verdict})
    print("| data | bound | baler | best HEP baseline | baler / best | baler s (rel:1e-3 s) | check.py |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        best = f"{r['best']:.2f} ({r['best_codec']})" if r["best"] else r["best_codec"]
        over = f"**{r['baler'] / r['best']:.2f}**" if r["best"] else ""
        rel = f" ({r['rel_secs']:.2f})" if r["rel_secs"] else ""
        print(f"| {r['data']} | {r['bound']} | {r['baler']:.2f} | {best} | {over} | {r['secs']:.2f}{rel} | {r['check']} |")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
