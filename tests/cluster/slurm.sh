#!/usr/bin/env bash
# The Slurm recipe (scripts/slurm/) on a real, single-node Slurm cluster made on this machine.
#
#   sudo tests/cluster/slurm.sh            # as root, on Debian 12 (CI runs as root)
#
# Installs what is missing with apt-get (slurmctld slurmd slurm-client munge: about 13 MB),
# starts munged, slurmctld and slurmd by hand (no systemd) with their keys, sockets, state,
# spool and logs in a temporary directory and a slurm.conf of one node on loopback (ports
# 16817/16818, not the default ones), then:
#   * makes a float32 table of BALER_SLURM_TEST_MB megabytes (default 200), or takes the .npy
#     file BALER_SLURM_TEST_INPUT names (a table, or a field, checked over all its values), and
#     its plan;
#   * scripts/slurm/submit.sh: 4 array tasks and the dependent concat job; the joined file must
#     be byte for byte `baler compress INPUT --plan PLAN` in one process, and decompress within
#     the bound (rel:1e-3 of each column's range) with the NaNs in place;
#   * concat refuses a missing shard (non-zero, 'missing'); the shard redone alone as
#     `sbatch --array=K baler-shards.sbatch ... N` joins to the same bytes again, and a lone task
#     without N is refused;
# and tears everything down on exit (jobs, daemons, the temporary directory: BALER_SLURM_KEEP=1
# keeps the directory). BALER names a baler binary to use instead of building
# target/release/baler. Prints timings; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

mb=${BALER_SLURM_TEST_MB:-200}
shards=4
rel=1e-3
ctld_port=16817
slurmd_port=16818

say() { echo "slurm-test: $*"; }
fail() {
  echo "slurm-test: FAIL: $*" >&2
  exit 1
}
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
timings=()
timed() { timings+=("$(printf '%-34s %6s s' "$1" "$2")"); }

# --- Prerequisites -----------------------------------------------------------------------------
[[ $(id -u) -eq 0 ]] ||
  fail "run as root: it installs packages and starts munged, slurmctld and slurmd (CI runs as root)"
[[ $mb =~ ^[0-9]+$ && $mb -ge 1 ]] || fail "BALER_SLURM_TEST_MB must be a whole number of MB, not '$mb'"

need=()
for c in munged slurmctld slurmd sbatch sinfo scontrol squeue scancel; do
  command -v "$c" >/dev/null || need+=("$c")
