#!/usr/bin/env bash
# Compresses INPUT with PLAN as N Slurm array tasks, then joins the shards into OUT in a job
# that runs once every task has succeeded (--dependency=afterok). Prints the two job ids on
# standard output, "ARRAYJOB CONCATJOB" (what else it says goes to standard error).
#
#   baler plan INPUT --bound rel:1e-3 -o PLAN
#   scripts/slurm/submit.sh INPUT PLAN OUT N [extra sbatch args, e.g. -p short --time=1:00:00]
#
# The extra sbatch arguments go to both jobs. The shards and the jobs' logs go to OUTDIR
# (default: OUT.shards/), which must hold no shards yet. INPUT, PLAN, OUTDIR and the binary
# (BALER, default baler on PATH) must be on a file system every node sees. A failed task K can
# be redone alone: the command is printed below (see baler-shards.sbatch).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
die() { echo "submit.sh: $*" >&2; exit 2; }

[[ $# -ge 4 ]] || die "usage: submit.sh INPUT PLAN OUT N [extra sbatch args]"
input=$1 plan=$2 out=$3 n=$4
shift 4
[[ $n =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer, not '$n'"
[[ -f $input ]] || die "no input file '$input'"
[[ -f $plan ]] || die "no plan file '$plan'"
[[ ! -e $out ]] || die "'$out' exists: remove it or choose another OUT"
command -v sbatch >/dev/null || die "sbatch not found: is this a Slurm submit host?"

# Absolute paths: the jobs may start in another directory.
abs() { realpath -m -- "$1"; }
input=$(abs "$input") plan=$(abs "$plan") out=$(abs "$out")
outdir=$(abs "${OUTDIR:-$out.shards}")
BALER=${BALER:-baler}
if [[ $BALER == */* ]]; then BALER=$(abs "$BALER"); fi
command -v "$BALER" >/dev/null || die "no baler binary '$BALER' (set BALER)"
export BALER

mkdir -p "$outdir"
if compgen -G "$outdir/shard-*.baler" >/dev/null; then
  die "$outdir already holds shards: remove them (or set OUTDIR) before submitting"
fi

# --parsable prints JOBID or JOBID;CLUSTER.
array=$(sbatch --parsable --array="0-$((n - 1))" --output="$outdir/slurm-%A_%a.out" "$@" \
  "$here/baler-shards.sbatch" "$input" "$plan" "$outdir")
array=${array%%;*}
concat=$(sbatch --parsable --dependency="afterok:$array" --output="$outdir/slurm-concat-%j.out" "$@" \
  "$here/baler-concat.sbatch" "$outdir" "$out")
concat=${concat%%;*}

echo "submit.sh: shards: job $array (array 0-$((n - 1)); shards and logs in $outdir)" >&2
echo "submit.sh: concat: job $concat (once every shard succeeded) -> $out" >&2
echo "submit.sh: redo task K alone: sbatch --array=K --output=$outdir/slurm-%A_%a.out $here/baler-shards.sbatch $input $plan $outdir $n" >&2
echo "$array $concat"
