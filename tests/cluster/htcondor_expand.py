#!/usr/bin/env python3
"""The HTCondor submit descriptions of scripts/htcondor/, parsed and expanded into job ClassAds by
HTCondor's own submit code (the `htcondor` Python bindings' Submit.jobs(), which needs no schedd
and no daemon), then the expanded jobs run here, one after another, as an execute node would run
them: their shards must join into the one-process file, byte for byte.

  htcondor_expand.py BALER WORKDIR      (tests/cluster/htcondor.sh sets it up)

Variables are given as condor_submit gives command-line `name=value` ones: as lines before the
submit description's first line. What this does not test: matchmaking, the schedd's and the
starter's handling (there is no pool here); the execution mimics a vanilla-universe job on a
shared file system (executable and arguments as expanded, working directory Iwd, stdout and
stderr to Out and Err).
"""
import filecmp
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message=".*condor_config.*")
import htcondor  # noqa: E402  (version 1 bindings: Submit.jobs() expands without a schedd)

ROOT = Path(__file__).resolve().parents[2]
SUBS = ROOT / "scripts" / "htcondor"


def fail(msg):
    sys.exit(f"htcondor-test: FAIL: {msg}")


def v2_split(args):
    """Splits an Arguments attribute (HTCondor's V2 syntax, as in the job ad) into argv:
    whitespace separates, single quotes group, '' inside them is one quote."""
    argv, cur, quoted, have, i = [], [], False, False, 0
    while i < len(args):
        c = args[i]
        if quoted:
            if c == "'":
                if args[i + 1 : i + 2] == "'":
                    cur.append("'")
                    i += 1
                else:
                    quoted = False
            else:
                cur.append(c)
        elif c == "'":
            quoted = have = True
        elif c.isspace():
            if have:
                argv.append("".join(cur))
                cur, have = [], False
        else:
            cur.append(c)
            have = True
        i += 1
    if quoted:
        fail(f"unbalanced quote in Arguments: {args!r}")
    if have:
        argv.append("".join(cur))
    return argv


def expand(sub, **variables):
    """The job ads of submit description `sub` given `variables` on the command line."""
    text = "".join(f"{k} = {v}\n" for k, v in variables.items()) + (SUBS / sub).read_text()
    return list(htcondor.Submit(text).jobs())


def refused(sub, **variables):
    try:
        expand(sub, **variables)
    except Exception:  # the bindings raise HTCondorValueError on an `error :` line
        return True
    return False


