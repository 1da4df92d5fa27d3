#!/usr/bin/env python3
"""The Dask driver (scripts/baler_dask.py) on a LocalCluster of 2 workers, end to end.

    $(scripts/cluster-venv.sh) tests/cluster/dask_test.py [--baler target/release/baler]

* A table (BALER_DASK_TEST_MB, default 96 MB of float32) in 4 shards, planned by the driver,
  and in 7 shards with a plan given; a 3-D field (half that size) in 4 and 7: each join is
  byte-identical to the one-process file, and decompresses within the bound (checked here with
  NumPy, per column for the table).
* A shard that fails once is retried (retries=1): the output is still byte-identical and the
  summary counts the retry; with retries=0 the driver fails loudly and leaves no output and no
  shards.
* A shard killed mid-write (SIGKILL) leaves no file under its name, and what it left (its
  temporary file) is refused by concat.
Prints the timings; exits non-zero on any failure.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DRIVER = os.path.join(ROOT, "scripts", "baler_dask.py")


def run(cmd, ok=True, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if ok and p.returncode != 0:
        sys.exit(f"FAILED: {' '.join(cmd)}\n{p.stderr}")
    return p


def same(a, b, what):
    with open(a, "rb") as f, open(b, "rb") as g:
        if f.read() != g.read():
            sys.exit(f"FAILED: {what}: {a} differs from {b}")
    print(f"ok: {what}: byte-identical ({os.path.getsize(a)} bytes)")


def check_bound(baler, original, container, tmp, per_column, rel):
    """Decompresses `container` and checks |x - x'| <= rel * (max - min), per column of a table
    or over the whole field, in float64 (the bound's own check is exact; this is looser by the
    float32 rounding of the bound, which is why the two agree)."""
    back = os.path.join(tmp, "back.npy")
    run([baler, "decompress", container, "-o", back, "-f", "-q"])
    x = np.load(original, mmap_mode="r")
    y = np.load(back, mmap_mode="r")
    assert x.shape == y.shape and x.dtype == y.dtype
    step = 1 << 20
    flat_x = x.reshape(x.shape[0], -1) if per_column else x.reshape(-1)
    flat_y = y.reshape(y.shape[0], -1) if per_column else y.reshape(-1)
    if per_column:
        lo = np.nanmin(flat_x, axis=0).astype(np.float64)
        hi = np.nanmax(flat_x, axis=0).astype(np.float64)
    else:
        lo, hi = float(np.nanmin(flat_x)), float(np.nanmax(flat_x))
    bound = rel * (np.asarray(hi) - np.asarray(lo))
    worst = 0.0
    for a in range(0, flat_x.shape[0], step):
        dx = flat_x[a : a + step].astype(np.float64)
        dy = flat_y[a : a + step].astype(np.float64)
        if not np.array_equal(np.isnan(dx), np.isnan(dy)):
            sys.exit("FAILED: NaN positions differ")
        err = np.abs(dx - dy)
        ratio = np.nanmax(err / np.maximum(bound, 1e-300))
        worst = max(worst, float(ratio))
    if worst > 1.0:
        sys.exit(f"FAILED: {container}: an error of {worst:.4f} x the bound")
    print(f"ok: {os.path.basename(container)} within the bound (worst {worst:.3f} of it)")
    os.remove(back)


def driver(baler, args, ok=True):
    start = time.time()
    p = run([sys.executable, DRIVER, "--baler", baler, "--workers", "2", *args], ok=ok)
    return p, time.time() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baler", default=os.path.join(ROOT, "target", "release", "baler"))
    a = ap.parse_args()
    baler = os.path.abspath(a.baler)
    mb = int(os.environ.get("BALER_DASK_TEST_MB", "96"))
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory(prefix="baler-dask-") as tmp:
        # A table: the Delphes fixture tiled, with a little noise so that the tiles differ.
        base = np.load(os.path.join(ROOT, "fixtures", "delphes_16k.npy"))
        reps = max(1, (mb << 20) // base.nbytes)
        table = os.path.join(tmp, "table.npy")
        t = np.tile(base, (reps, 1))
        noise = rng.normal(0, 1e-4, size=t.shape).astype(np.float32)
        t += noise * np.abs(t)
        np.save(table, t)
        del t, noise
        # A smooth 3-D field.
        n = int(round(((mb << 19) / 4) ** (1 / 3)))
        g = np.linspace(0, 6, n, dtype=np.float32)
        field = os.path.join(tmp, "field.npy")
        f = (np.sin(g)[:, None, None] * np.cos(g)[None, :, None] + 0.3 * np.sin(2 * g)[None, None, :])
        f = f + rng.normal(0, 1e-3, size=f.shape).astype(np.float32)
        np.save(field, f.astype(np.float32))
        del f

        # 4 shards, the driver planning: the same bytes as a plain one-process compress (a rel
        # bound reads the whole file's ranges either way, and trains the same model).
        one = os.path.join(tmp, "one.baler")
        start = time.time()
        run([baler, "compress", table, "-b", "rel:1e-3", "-o", one, "-q", "-f"])
        t_one = time.time() - start
        out = os.path.join(tmp, "t4.baler")
        js = os.path.join(tmp, "t4.json")
        p, t4 = driver(baler, [table, "-o", out, "--shards", "4", "-b", "rel:1e-3", "--json", js])
        print(p.stderr.strip())
        same(out, one, "table, 4 shards planned by the driver vs one process")
        check_bound(baler, table, out, tmp, True, 1e-3)
        s = json.load(open(js))
        print(f"   one process {t_one:.2f} s; driver {t4:.2f} s in all (a LocalCluster starts)")

        # 7 shards with a plan made beforehand.
        plan = os.path.join(tmp, "table.plan")
        run([baler, "plan", table, "-b", "rel:1e-3", "-o", plan, "-q"])
        one_p = os.path.join(tmp, "one-plan.baler")
        start = time.time()
        run([baler, "compress", table, "--plan", plan, "-o", one_p, "-q", "-T", "1"])
        cpu_one = time.time() - start
        out7 = os.path.join(tmp, "t7.baler")
        js7 = os.path.join(tmp, "t7.json")
        p, _ = driver(baler, [table, "-o", out7, "--shards", "7", "--plan", plan, "--json", js7])
        same(out7, one_p, "table, 7 shards with a plan vs compress --plan")
        s7 = json.load(open(js7))
        print(
            f"   CPU: 7 shards {s7['cpu']:.2f} s in all, one process on one thread {cpu_one:.2f} s "
            f"wall; per shard {min(s7['shard_seconds']):.2f}..{max(s7['shard_seconds']):.2f} s"
        )

        # A field, 4 shards.
        fplan = os.path.join(tmp, "field.plan")
        run([baler, "plan", field, "-b", "rel:1e-3", "-o", fplan, "-q"])
        one_f = os.path.join(tmp, "one-field.baler")
        run([baler, "compress", field, "--plan", fplan, "-o", one_f, "-q"])
        for n in (4, 7):
            outf = os.path.join(tmp, f"f{n}.baler")
            driver(baler, [field, "-o", outf, "--shards", str(n), "--plan", fplan])
            same(outf, one_f, f"field, {n} shards vs compress --plan")
        check_bound(baler, field, outf, tmp, False, 1e-3)

        # A shard that fails once: a wrapper that fails the first attempt of shard 2.
        wrapper = os.path.join(tmp, "flaky-baler")
        mark = os.path.join(tmp, "failed-once")
        with open(wrapper, "w") as w:
            w.write(
                "#!/bin/sh\n"
                f'case " $* " in *" --shard 2/4 "*) if [ ! -e {mark} ]; then touch {mark}; '
                'echo "simulated node failure" >&2; exit 3; fi;; esac\n'
                f'exec {baler} "$@"\n'
            )
        os.chmod(wrapper, 0o755)
        outr = os.path.join(tmp, "retried.baler")
        jsr = os.path.join(tmp, "retried.json")
        p, _ = driver(wrapper, [table, "-o", outr, "--shards", "4", "--plan", plan, "--retries", "1", "--json", jsr])
        same(outr, os.path.join(tmp, "one-plan.baler"), "a shard retried once vs compress --plan")
        retries = json.load(open(jsr))["retries"]
        if retries != {"2": 1}:
            sys.exit(f"FAILED: the summary counts retries {retries}, expected shard 2 once")
        print("ok: the summary counts the retry of shard 2")
        os.remove(mark)
        outf0 = os.path.join(tmp, "failed.baler")
        p, _ = driver(wrapper, [table, "-o", outf0, "--shards", "4", "--plan", plan, "--retries", "0"], ok=False)
        if p.returncode == 0 or "simulated node failure" not in p.stderr:
            sys.exit(f"FAILED: retries=0 did not fail loudly: {p.returncode} {p.stderr}")
        if os.path.exists(outf0) or os.path.exists(outf0 + ".shards"):
            sys.exit("FAILED: a failed run left its output or its shards")
        print("ok: with retries=0 the driver fails, naming the shard's error, and leaves nothing")

        # A shard killed mid-write: nothing under its name; its temporary file is refused.
        killed = os.path.join(tmp, "killed.shard")
        proc = subprocess.Popen(
            [baler, "compress", table, "--plan", plan, "--shard", "0/1", "-o", killed, "-q", "-T", "1"],
            stderr=subprocess.DEVNULL,
        )
        # Killed once its temporary file holds something (a fixed delay of 0.5 s once
        # outlasted the whole shard on a quiet host).
        def started():
            for x in os.listdir(tmp):
                try:
                    if x.startswith(".killed") and os.path.getsize(os.path.join(tmp, x)) > 0:
                        return True
                except OSError:
                    pass
            return False

        deadline = time.monotonic() + 30
        while not started() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if os.path.exists(killed):
            sys.exit("FAILED: a shard killed mid-write left a file under its name")
        left = [x for x in os.listdir(tmp) if x.startswith(".killed")]
        if not left:
            sys.exit("FAILED: the kill came too late to test (no temporary file seen)")
        p = run([baler, "concat", os.path.join(tmp, left[0]), "-o", os.path.join(tmp, "k.baler")], ok=False)
        if p.returncode == 0:
            sys.exit("FAILED: concat took a killed shard's temporary file")
        print(f"ok: a killed shard left no file under its name; concat refuses what it left ({p.stderr.strip()[:90]}...)")
    print("dask tests passed")


if __name__ == "__main__":
    main()
