#!/usr/bin/env python3
"""baler next to SZ3, ZFP, zstd, lz4 and fpzip on the same files, at the same bounds, in one run.

    scripts/compare.sh [FILE.npy ...] [--rel 1e-2,1e-3,1e-4] [--threads 2] [--json OUT.json]
    scripts/compare.sh --merge RUN1.json RUN2.json ...   # the summary of several runs

For every file and bound it prints one table:
  * baler (in memory): `baler bench` — compress (`compress_slice`) and decompress
    (`decompress_to_vec`, a new array each time, as SZ3's decompression returns one) in memory
    with T threads, best of 3, every value checked against its bound; directly comparable to
    the peers' figures, which are in-memory, single-threaded, best of 3;
  * baler CLI: `baler compress` / `baler decompress` file to file (page cache warm), wall time
    of the whole process (start-up, range pre-pass, reading and writing included), best of 3;
  * max err / bound for baler comes from the independent check (../shared/peers/check.py) run
    on the CLI's decompressed output;
  * the peers from ../shared/peers/run.sh, run in the same session.
Without files, every .npy in ../shared/data is compared. With --merge, no codec runs: the
summary of the runs whose --json outputs are given, each speed the best over the runs, for
every codec alike (on a machine whose speeds vary by a third between runs, each codec's best of
3 per run is itself noisy); ratios must agree, as the containers do.
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


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def best_of(n, fn, fresh=None):
    """Best wall time of `n` runs of `fn`; `fresh` (a path) is removed before each run, so
    every run writes a new file (replacing one makes the kernel free the old file's pages
    first, which would be timed too)."""
    best = float("inf")
    for _ in range(n):
        if fresh and os.path.exists(fresh):
            os.remove(fresh)
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def summary(results, threads):
    """One line per file and bound: baler next to SZ3 (or the best lossless peer)."""
    print(f"\n## Summary: ratio, and speed in MB/s (baler {threads} threads in memory and CLI file to file; peers 1 thread in memory)\n")
    print("| data | bound | baler | SZ3 | ZFP | best lossless | baler / h0 | baler comp | CLI comp | SZ3 comp | baler decomp | CLI decomp | SZ3 decomp | max err / bound (check.py) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        peer = {p["codec"]: p for p in r["peers"]}
        name = r["file"].removesuffix(".npy")
        if "SZ3" in peer:
            s, z = peer["SZ3"], peer["ZFP"]
            h0 = f"{r['container_over_h0']:.3f}" if r.get("container_over_h0") else ""
            print(f"| {name} | {r['bound']} | **{r['baler_ratio']:.2f}** | {s['ratio']:.2f} | {z['ratio']:.2f} | | {h0} | "
                  f"{r['baler_comp_MBps']:.0f} | {r['cli_comp_MBps']:.0f} | {s['comp_MBps']:.0f} | "
                  f"{r['baler_decomp_MBps']:.0f} | {r['cli_decomp_MBps']:.0f} | {s['decomp_MBps']:.0f} | {r['check']} |")
        else:
            best = max(r["peers"], key=lambda p: p["ratio"])
            print(f"| {name} | lossless | **{r['baler_ratio']:.3f}** | | | {best['ratio']:.3f} ({best['codec']}) | | "
                  f"{r['baler_comp_MBps']:.0f} | {r['cli_comp_MBps']:.0f} | | {r['baler_decomp_MBps']:.0f} | "
                  f"{r['cli_decomp_MBps']:.0f} | | {r['check']} |")


def merge(paths):
    """The rows of several runs' JSON, each speed the best over the runs that measured it
    (baler's and the peers' alike; a run may cover some of the files and bounds only, e.g.
    more runs of `--rel 1e-3` beside one of every bound); the ratios must be the same in every
    run."""
    runs = [json.load(open(p)) for p in paths]
    merged = []
    at = {}
    speeds = ("baler_comp_MBps", "baler_decomp_MBps", "cli_comp_MBps", "cli_decomp_MBps")
    for run_ in runs:
        for r in run_:
            key = (r["file"], r["bound"])
            if key not in at:
                at[key] = len(merged)
                merged.append(json.loads(json.dumps(r)))
                continue
            m = merged[at[key]]
            if abs(m["baler_ratio"] - r["baler_ratio"]) > 1e-9 * m["baler_ratio"]:
                sys.exit(f"--merge: {m['file']} {m['bound']}: baler's ratio differs between runs")
            for k in speeds:
                m[k] = max(m[k], r[k])
            theirs = {p["codec"]: p for p in r["peers"]}
            for p in m["peers"]:
                q = theirs[p["codec"]]
                p["comp_MBps"] = max(p["comp_MBps"], q["comp_MBps"])
                p["decomp_MBps"] = max(p["decomp_MBps"], q["decomp_MBps"])
    return merged


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*")
    ap.add_argument("--merge", nargs="+", metavar="RUN.json", help="print the summary of these runs, each speed the best over them")
    ap.add_argument("--rel", default="1e-2,1e-3,1e-4")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-lossless", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--baler", default=os.path.join(ROOT, "target", "release", "baler"))
    a = ap.parse_args()
    if a.merge:
        merged = merge(a.merge)
        summary(merged, merged[0]["threads"] if merged else a.threads)
        return 0
    files = a.files or sorted(glob.glob(os.path.join(SHARED, "data", "*.npy")))
    py = run([os.path.join(PEERS, "venv.sh")]).stdout.strip()
    rels = [float(r) for r in a.rel.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            name = os.path.basename(f)
            pj = os.path.join(tmp, "peers.json")
            run([os.path.join(PEERS, "run.sh"), f, "--rel", a.rel, "--json", pj])
            peers = json.load(open(pj))
            raw = peers["bytes"]
            print(f"\n## {name} {tuple(peers['shape'])} {peers['dtype']} {peers['layout']}, {raw / 1e6:.2f} MB\n")
            print("| codec | bound | ratio | comp MB/s | decomp MB/s | max err / bound |")
            print("|---|---|---|---|---|---|")
            bounds = [(f"rel:{r:g}", r) for r in rels] + ([] if a.no_lossless else [("lossless", None)])
            for spec, rel in bounds:
                bench = json.loads(run([a.baler, "bench", f, "-b", spec, "-T", str(a.threads), "-r", str(a.repeat), "--json"]).stdout)
                packed = os.path.join(tmp, "x.baler")
                back = os.path.join(tmp, "x.npy")
                tc = best_of(a.repeat, lambda: run([a.baler, "compress", f, "-o", packed, "-b", spec, "-T", str(a.threads), "-q"]), packed)
                td = best_of(a.repeat, lambda: run([a.baler, "decompress", packed, "-o", back, "-T", str(a.threads), "-q"]), back)
                size = os.path.getsize(packed)
                check = [py, os.path.join(PEERS, "check.py"), "bound", f, back] + (["--rel", str(rel)] if rel is not None else ["--lossless"])
                out = subprocess.run(check, capture_output=True, text=True)
                worst = out.stdout.strip().splitlines()[-1].split(":")[-1].strip() if out.stdout else "?"
                verdict = "" if out.returncode == 0 else " FAIL"
                label = spec if rel is not None else "lossless"
                h0 = None
                if rel is not None and peers["layout"] == "table":
                    # Order-0 entropy of the plain codes round(x / 2E) per column (check.py h0).
                    h0 = float(run([py, os.path.join(PEERS, "check.py"), "h0", f, "--rel", str(rel)]).stdout.strip())
                row = {
                    "file": name, "bound": label, "bytes": raw,
                    "baler_ratio": raw / bench["compressed"], "baler_comp_MBps": bench["comp_MBps"],
                    "baler_decomp_MBps": bench["decomp_MBps"], "threads": a.threads,
                    "cli_ratio": raw / size, "cli_comp_MBps": raw / tc / 1e6, "cli_decomp_MBps": raw / td / 1e6,
                    "check": worst + verdict, "peers": [],
                    "container_over_h0": size / h0 if h0 else None,
                }
                print(f"| **baler** ({a.threads} threads, in memory) | {label} | **{row['baler_ratio']:.2f}** | "
                      f"{row['baler_comp_MBps']:.0f} | {row['baler_decomp_MBps']:.0f} | {worst}{verdict} |")
                if h0:
                    print(f"| (container / order-0 entropy of the plain codes) | {label} | {size / h0:.4f} | | | |")
                print(f"| baler CLI, file to file ({a.threads} threads) | {label} | {row['cli_ratio']:.2f} | "
                      f"{row['cli_comp_MBps']:.0f} | {row['cli_decomp_MBps']:.0f} | |")
                if rel is not None:
                    for p in peers["lossy"]:
                        if abs(p["rel"] - rel) < 1e-15:
                            row["peers"].append(p)
                            print(f"| {p['codec']} (1 thread) | {label} | {p['ratio']:.2f} | {p['comp_MBps']:.0f} | "
                                  f"{p['decomp_MBps']:.0f} | {p['max_err_over_bound']:.4f} |")
                else:
                    for p in peers["lossless"]:
                        row["peers"].append(p)
                        print(f"| {p['codec']} (1 thread) | lossless | {p['ratio']:.3f} | {p['comp_MBps']:.0f} | "
                              f"{p['decomp_MBps']:.0f} | 0 |")
                results.append(row)
                sys.stdout.flush()
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(results, fh, indent=1)
    summary(results, a.threads)
    failed = [r for r in results if "FAIL" in r["check"]]
    if failed:
        print(f"\nBOUND CHECK FAILED for {len(failed)} runs: " + ", ".join(f"{r['file']} {r['bound']}" for r in failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