def run_job(ad):
    """Runs one expanded vanilla job as an execute node on a shared file system would."""
    argv = [ad["Cmd"]] + v2_split(ad.get("Arguments", ""))
    with open(ad["Out"], "wb") as out, open(ad["Err"], "wb") as err:
        rc = subprocess.call(argv, cwd=ad["Iwd"], stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    if rc != 0:
        fail(f"job {ad['ProcId']} ({argv}) exited {rc}: {Path(ad['Err']).read_text()}")
    return argv


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    baler, work = sys.argv[1], Path(sys.argv[2])
    n = 4
    # Paths with spaces: the descriptions quote every path argument.
    data = work / "in put"
    outdir = work / "shard dir"
    data.mkdir()
    outdir.mkdir()
    table = data / "table.npy"
    shutil.copy(ROOT / "fixtures" / "delphes_16k.npy", table)
    plan = data / "table.plan"
    subprocess.run([baler, "plan", str(table), "--bound", "rel:1e-3", "--chunk-size", "128K",
                    "-o", str(plan), "-q"], check=True)
    one = work / "one.baler"
    subprocess.run([baler, "compress", str(table), "--plan", str(plan), "-o", str(one), "-q"],
                   check=True)
    common = dict(baler=baler, input=table, plan=plan, outdir=outdir)

    # The shards: N jobs, job K compressing shard K of N.
    ads = expand("baler-shards.sub", shards=n, **common)
    if [ad["ProcId"] for ad in ads] != list(range(n)):
        fail(f"baler-shards.sub queued procs {[ad['ProcId'] for ad in ads]}, not 0..{n - 1}")
    for k, ad in enumerate(ads):
        want = ["compress", str(table), "--plan", str(plan), "--shard", f"{k}/{n}", "-T", "1",
                "-f", "-o", f"{outdir}/shard-{k}.baler"]
        got = v2_split(ad["Arguments"])
        if ad["Cmd"] != baler or got != want:
            fail(f"job {k}: {ad['Cmd']} {got}, expected {baler} {want}")
        if ad["Out"] != f"{outdir}/shard-{k}.out" or ad["UserLog"] != f"{outdir}/baler-shards.log":
            fail(f"job {k}: output {ad['Out']}, log {ad['UserLog']}")
        if ad["ShouldTransferFiles"] != "NO" or ad["TransferExecutable"] is not False:
            fail(f"job {k}: transfers files (ShouldTransferFiles {ad['ShouldTransferFiles']})")
        if "FileSystemDomain" not in str(ad["Requirements"]):
            fail(f"job {k}: Requirements {ad['Requirements']} do not ask for this file system")
    print(f"baler-shards.sub: {n} jobs, job K: {ads[1]['Cmd']} {ads[1]['Arguments']} (K = 1)")

    # Required variables, a lone shard redone, threads.
    for missing in ("input", "plan", "outdir"):
        args = {k: v for k, v in common.items() if k != missing}
        if not refused("baler-shards.sub", shards=n, **args):
            fail(f"baler-shards.sub without {missing} was not refused")
    if not refused("baler-concat.sub", baler=baler, outdir=outdir):
        fail("baler-concat.sub without out was not refused")
    redo = expand("baler-shards.sub", shards=n, shard=2, count=1, **common)
    if len(redo) != 1 or v2_split(redo[0]["Arguments"])[5] != f"2/{n}":
        fail(f"shard=2 count=1: {[ad['Arguments'] for ad in redo]}")
    four = expand("baler-shards.sub", shards=n, cpus=4, **common)
    if v2_split(four[0]["Arguments"])[6:8] != ["-T", "4"] or four[0]["RequestCpus"] != 4:
        fail(f"cpus=4: {four[0]['Arguments']}, RequestCpus {four[0]['RequestCpus']}")
    print("baler-shards.sub: refuses a missing input, plan or outdir; shard=K count=1 redoes "
          "shard K alone; cpus=C requests C CPUs and gives baler -T C")

    # The concat job, one.
    out = work / "joined file.baler"
    cads = expand("baler-concat.sub", baler=baler, outdir=outdir, out=out)
    if len(cads) != 1:
        fail(f"baler-concat.sub queued {len(cads)} jobs")
    cargv = v2_split(cads[0]["Arguments"])
    want = ["-c", 'exec "$0" concat "$1"/shard-*.baler -o "$2"', baler, str(outdir), str(out)]
    if cads[0]["Cmd"] != "/bin/sh" or cargv != want:
        fail(f"concat job: {cads[0]['Cmd']} {cargv}, expected /bin/sh {want}")
    print(f"baler-concat.sub: 1 job: /bin/sh {cads[0]['Arguments']}")

    # Run them: shards in reverse order, then concat (first with a shard missing).
    for ad in reversed(ads):
        run_job(ad)
    held = outdir / "shard-1.baler"
    os.rename(held, work / "held.baler")
    sh = [cads[0]["Cmd"]] + cargv
    r = subprocess.run(sh, cwd=cads[0]["Iwd"], capture_output=True, text=True)
    if r.returncode == 0 or "missing" not in r.stderr or out.exists():
        fail(f"concat with shard 1 missing: exit {r.returncode}, {r.stderr!r}")
    os.rename(work / "held.baler", held)
    run_job(cads[0])
    if not filecmp.cmp(out, one, shallow=False):
        fail("the joined file differs from the one-process file")
    print(f"ran the {n} expanded shard jobs and the concat job: the joined file is the "
          f"one-process file, byte for byte ({out.stat().st_size} bytes); with a shard missing "
          "the concat job fails ('missing')")
    print("htcondor-test: OK")


if __name__ == "__main__":
    main()
