#!/usr/bin/env python3
"""Compress one large file with baler on a Dask cluster: plan once, shards in parallel, concat.

    baler_dask.py INPUT -o OUT --shards N (--bound SPEC ... | --plan PLAN)
                  [--scheduler ADDR | --workers W] [--retries K] [--baler PATH]

1. The plan (`baler plan`: value ranges and training, once) runs as one task on the cluster,
   unless `--plan` gives one made beforehand.
2. The N shards (`baler compress INPUT --plan PLAN --shard I/N`) run as N tasks, `client.map`
   with `retries=K`: a shard that fails (a node lost, a job preempted) is run again, on any
   worker. A shard is written under a temporary name and renamed when complete, so a retried or
   killed attempt never leaves a torn file.
3. `baler concat` joins the shards into OUT (on the machine running this script): byte for byte
   the file `baler compress INPUT --plan PLAN -o OUT` writes in one process. The shards are
   removed afterwards (`--keep-shards` keeps them).

Needs only `dask[distributed]` here and on the workers, and the `baler` binary on the workers'
PATH (or `--baler PATH`, the same path everywhere). INPUT, the plan and the shard directory
must be on a file system every worker sees. Without `--scheduler`, a `LocalCluster` of
`--workers` processes runs on this machine. On Slurm, PBS or HTCondor through dask-jobqueue,
call `compress_sharded(client, ...)` from Python with the cluster's client (README, "Beyond one
machine").

Prints a line per finished shard and a summary: ratio, throughput, the time of each step, per
shard times and CPU times, retries. Exit status: 0 on success, 1 on failure (then OUT is not
written and the shards made are removed), 2 on a usage error.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid


def _run(cmd, what):
    """Runs baler; returns (wall seconds, child CPU seconds); raises with its message on failure."""
    start = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(
            f"{what} failed on {socket.gethostname()} (exit {proc.returncode}): {err.strip()}"
        )
    return time.time() - start, usage.ru_utime + usage.ru_stime


def make_plan(baler, input, plan, plan_args):
    """Task: `baler plan`."""
    secs, cpu = _run([baler, "plan", input, "-o", plan, "-f", "-q", *plan_args], "baler plan")
    return {"seconds": secs, "cpu": cpu, "host": socket.gethostname()}


def compress_shard(baler, input, plan, index, count, shard_dir, threads):
    """Task: shard `index` of `count`. Each attempt leaves a mark in shard_dir/attempts, so the
    driver can count retries whatever the scheduler reports."""
    if not os.path.isdir(shard_dir):
        # The driver gave up on the job and removed its directory: leave nothing behind.
        raise RuntimeError(f"shard {index} of {count}: {shard_dir} is gone (the job failed)")
    attempts = os.path.join(shard_dir, "attempts")
    os.makedirs(attempts, exist_ok=True)
    open(os.path.join(attempts, f"{index}.{uuid.uuid4().hex}"), "w").close()
    width = len(str(count - 1))
    out = os.path.join(shard_dir, f"shard-{index:0{width}d}-of-{count}.baler")
    if threads is None:
        try:
            from distributed import get_worker

            threads = get_worker().state.nthreads
        except (ImportError, ValueError, AttributeError):
            threads = 0
    cmd = [baler, "compress", input, "--plan", plan, "--shard", f"{index}/{count}"]
    cmd += ["-o", out, "-f", "-q", "-T", str(threads)]
    secs, cpu = _run(cmd, f"shard {index} of {count}")
    return {
        "shard": index,
        "path": out,
        "bytes": os.path.getsize(out),
        "seconds": secs,
        "cpu": cpu,
        "host": socket.gethostname(),
    }


def _size(n):
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1000


def raw_bytes(baler, container):
    """Bytes of values a container holds, from the array line of `baler info` (dtype, shape)."""
    out = subprocess.run(
        [baler, "info", container], capture_output=True, text=True, check=True
    ).stdout
    for line in out.splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] == "array":
            size = {"f32": 4, "f64": 8}[words[1]]
            dims = line.split(None, 2)[2].split(",")[0].split("×")
            n = 1
            for d in dims:
                n *= int(d.strip())
            return n * size
    raise RuntimeError(f"baler info {container}: no array line")


def compress_sharded(
    client,
    input,
    output,
    shards,
    plan=None,
    plan_args=(),
    baler="baler",
    retries=1,
    shard_dir=None,
    keep_shards=False,
    threads=None,
    log=print,
):
    """Plans (unless `plan` is given), compresses `shards` shards of `input` on `client`'s
    workers with `retries` retries each, joins them into `output` here. Returns the summary
    (a dict); raises on failure after removing the shards it made (`output` is then not
    written)."""
    from distributed import as_completed

    t0 = time.time()
    output = os.path.abspath(output)
    input_path = os.path.abspath(input.split(":/", 1)[0])
    input = input_path + (":/" + input.split(":/", 1)[1] if ":/" in input else "")
    made_dir = shard_dir is None
    shard_dir = os.path.abspath(shard_dir or output + ".shards")
    if os.path.exists(output):
        raise FileExistsError(f"{output} exists; remove it first")
    os.makedirs(shard_dir, exist_ok=not made_dir)
    summary = {"input": input, "output": output, "shards": shards, "retries_allowed": retries}
    futures = []
    try:
        if plan is None:
            plan = os.path.join(shard_dir, "plan.baler-plan")
            log(f"planning {input} on the cluster ...")
            fut = client.submit(
                make_plan, baler, input, plan, list(plan_args), retries=retries, pure=False
            )
            summary["plan"] = fut.result()
            log(f"plan: {summary['plan']['seconds']:.2f} s on {summary['plan']['host']}")
        plan = os.path.abspath(plan)
        t1 = time.time()
        futures = client.map(
            compress_shard,
            [baler] * shards,
            [input] * shards,
            [plan] * shards,
            range(shards),
            [shards] * shards,
            [shard_dir] * shards,
            [threads] * shards,
            retries=retries,
            pure=False,
        )
        done = []
        for k, fut in enumerate(as_completed(futures), 1):
            r = fut.result()
            done.append(r)
            log(
                f"[{k}/{shards}] shard {r['shard']}: {_size(r['bytes'])} in {r['seconds']:.2f} s "
                f"({r['cpu']:.2f} s CPU) on {r['host']}"
            )
        t2 = time.time()
        done.sort(key=lambda r: r["shard"])
        attempts = {}
        for name in os.listdir(os.path.join(shard_dir, "attempts")):
            i = int(name.split(".")[0])
            attempts[i] = attempts.get(i, 0) + 1
        cmd = [baler, "concat", *[r["path"] for r in done], "-o", output, "-q"]
        _run(cmd, "baler concat")
        t3 = time.time()
        raw = raw_bytes(baler, output)
        out_bytes = os.path.getsize(output)
        summary.update(
            {
                "bytes_in": raw,
                "bytes_out": out_bytes,
                "ratio": raw / out_bytes if raw else None,
                "seconds": {
                    "plan": t1 - t0,
                    "shards": t2 - t1,
                    "concat": t3 - t2,
                    "total": t3 - t0,
                },
                "shard_seconds": [r["seconds"] for r in done],
                "shard_cpu": [r["cpu"] for r in done],
                "cpu": sum(r["cpu"] for r in done),
                "hosts": sorted({r["host"] for r in done}),
                "retries": {i: n - 1 for i, n in sorted(attempts.items()) if n > 1},
            }
        )
    except BaseException:
        # The shards not started are cancelled, and the ones running are waited for, so that
        # none writes into the directory after it is removed.
        _stop(client, futures)
        if made_dir:
            shutil.rmtree(shard_dir, ignore_errors=True)
        raise
    if keep_shards:
        shutil.rmtree(os.path.join(shard_dir, "attempts"), ignore_errors=True)
    elif made_dir:
        shutil.rmtree(shard_dir, ignore_errors=True)
    else:
        for r in done:
            os.remove(r["path"])
        shutil.rmtree(os.path.join(shard_dir, "attempts"), ignore_errors=True)
    return summary


def _stop(client, futures, timeout=600):
    """Cancels `futures` and waits until none of them is still executing on a worker (a
    cancelled task that had started runs to its end)."""
    if not futures:
        return
    keys = {f.key for f in futures}
    client.cancel(futures)

    def executing(dask_worker):
        return [str(ts.key) for ts in dask_worker.state.executing]

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            running = client.run(executing)
        except Exception:  # the cluster is going away: nothing more to wait for
            return
        if not any(k in {str(x) for x in keys} for ks in running.values() for k in ks):
            return
        time.sleep(0.1)


def describe(s):
    """The summary as a few lines of text."""
    sec = s["seconds"]
    times = sorted(s["shard_seconds"])
    lines = [
        f"{s['input']} -> {s['output']}: "
        + (
            f"{_size(s['bytes_in'])} -> {_size(s['bytes_out'])} ({s['ratio']:.2f}x), "
            if s["bytes_in"]
            else f"{_size(s['bytes_out'])}, "
        )
        + f"{s['shards']} shards on {len(s['hosts'])} host(s)",
        f"  time      {sec['total']:.2f} s: plan {sec['plan']:.2f}, shards {sec['shards']:.2f}, "
        f"concat {sec['concat']:.2f}"
        + (f" ({s['bytes_in'] / 1e6 / sec['total']:.0f} MB/s overall, "
           f"{s['bytes_in'] / 1e6 / sec['shards']:.0f} MB/s while compressing)"
           if s["bytes_in"] else ""),
        f"  per shard {times[0]:.2f} / {times[len(times) // 2]:.2f} / {times[-1]:.2f} s "
        f"(min / median / max), CPU {s['cpu']:.2f} s in all",
        "  retries   "
        + (
            ", ".join(f"shard {i}: {n}" for i, n in s["retries"].items())
            if s["retries"]
            else "none"
        ),
    ]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Plan options (with --bound; ignored with --plan) are passed to `baler plan`.",
    )
    ap.add_argument("input", help="a .npy file, FILE.h5:/dataset, or a raw file (--dtype, --shape)")
    ap.add_argument("-o", "--output", required=True, help="the container to write")
    ap.add_argument("--shards", type=int, required=True, help="number of shards (tasks)")
    ap.add_argument("--plan", help="a plan from `baler plan` (else one is made on the cluster)")
    ap.add_argument("-b", "--bound", help="error bound, as for baler compress (e.g. rel:1e-3)")
    ap.add_argument("--bounds", help="bounds file")
    ap.add_argument("--bound-col", action="append", default=[], metavar="COL=SPEC")
    for flag in ("--effort", "--model", "--chunk-size", "--layout", "--names", "--dtype", "--shape", "--dataset"):
        ap.add_argument(flag)
    ap.add_argument("--scheduler", help="address of a Dask scheduler (default: a LocalCluster)")
    ap.add_argument("--workers", type=int, default=None, help="LocalCluster workers (default: one per core)")
    ap.add_argument("--retries", type=int, default=1, help="retries per task (default 1)")
    ap.add_argument("--baler", default="baler", help="the baler binary on the workers (default: on PATH)")
    ap.add_argument("--threads", type=int, default=None, help="baler threads per shard (default: the worker's)")
    ap.add_argument("--shard-dir", help="where the shards go (default: OUTPUT.shards, removed after)")
    ap.add_argument("--keep-shards", action="store_true")
    ap.add_argument("--json", help="also write the summary as JSON to this file")
    a = ap.parse_args(argv)
    if a.shards < 1:
        ap.error("--shards must be at least 1")
    if a.plan is None and a.bound is None and a.bounds is None:
        ap.error("give --bound (or --bounds) for the plan, or --plan PLAN")
    plan_args = []
    for flag in ("bound", "bounds", "effort", "model", "chunk_size", "layout", "names", "dtype", "shape", "dataset"):
        v = getattr(a, flag)
        if v is not None:
            plan_args += ["--" + flag.replace("_", "-"), v]
    for bc in a.bound_col:
        plan_args += ["--bound-col", bc]
    baler = a.baler
    if os.sep in baler:
        baler = os.path.abspath(baler)

    from distributed import Client, LocalCluster

    cluster = None
    if a.scheduler:
        client = Client(a.scheduler)
    else:
        workers = a.workers or os.cpu_count() or 1
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    try:
        s = compress_sharded(
            client,
            a.input,
            a.output,
            a.shards,
            plan=a.plan,
            plan_args=plan_args,
            baler=baler,
            retries=a.retries,
            shard_dir=a.shard_dir,
            keep_shards=a.keep_shards,
            threads=a.threads,
            log=lambda m: print(m, file=sys.stderr, flush=True),
        )
    except Exception as e:  # noqa: BLE001 - the driver reports any failure and exits 1
        print(f"baler_dask: error: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    print(describe(s), file=sys.stderr)
    if a.json:
        import json

        with open(a.json, "w") as f:
            json.dump(s, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