done
if ((${#need[@]})); then
  command -v apt-get >/dev/null ||
    fail "missing ${need[*]} and no apt-get to install them (this test needs Debian/Ubuntu: packages slurmctld slurmd slurm-client munge)"
  say "installing slurmctld slurmd slurm-client munge (missing: ${need[*]})"
  t=$(now)
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
  timed "apt-get install (4 packages + deps)" "$(since "$t")"
fi
say "$(slurmctld -V), $(munged -V 2>&1 | head -n1)"

if [[ -z ${BALER:-} ]]; then
  t=$(now)
  cargo build --release -q
  BALER=$root/target/release/baler
  timed "cargo build --release" "$(since "$t")"
fi
BALER=$(realpath -- "$BALER")
[[ -x $BALER ]] || fail "no baler binary at $BALER"
export BALER
py=$(scripts/cluster-venv.sh)

# --- Teardown ----------------------------------------------------------------------------------
# Every daemon runs in the foreground of a background job of this shell: killed by its pid.
work=""
pids=()
submitted=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if ((rc != 0)) && [[ -n $work && -d $work ]]; then
    for f in "$work"/log/* "$work"/*.shards/slurm-*.out "$work"/redo/slurm-*.out; do
      [[ -s $f ]] || continue
      echo "----- ${f#"$work"/} (last 40 lines)" >&2
      tail -n 40 "$f" >&2
    done
  fi
  if ((${#submitted[@]})) && [[ -n ${SLURM_CONF:-} ]]; then
    scancel "${submitted[@]}" 2>/dev/null
    for _ in $(seq 40); do # up to 20 s for running steps to end before slurmd goes
      [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
      sleep 0.5
    done
  fi
  local i p
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do # slurmd, slurmctld, munged
    p=${pids[i]}
    kill "$p" 2>/dev/null || continue
    for _ in $(seq 20); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  if [[ -n $work && -d $work ]]; then
    if [[ ${BALER_SLURM_KEEP:-0} == 1 ]]; then
      say "kept $work"
    else
      rm -rf -- "$work"
    fi
  fi
  if ((rc != 0)); then echo "slurm-test: FAILED (exit $rc)" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# munged wants every directory above its socket searchable by all (mktemp makes 0700).
work=$(mktemp -d "${TMPDIR:-/tmp}/baler-slurm.XXXXXX")
chmod 755 "$work"
mkdir -p "$work"/{etc,run,state,spool,log,redo}
chmod 700 "$work/etc"

# --- munge and Slurm ---------------------------------------------------------------------------
t=$(now)
dd if=/dev/urandom of="$work/etc/munge.key" bs=1024 count=1 status=none
chmod 600 "$work/etc/munge.key"
munged -F --socket="$work/run/munge.socket" --key-file="$work/etc/munge.key" \
  --pid-file="$work/run/munged.pid" --seed-file="$work/etc/munged.seed" \
  --log-file="$work/log/munged.log" >>"$work/log/munged.out" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
  [[ -S $work/run/munge.socket ]] && break
  kill -0 "${pids[0]}" 2>/dev/null || fail "munged exited"
  sleep 0.1
done
munge -S "$work/run/munge.socket" -n </dev/null | unmunge -S "$work/run/munge.socket" >/dev/null ||
  fail "munge does not work"

# The controller must be named as this host calls itself (short name); the node is given its
# name with slurmd -N and its address here, so neither needs the name to resolve.
node=$(hostname)
node=${node%%.*}
cpus=$(nproc)
export SLURM_CONF=$work/etc/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=balertest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$work/run/munge.socket
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/run/slurmctld.pid
SlurmdPidFile=$work/run/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
MinJobAge=600
KillWait=5
InactiveLimit=0
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -D -i >>"$work/log/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -N "$node" >>"$work/log/slurmd.out" 2>&1 &
pids+=($!)
up=""
for _ in $(seq 120); do # 60 s
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || fail "a daemon exited (pid $p)"; done
  state=$(sinfo -h -n "$node" -o %T 2>/dev/null || true)
  if [[ $state == idle ]]; then
    up=1
    break
  fi
  sleep 0.5
done
[[ -n $up ]] || fail "node $node not idle after 60 s (sinfo: '${state:-no answer}')"
timed "munged + slurmctld + slurmd up" "$(since "$t")"
say "node $node idle ($cpus CPUs), SLURM_CONF=$SLURM_CONF"

# Waits for every job (array task) of $1 to end, up to $2 seconds; fails unless all COMPLETED.
wait_job() {
  local id=$1 limit=$2 t0=$SECONDS out states
  while :; do
    out=$(scontrol -o show job "$id") || fail "scontrol show job $id failed"
    states=$(grep -o 'JobState=[A-Z_]*' <<<"$out" | sort | uniq -c | tr -s ' \n' ' ')
    if grep -q 'Reason=DependencyNeverSatisfied' <<<"$out"; then
      fail "job $id will never run: a job it depends on failed ($states)"
    fi
    if ! grep -qE 'JobState=(PENDING|CONFIGURING|RUNNING|COMPLETING|REQUEUED|RESIZING|SUSPENDED)' <<<"$out"; then
      grep -qvE 'JobState=COMPLETED' <<<"$out" && fail "job $id ended:$states"
      return 0
    fi
    ((SECONDS - t0 < limit)) || fail "job $id not done after $limit s:$states"
    sleep 0.5
  done
}

# --- The table, the plan, the reference -----------------------------------------------------------
input=$work/in.npy plan=$work/in.plan
t=$(now)
if [[ -n ${BALER_SLURM_TEST_INPUT:-} ]]; then
  # An array of the caller's (a field is checked against one bound over all its values).
  ln -s "$(realpath -- "$BALER_SLURM_TEST_INPUT")" "$input"
else
  "$py" tests/cluster/table.py make "$input" "$mb"
fi
timed "input ($(du -Lh "$input" | cut -f1))" "$(since "$t")"
t=$(now)
"$BALER" plan "$input" --bound "rel:$rel" -o "$plan"
timed "baler plan" "$(since "$t")"
t=$(now)
"$BALER" compress "$input" --plan "$plan" -q -o "$work/one.baler"
timed "baler compress --plan (1 process)" "$(since "$t")"

# --- The recipe: array + dependent concat -------------------------------------------------------
out=$work/out.baler
sdir=$out.shards # submit.sh's default OUTDIR
t=$(now)
ids=$(scripts/slurm/submit.sh "$input" "$plan" "$out" "$shards")
read -r array concat <<<"$ids"
[[ $array =~ ^[0-9]+$ && $concat =~ ^[0-9]+$ ]] || fail "submit.sh printed '$ids', not two job ids"
submitted+=("$array" "$concat")
wait_job "$array" 600
timed "$shards shard tasks (submit to last end)" "$(since "$t")"
t2=$(now)
wait_job "$concat" 120
timed "concat job (after the shards)" "$(since "$t2")"
[[ -f $out ]] || fail "the concat job left no $out"
ran=$(awk '/^baler-shards: task/ { n++ } END { print n + 0 }' "$sdir"/slurm-*_*.out)
((ran == shards)) || fail "$ran of $shards shard tasks logged their start"

cmp "$out" "$work/one.baler" || fail "the joined file differs from the one-process file"
say "joined file identical to the one-process file ($(stat -c %s "$out") bytes)"
t=$(now)
"$BALER" decompress "$out" -q -o "$work/dec.npy"
"$py" tests/cluster/table.py check "$input" "$work/dec.npy" "$rel"
timed "decompress + bound check" "$(since "$t")"
rm -f "$work/dec.npy"

# --- A missing shard, redone alone ---------------------------------------------------------------
k=2
rm "$sdir/shard-$k.baler"
t=$(now)
if "$BALER" concat "$sdir"/shard-*.baler -o "$work/gap.baler" 2>"$work/gap.err"; then
  fail "concat joined $((shards - 1)) of $shards shards"
fi
timed "baler concat (refusing a gap)" "$(since "$t")"
grep -qi missing "$work/gap.err" || fail "concat's refusal does not say 'missing': $(cat "$work/gap.err")"
[[ ! -e $work/gap.baler ]] || fail "concat refused but left $work/gap.baler"
say "a missing shard is refused: $(head -n1 "$work/gap.err")"

# Without N, a lone task cannot know N: refused, nothing written.
lone=$(sbatch --parsable --array=$k --output="$work/redo/slurm-%A_%a.out" \
  scripts/slurm/baler-shards.sbatch "$input" "$plan" "$sdir")
lone=${lone%%;*}
submitted+=("$lone")
if (wait_job "$lone" 60) 2>/dev/null; then fail "a lone task without N ran (job $lone)"; fi
grep -q 'give N' "$work"/redo/slurm-"$lone"_$k.out || fail "lone task without N: no 'give N' in its log"
[[ ! -e $sdir/shard-$k.baler ]] || fail "the refused lone task wrote shard $k"
say "a lone task without N is refused"

t=$(now)
redo=$(sbatch --parsable --array=$k --output="$work/redo/slurm-%A_%a.out" \
  scripts/slurm/baler-shards.sbatch "$input" "$plan" "$sdir" "$shards")
redo=${redo%%;*}
submitted+=("$redo")
wait_job "$redo" 300
timed "shard $k redone (sbatch --array=$k)" "$(since "$t")"
t=$(now)
"$BALER" concat "$sdir"/shard-*.baler -q -o "$work/again.baler"
timed "baler concat ($shards shards)" "$(since "$t")"
cmp "$work/again.baler" "$work/one.baler" || fail "with shard $k redone, the joined file differs"
say "shard $k redone alone joins to the same bytes"

echo "slurm-test: timings ($(du -Lh "$input" | cut -f1) input, $shards shards, $cpus CPUs):"
printf '  %s\n' "${timings[@]}"
echo "slurm-test: OK"
