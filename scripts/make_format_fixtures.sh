#!/usr/bin/env bash
# Writes fixtures/format/vN/: small .baler containers written by this checkout's baler, each
# with the array `baler decompress` makes of it (NAME.expected.npy), and a README.md recording
# the commit, every command line, and what `baler info --columns` reports for each file.
# cli/tests/format_compat.rs decodes every one of them and compares bit for bit: files written by a
# version of baler must keep decoding identically in every later version.
#
#     scripts/make_format_fixtures.sh [OUT_DIR]     # default: fixtures/format/v<format version>
#
# Run it once per container format version, from a clean checkout (it refuses a modified src/,
# Cargo.toml or Cargo.lock unless ALLOW_DIRTY=1), and never again over a folder already
# committed: it refuses an OUT_DIR that holds fixtures unless FORCE=1. Its inputs are cut from
# fixtures/*.npy (and a fixed pseudo-random sequence) with numpy (python3, or PYTHON=...; a
# virtual environment with PyPI numpy is made under /tmp when python3 has none). The output is
# deterministic: running it twice on one commit writes the same bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

py=${PYTHON:-python3}
if ! "$py" -c 'import numpy' 2>/dev/null; then
  venv=${BALER_NUMPY_VENV:-/tmp/baler-numpy-venv}
  if ! "$venv/bin/python" -c 'import numpy' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q numpy
  fi
  py="$venv/bin/python"
fi

if [[ ${ALLOW_DIRTY:-0} != 1 ]] && [[ -n $(git status --porcelain -- src Cargo.toml Cargo.lock) ]]; then
  echo "make_format_fixtures: src/, Cargo.toml or Cargo.lock has changes: the fixtures" >&2
  echo "would not be what a commit writes (ALLOW_DIRTY=1 to go on anyway)" >&2
  exit 1
fi
commit=$(git rev-parse HEAD)

cargo build --release --quiet --bin baler --example stream_fixture
B=target/release/baler
SF=target/release/examples/stream_fixture
export HDF5_USE_FILE_LOCKING=FALSE

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
IN=$work/in
mkdir -p "$IN"

# The format version this build writes, from a container of its own.
"$py" -c 'import numpy as np; np.save("'"$work"'/probe.npy", np.arange(8, dtype=np.float32))'
# (any bound: every file is written in the newest version)
"$B" compress "$work/probe.npy" --bound bits:10 -q -o "$work/probe.baler"
version=$("$B" info "$work/probe.baler" | sed -n 's/.*format version \([0-9]*\).*/\1/p' | head -n 1)
[[ -n $version ]] || { echo "make_format_fixtures: no format version in baler info" >&2; exit 1; }

OUT=${1:-fixtures/format/v$version}
if compgen -G "$OUT/*.baler" >/dev/null && [[ ${FORCE:-0} != 1 ]]; then
  echo "make_format_fixtures: $OUT already holds fixtures; they are a promise, not a cache." >&2
  echo "Write a new version's fixtures to a new folder (FORCE=1 to overwrite anyway)." >&2
  exit 1
fi
mkdir -p "$OUT"
rm -f "$OUT"/*.baler "$OUT"/*.expected.npy "$OUT"/README.md

# ---------------------------------------------------------------------------------------------
# The inputs: slices of fixtures/*.npy, special values, and a fixed pseudo-random sequence.
cat >"$work/cut.py" <<'EOF'
import sys
import numpy as np

out = sys.argv[1]
fx = "fixtures/"

def lcg(n, seed):
    """n 64-bit states of Knuth's MMIX LCG (the same numbers on every machine and numpy)."""
    s, v = seed, np.empty(n, dtype=np.uint64)
    for i in range(n):
        s = (s * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        v[i] = s
    return v

def save(name, a):
    np.save(f"{out}/{name}", np.ascontiguousarray(a))

delphes = np.load(fx + "delphes_16k.npy")
save("delphes_800.npy", delphes[:800])
save("delphes_4000.npy", delphes[:4000])

# Rows 8000..8499 with special values placed in lossy (rel, abs) and lossless columns.
t = delphes[8000:8500].copy()
bits = lambda b: np.array([b], dtype=np.uint32).view(np.float32)[0]
specials = {
    # (row, column): value; columns 2 Px rel, 5 PT abs:0.05, 6 Eta rel, 13 PID lossless
    (3, 2): np.float32(np.nan),
    (4, 2): np.float32(np.inf),
    (5, 2): np.float32(-np.inf),
    (6, 2): np.float32(-0.0),
    (7, 2): bits(0x00000001),    # smallest subnormal
    (8, 2): bits(0x807FFFFF),    # largest negative subnormal
    (9, 2): bits(0x7FC01234),    # NaN with a payload
    (10, 2): bits(0xFFC00001),   # negative NaN
    (11, 2): bits(0x7F800001),   # signalling NaN
    (20, 5): np.float32(-0.0),
    (21, 5): np.float32(np.nan),
    (22, 5): bits(0x00000010),
    (23, 5): np.float32(np.inf),
    (30, 6): np.float32(-np.inf),
    (31, 6): np.float32(-0.0),
    (32, 6): bits(0x00400000),
    (40, 13): np.float32(np.nan),
    (41, 13): np.float32(-0.0),
    (42, 13): bits(0x00000003),
    (43, 13): np.float32(-np.inf),
    (299, 7): bits(0xFFFFFFFF),  # in the third chunk
    (300, 7): np.float32(-0.0),
}
for (r, c), v in specials.items():
    t[r, c] = v
save("delphes_specials_500.npy", t)

save("cms_200.npy", np.load(fx + "cms_ak4jets.npy")[:200])

cfd = np.load(fx + "cfd_decay_ux.npy")
save("cfd_4x32x32.npy", cfd[:4, :32, :32])
save("cfd_16x32x32.npy", cfd[:16, :32, :32])
save("cfd_every15_4x32x32.npy", cfd[::15][:4, :32, :32])

# A rough 3-D volume: a triple running sum of sums of 12 uniforms (Lorenzo 3-D pays there).
u = (lcg(12 * 8 * 24 * 24, 5) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
u = u.reshape(12, 8, 24, 24).sum(axis=0) - 6.0
save("volume_8x24x24.npy", np.cumsum(np.cumsum(np.cumsum(u, 0), 1), 2).astype(np.float32))

save("ocean_48x96.npy", np.load(fx + "ocean_temp.npy")[112:160, 0:96])

save("tau_1500_f64.npy", np.load(fx + "tau_pt_f64.npy")[:1500])

save("hst_2x48x96.npy", np.load(fx + "hst_frame.npy")[:, 32:80, 16:112])

nexo = np.load(fx + "nexo_8k.npy")
save("nexo_2000.npy", nexo[:2000])
save("nexo_1000_f64.npy", nexo[2000:3000].astype(np.float64))
nexo[:400].astype("<f4").tofile(f"{out}/nexo_400.raw")
s = nexo[400:800].copy()
s[350:, :3] *= 20.0  # past the range the first records show: more bits, still the bound
s.astype("<f4").tofile(f"{out}/nexo_400_later_wider.raw")

# Four chunks of 1024 float32 (4 KiB): random bit patterns (stored raw), 512 of them twice
# (LZ4 pays), a smooth ramp (coded), and 16 random patterns in a random order (coded: few
# distinct words).
words = lambda n, seed: (lcg(n, seed) >> np.uint64(32)).astype(np.uint32)
noise = words(1024, 7).view(np.float32)
pat = words(512, 9).view(np.float32)
ramp = np.arange(1024, dtype=np.float32) * np.float32(0.25) + np.float32(100)
few = words(16, 11)[(lcg(1024, 13) >> np.uint64(60)).astype(np.int64)].view(np.float32)
save("bits_4x1024.npy", np.concatenate([noise, pat, pat, ramp, few]))

# A smooth 3-D volume of 270,336 values in 32 slices (one chunk: one lossless column longer
# than a stream segment, 262,144 codes): a triple running sum of pseudo-random steps,
# mantissas cut to 10 bits.
u = (lcg(32 * 96 * 88, 17) >> np.uint64(40)).astype(np.float64) / float(1 << 24) - 0.5
v = np.cumsum(np.cumsum(np.cumsum(u.reshape(32, 96, 88), 0), 1), 2).astype(np.float32)
save("volume_32x96x88.npy", (v.view(np.uint32) & np.uint32(0xFFFFE000)).view(np.float32))

# Four 32 x 48 planes packed as GRIB packs a field: per plane an offset that is no multiple of
# the f32 spacing, a binary step, integers below 60,001 (a lattice, format version 8).
c = cfd[:4, :32, :48].astype(np.float64)
lo = c.min(axis=(1, 2), keepdims=True)
hi = c.max(axis=(1, 2), keepdims=True)
k = np.floor((c - lo) / (hi - lo) * 60000.0)
p = np.arange(4, dtype=np.float64).reshape(4, 1, 1)
save("packed_4x32x48.npy", (k * 2.0 ** (-9 - p % 3) + (200.0 + 7.123456789 * p)).astype(np.float32))

# A table of 8 blocks of 1024 rows, each block the first one's values a little changed (a grid
# listed block by block, as ICON lists its cells): the value 1024 rows before predicts best.
base = 200.0 + 200.0 * ((lcg(1024, 9) >> np.uint64(40)).astype(np.float64) / float(1 << 24))
block = np.arange(8).repeat(1024)
save("blocks_8192x2.npy", np.stack([np.tile(base, 8) * (1.0 + block * 1e-4),
                                    np.tile(base[::-1], 8) * (1.0 - block * 2e-4)],
                                   axis=1).astype(np.float32))
EOF
"$py" "$work/cut.py" "$IN"

# ---------------------------------------------------------------------------------------------
# What a container holds, for the README: header variant, chunk kinds, predictors.
cat >"$work/describe.py" <<'EOF'
import re, struct, sys

path, info, columns = sys.argv[1], open(sys.argv[2]).read(), open(sys.argv[3]).read()
model_info = open(sys.argv[4]).read() if len(sys.argv) > 4 else None
d = open(path, "rb").read()
assert d[:8] == b"\x89BALER\r\n", path
version, body_len = struct.unpack_from("<HI", d, 8)
assert d[14] == 0x01  # the ARRAY section comes first
rank = d[16 + 2]
shape = struct.unpack_from("<%dQ" % rank, d, 16 + 3)
streamed = shape[0] == (1 << 64) - 1
p, kinds = 14 + body_len + 4, []
while d[p] == ord("C"):
    _, _, flags, plen = struct.unpack_from("<QIHI", d, p + 1)
    kinds.append(("coded", "raw", "LZ4")[flags & 3])
    p += 27 + plen
counts = {}
for k in kinds:
    counts[k] = counts.get(k, 0) + 1
preds, lossless, names, by_model = {}, 0, [], []
rows = columns.split("predictors (chunks)", 1)[1].strip().splitlines()
for line in rows:
    m = re.match(r"\s*(\d+)\s+(\S+)\s+\d+\s+\S+\s+\S+\s+\d+\s+(\d+)/(\d+)\s*(.*)$", line)
    if not m:
        continue
    names.append(m.group(2))
    lossless += int(m.group(3))
    for part in filter(None, (x.strip() for x in m.group(5).split(","))):
        name, k = part.rsplit(" ", 1)
        preds[name] = preds.get(name, 0) + int(k)
        if name == "model":
            by_model.append(int(m.group(1)))
field = lambda key: re.search(r"^\s*" + key + r"\s+(.*)$", info, re.M).group(1).strip()
array, ranges, model = field("array"), field("ranges"), field("model")
print(f"| array | {array}; header shape: {'first dimension streamed (unknown until the end mark)' if streamed else 'known'} |")
print(f"| ranges | {ranges} |")
print(f"| model | {model} |")
print(f"| chunks | {len(kinds)}: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + " |")
pr = ", ".join(f"{k} {v}" for k, v in sorted(preds.items(), key=lambda kv: -kv[1]))
print(f"| predictors (column × coded chunk) | {pr or '—'}; bit-exact (lossless) {lossless} |")
if model_info is not None:
    # `baler info MODEL`: per column, its inputs and hidden units (the model names columns colN).
    hidden = {}
    for line in model_info.splitlines():
        m = re.match(r"\s*col(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s", line)
        if m:
            hidden[int(m.group(1))] = int(m.group(3))
    net = [names[j] for j in by_model if hidden.get(j, 0) > 0]
    lin = [names[j] for j in by_model if hidden.get(j, 0) == 0]
    print(f"| coded with the model's hidden layer | {', '.join(net) or '— (the model has hidden units only for columns coded otherwise here)'} |")
    print(f"| coded with the model's linear part only | {', '.join(lin) or '—'} |")
print(f"| size | {len(d)} bytes |")
EOF

readme_body=$work/body.md
: >"$readme_body"

# fixture NAME "what it covers" ORIGINAL COMMAND [MODEL]: COMMAND (run through bash -c, so a
# pipe can be part of it) writes $OUT/NAME.baler from ORIGINAL (the arguments `baler evaluate`
# takes for it); MODEL: the model file it was given, to say which columns used its hidden layer.
fixture() {
  local name=$1 covers=$2 input=$3 cmd=$4 model=${5:-}
  local f=$OUT/$name.baler
  echo "== $name" >&2
  bash -c "$cmd"
  "$B" decompress "$f" -o "$OUT/$name.expected.npy" -q
  # The container meets its bounds against the array it was made from.
  # shellcheck disable=SC2086
  "$B" evaluate $input "$f" -q
  "$B" info "$f" >"$work/info.txt"
  "$B" info --columns "$f" >"$work/columns.txt"
  {
    echo "### \`$name.baler\`"
    echo
    echo "$covers"
    echo
    echo '```sh'
    echo "${cmd//$IN/IN}"
    echo '```'
    echo
    echo "| | |"
    echo "|---|---|"
    if [[ -n $model ]]; then
      "$B" info "$model" >"$work/model.txt"
      "$py" "$work/describe.py" "$f" "$work/info.txt" "$work/columns.txt" "$work/model.txt"
    else
      "$py" "$work/describe.py" "$f" "$work/info.txt" "$work/columns.txt"
    fi
    echo "| expected | \`$name.expected.npy\`, $(stat -c %s "$OUT/$name.expected.npy") bytes |"
    echo
  } >>"$readme_body"
}

if [[ $version == 1 ]]; then
# Version 1 (written by 3de2bbb): every predictor, chunk kind and header variant.
# The learned models, trained on whole fixture files (deterministic: fixed seed, any thread count).
echo "== models" >&2
"$B" train fixtures/delphes_16k.npy --bound rel:1e-3 -T 1 -q -o "$IN/delphes_rel1e-3.bmdl"
"$B" train fixtures/cms_ak4jets.npy --bound abs:1e-2 --hidden 4 --epochs 40 -T 1 -q \
  -o "$IN/cms_abs1e-2_hidden4.bmdl"
train_cmds="$B train fixtures/delphes_16k.npy --bound rel:1e-3 -T 1 -q -o IN/delphes_rel1e-3.bmdl
$B train fixtures/cms_ak4jets.npy --bound abs:1e-2 --hidden 4 --epochs 40 -T 1 -q -o IN/cms_abs1e-2_hidden4.bmdl"

delphes_names=$(cat fixtures/delphes_16k.columns)
cms_names=$(cat fixtures/cms_ak4jets.columns)
nexo_names=$(cat fixtures/nexo_8k.columns)

fixture table_model_delphes \
  "Table, f32, 800 × 16 (first rows of \`delphes_16k.npy\`), \`rel:1e-3\`, with a learned model (trained on the whole 16,384-row file: a small table gets none from \`--model auto\`) stored in the MODEL section (its one column with hidden units, Charge, is coded otherwise here: the columns use its linear part); 4 chunks; four all-zero columns (lossless: \`rel\` on a constant column)." \
  "$IN/delphes_800.npy" \
  "$B compress $IN/delphes_800.npy --bound rel:1e-3 --model $IN/delphes_rel1e-3.bmdl --chunk-size 16K -T 1 -q -o $OUT/table_model_delphes.baler" \
  "$IN/delphes_rel1e-3.bmdl"

fixture table_model_hidden_cms_abs \
  "Table, f32, 200 × 59 (first rows of \`cms_ak4jets.npy\`), \`abs:1e-2\` on every column, with a learned model whose network has a hidden ReLU layer (4 units per column) for some of the columns the chunk codes with it (listed below), column names." \
  "$IN/cms_200.npy" \
  "$B compress $IN/cms_200.npy --bound abs:1e-2 --model $IN/cms_abs1e-2_hidden4.bmdl --names $cms_names -T 1 -q -o $OUT/table_model_hidden_cms_abs.baler" \
  "$IN/cms_abs1e-2_hidden4.bmdl"

fixture table_names_bounds_specials \
  "Table, f32, 500 × 16 (rows 8000–8499 of \`delphes_16k.npy\`), no model, \`rel:1e-3\` with per-column bounds by name and by index (PID, Status, Charge lossless; PT \`abs:0.05\`; column 1 (E) \`abs:1\`), column names; special values in rel, abs and lossless columns: NaN (quiet, with a payload, negative, signalling), ±Inf, −0.0, subnormals (see \`cut.py\` in the script); 4 chunks." \
  "$IN/delphes_specials_500.npy" \
  "$B compress $IN/delphes_specials_500.npy --bound rel:1e-3 --model none --names $delphes_names --bound-col PID=lossless --bound-col Status=lossless --bound-col Charge=lossless --bound-col PT=abs:0.05 --bound-col 1=abs:1 --chunk-size 8K -T 1 -q -o $OUT/table_names_bounds_specials.baler"

fixture field3d_cfd_interp_rel1e-3 \
  "3-D field, f32, 4 × 32 × 32 (first 4 time steps of \`cfd_decay_ux.npy\`, one corner), \`rel:1e-3\`: multilevel interpolation over every axis." \
  "$IN/cfd_4x32x32.npy" \
  "$B compress $IN/cfd_4x32x32.npy --bound rel:1e-3 -T 1 -q -o $OUT/field3d_cfd_interp_rel1e-3.baler"

fixture field3d_cfd_interp_rel1e-2 \
  "The same 3-D field at \`rel:1e-2\`." \
  "$IN/cfd_4x32x32.npy" \
  "$B compress $IN/cfd_4x32x32.npy --bound rel:1e-2 -T 1 -q -o $OUT/field3d_cfd_interp_rel1e-2.baler"

fixture field3d_cfd_interp_planes_rel1e-2 \
  "3-D field, f32, 4 × 32 × 32 (every 15th time step of \`cfd_decay_ux.npy\`: frames that differ), \`rel:1e-2\`: interpolation within each plane." \
  "$IN/cfd_every15_4x32x32.npy" \
  "$B compress $IN/cfd_every15_4x32x32.npy --bound rel:1e-2 -T 1 -q -o $OUT/field3d_cfd_interp_planes_rel1e-2.baler"

fixture field3d_lorenzo3_rel1e-3 \
  "3-D field, f32, 8 × 24 × 24 (a triple running sum of pseudo-random values), \`rel:1e-3\`: 3-D Lorenzo." \
  "$IN/volume_8x24x24.npy" \
  "$B compress $IN/volume_8x24x24.npy --bound rel:1e-3 -T 1 -q -o $OUT/field3d_lorenzo3_rel1e-3.baler"

fixture field2d_ocean_rel1e-4 \
  "2-D field (an image: \`--layout field\`), f32, 48 × 96 (rows 112–159, columns 0–95 of \`ocean_temp.npy\`, land = 0), \`rel:1e-4\`: 2-D Lorenzo." \
  "$IN/ocean_48x96.npy" \
  "$B compress $IN/ocean_48x96.npy --layout field --bound rel:1e-4 -T 1 -q -o $OUT/field2d_ocean_rel1e-4.baler"

fixture f64_tau_rel1e-3 \
  "1-D field, f64, 1500 values (first of \`tau_pt_f64.npy\`), \`rel:1e-3\`." \
  "$IN/tau_1500_f64.npy" \
  "$B compress $IN/tau_1500_f64.npy --bound rel:1e-3 -T 1 -q -o $OUT/f64_tau_rel1e-3.baler"

fixture f64_tau_lossless \
  "The same f64 values, \`lossless\` (bit-exact column coding)." \
  "$IN/tau_1500_f64.npy" \
  "$B compress $IN/tau_1500_f64.npy --bound lossless -T 1 -q -o $OUT/f64_tau_lossless.baler"

fixture stream_stdin_raw \
  "Table, f32, 400 × 10 (first rows of \`nexo_8k.npy\`) as raw little-endian values through a pipe, \`--dtype f32 --shape -1,10\` (source: raw values), \`rel:1e-3\`, column names, fTrackNumber lossless, 4 chunks. The stream ends within the compressor's 16 MiB statistics sample, so the header is written with the length known." \
  "--dtype f32 --shape -1,10 $IN/nexo_400.raw" \
  "cat $IN/nexo_400.raw | $B compress - --dtype f32 --shape -1,10 --bound rel:1e-3 --names $nexo_names --bound-col fTrackNumber=lossless --chunk-size 4K -T 1 -q -o $OUT/stream_stdin_raw.baler"

fixture stream_unknown_length \
  "Table, f32, 400 × 10 (rows 400–799 of \`nexo_8k.npy\`, the first three columns of the last 50 rows × 20) written as a stream of unknown length, by the library (\`examples/stream_fixture.rs\`: the \`Compressor\` with an 8 KiB statistics sample, which \`baler compress -\` has at 16 MiB): the header's first dimension is unknown (u64::MAX; the record count is in the end mark), ranges from the first records (values past them later), \`rel:1e-3\`, column names, 4 chunks." \
  "--dtype f32 --shape -1,10 $IN/nexo_400_later_wider.raw" \
  "$SF $OUT/stream_unknown_length.baler 10 rel:1e-3 4096 8192 $nexo_names < $IN/nexo_400_later_wider.raw"

fixture raw_lz4_coded_lossless \
  "1-D field, f32, 4 × 1024 values, \`lossless\`, 4 chunks of 4 KiB: random bit patterns (some NaNs with payloads; coding does not pay: stored raw), 512 random patterns twice (LZ4), a ramp (coded), 16 random patterns in a random order (coded)." \
  "$IN/bits_4x1024.npy" \
  "$B compress $IN/bits_4x1024.npy --bound lossless --chunk-size 4K -T 1 -q -o $OUT/raw_lz4_coded_lossless.baler"

fi

if [[ $version == 2 ]]; then
# Version 2: point-wise relative bounds (bits:N, pwrel:R; the ordinal domain and its gap).
echo "== models" >&2
"$B" train fixtures/delphes_16k.npy --bound bits:10 -T 1 -q -o "$IN/delphes_bits10.bmdl"
train_cmds="$B train fixtures/delphes_16k.npy --bound bits:10 -T 1 -q -o IN/delphes_bits10.bmdl"
delphes_names=$(cat fixtures/delphes_16k.columns)
cat >"$IN/nano.bounds" <<'BOUNDS'
# NanoAOD-like: momenta to mantissa bits, angles absolute, ids exact
default   bits:10
P?        bits:12
Eta       abs:1e-3
Phi       abs:1e-3
Rapidity  pwrel:1e-3
PID       lossless
Status    lossless
Charge    lossless
BOUNDS

fixture table_bits10_model_delphes \
  "Table, f32, 800 × 16 (first rows of \`delphes_16k.npy\`), \`bits:10\` on every column, with a learned model trained at \`bits:10\` (its value predictions mapped to the ordinal domain); 4 chunks." \
  "$IN/delphes_800.npy" \
  "$B compress $IN/delphes_800.npy --bound bits:10 --model $IN/delphes_bits10.bmdl --chunk-size 16K -T 1 -q -o $OUT/table_bits10_model_delphes.baler" \
  "$IN/delphes_bits10.bmdl"

fixture table_bounds_file_specials \
  "Table, f32, 500 × 16 (rows 8000..8499 of \`delphes_16k.npy\`, with NaN payloads, ±Inf, −0.0 and subnormals planted), a bounds file mixing \`bits:10\`, \`bits:12\` (a glob), \`abs\`, \`pwrel:1e-3\` and \`lossless\` by column name, no model, column names; 4 chunks. The bounds file: \`$(grep -v '^#' "$IN/nano.bounds" | tr -s ' ' | paste -sd ';' -)\`." \
  "$IN/delphes_specials_500.npy" \
  "$B compress $IN/delphes_specials_500.npy --bounds $IN/nano.bounds --names $delphes_names --model none --chunk-size 8K -T 1 -q -o $OUT/table_bounds_file_specials.baler"

fixture table_cms_bits12_grid \
  "Table, f32, 200 × 59 (first rows of \`cms_ak4jets.npy\`: NanoAOD branches already rounded to 10 mantissa bits or fewer), \`bits:12\`, column names: columns on a coarser grid than the bound's step are coded with the grid's step and come back exactly." \
  "$IN/cms_200.npy" \
  "$B compress $IN/cms_200.npy --bound bits:12 --names $(cat fixtures/cms_ak4jets.columns) -T 1 -q -o $OUT/table_cms_bits12_grid.baler"

fixture field3d_cfd_bits10 \
  "Field, f32, 4 × 32 × 32 (\`cfd_decay_ux.npy\`), \`bits:10\`: a signed field through the ordinal domain (interpolation predictions mapped there)." \
  "$IN/cfd_4x32x32.npy" \
  "$B compress $IN/cfd_4x32x32.npy --bound bits:10 -T 1 -q -o $OUT/field3d_cfd_bits10.baler"

fixture field2d_ocean_bits7 \
  "Field, f32, 48 × 96 (\`ocean_temp.npy\`, land = 0), \`--layout field\`, \`bits:7\`: zeros beside values around 10–30 (the ordinal gap)." \
  "$IN/ocean_48x96.npy" \
  "$B compress $IN/ocean_48x96.npy --layout field --bound bits:7 -T 1 -q -o $OUT/field2d_ocean_bits7.baler"

fixture f64_tau_pwrel1e-3 \
  "1-D field, f64, 1500 values (\`tau_pt_f64.npy\`), \`pwrel:1e-3\` (a step of ⌊2e-3 · 2^52⌋ ordinals)." \
  "$IN/tau_1500_f64.npy" \
  "$B compress $IN/tau_1500_f64.npy --bound pwrel:1e-3 -T 1 -q -o $OUT/f64_tau_pwrel1e-3.baler"
fi

if [[ $version == 3 ]]; then
# Version 3: binned code streams; the RUNS and STATS header sections.
train_cmds="(none)"
nexo_names=$(cat fixtures/nexo_8k.columns)

fixture table_nexo_bits10_binned \
  "Table, f32, 2000 × 10 (first rows of \`nexo_8k.npy\`), \`bits:10\`, no model, column names, one chunk: the energy and time columns are broad distributions of ordinals over many decades, coded as binned streams; one run of bounds, ranges stored as f32." \
  "$IN/nexo_2000.npy" \
  "$B compress $IN/nexo_2000.npy --bound bits:10 --model none --names $nexo_names -T 1 -q -o $OUT/table_nexo_bits10_binned.baler"

fixture table_nexo_mixed_runs \
  "Table, f32, 2000 × 10 (\`nexo_8k.npy\`), \`rel:1e-4\` with fTrackNumber lossless and the first three columns \`pwrel:1e-4\` (runs of bounds of three kinds), no model, column names, 4 chunks (\`--chunk-size 20K\`: a size given is used as given)." \
  "$IN/nexo_2000.npy" \
  "$B compress $IN/nexo_2000.npy --bound rel:1e-4 --bound-col 0=pwrel:1e-4 --bound-col 1=pwrel:1e-4 --bound-col 2=pwrel:1e-4 --bound-col fTrackNumber=lossless --names $nexo_names --model none --chunk-size 20K -T 1 -q -o $OUT/table_nexo_mixed_runs.baler"

fixture table_f64_nexo_pwrel \
  "Table, f64, 1000 × 10 (rows 2000–2999 of \`nexo_8k.npy\` as f64), \`pwrel:1e-5\`, no model: ranges stored as f64, binned streams of f64 ordinals." \
  "$IN/nexo_1000_f64.npy" \
  "$B compress $IN/nexo_1000_f64.npy --bound pwrel:1e-5 --model none -T 1 -q -o $OUT/table_f64_nexo_pwrel.baler"

fixture table_nexo_8k_bits12_carry \
  "Table, f32, 8192 × 10 (\`nexo_8k.npy\`), \`bits:12\`, no model, column names, one chunk: fPostEnergyDeposit carried over from fPreEnergyDeposit one record after (predictor 7, lag 1), the track numbers' and other few-valued streams coded by previous code (layout 2)." \
  "fixtures/nexo_8k.npy" \
  "$B compress fixtures/nexo_8k.npy --bound bits:12 --model none --names $nexo_names -T 1 -q -o $OUT/table_nexo_8k_bits12_carry.baler"

fixture stream_unknown_length_bits10 \
  "Table, f32, 400 × 10 (rows 400–799 of \`nexo_8k.npy\`, the last 50 rows' first three columns × 20) as a stream of unknown length through the library (\`examples/stream_fixture.rs\`, 8 KiB statistics sample): ranges from the first records (the STATS section's sampled count), \`bits:10\`, 4 chunks." \
  "--dtype f32 --shape -1,10 $IN/nexo_400_later_wider.raw" \
  "$SF $OUT/stream_unknown_length_bits10.baler 10 bits:10 4096 8192 $nexo_names < $IN/nexo_400_later_wider.raw"
fi

if [[ $version == 4 ]]; then
# Version 4: the content checksum in the end mark (and the footer magic BALERIX4).
train_cmds="(none)"
delphes_names=$(cat fixtures/delphes_16k.columns)
nexo_names=$(cat fixtures/nexo_8k.columns)

fixture table_delphes_chunks_rel1e-3 \
  "Table, f32, 800 × 16 (first rows of \`delphes_16k.npy\`), \`rel:1e-3\`, no model, column names, 4 chunks: the end mark's content checksum over the header's and the chunk headers' checksums." \
  "$IN/delphes_800.npy" \
  "$B compress $IN/delphes_800.npy --bound rel:1e-3 --model none --names $delphes_names --chunk-size 16K -T 1 -q -o $OUT/table_delphes_chunks_rel1e-3.baler"

fixture stream_unknown_length_v4 \
  "Table, f32, 400 × 10 (rows 400–799 of \`nexo_8k.npy\`) as a stream of unknown length through the library (\`examples/stream_fixture.rs\`), \`rel:1e-3\`, 4 chunks: the content checksum of a header written before the length was known." \
  "--dtype f32 --shape -1,10 $IN/nexo_400_later_wider.raw" \
  "$SF $OUT/stream_unknown_length_v4.baler 10 rel:1e-3 4096 8192 $nexo_names < $IN/nexo_400_later_wider.raw"

fixture field3d_cfd_bits10_v4 \
  "Field, f32, 4 × 32 × 32 (\`cfd_decay_ux.npy\`), \`bits:10\`, one chunk." \
  "$IN/cfd_4x32x32.npy" \
  "$B compress $IN/cfd_4x32x32.npy --bound bits:10 -T 1 -q -o $OUT/field3d_cfd_bits10_v4.baler"
fi

if [[ $version == 5 ]]; then
# Version 5: f32 lossless columns as one stream of integers (value words less a prediction).
train_cmds="(none)"
delphes_names=$(cat fixtures/delphes_16k.columns)
nexo_names=$(cat fixtures/nexo_8k.columns)

fixture field3d_cfd_lossless \
  "Field, f32, 4 × 32 × 32 (\`cfd_decay_ux.npy\`), \`lossless\`, one chunk: value words less a Lorenzo prediction over planes." \
  "$IN/cfd_4x32x32.npy" \
  "$B compress $IN/cfd_4x32x32.npy --bound lossless -T 1 -q -o $OUT/field3d_cfd_lossless.baler"

fixture table_nexo_lossless \
  "Table, f32, 2000 × 10 (first rows of \`nexo_8k.npy\`), \`lossless\`, column names, 2 chunks: value words less the previous value or the column before at a lag of one row (a decay chain's energy after a step is the next row's before it)." \
  "$IN/nexo_2000.npy" \
  "$B compress $IN/nexo_2000.npy --bound lossless --names $nexo_names --chunk-size 40K -T 1 -q -o $OUT/table_nexo_lossless.baler"

fixture table_cms_lossless_shift \
  "Table, f32, 200 × 59 (first rows of \`cms_ak4jets.npy\`: mantissas already truncated), \`lossless\`: value words without the trailing zero bits every value of a column has." \
  "$IN/cms_200.npy" \
  "$B compress $IN/cms_200.npy --bound lossless -T 1 -q -o $OUT/table_cms_lossless_shift.baler"

fixture table_specials_lossless \
  "Table, f32, 500 × 16 (rows 8000..8499 of \`delphes_16k.npy\`, with NaN payloads, ±Inf, −0.0 and subnormals planted), \`lossless\`, column names, 4 chunks." \
  "$IN/delphes_specials_500.npy" \
  "$B compress $IN/delphes_specials_500.npy --bound lossless --names $delphes_names --chunk-size 8K -T 1 -q -o $OUT/table_specials_lossless.baler"
fi

if [[ $version == 6 ]]; then
# Version 6: level-wise steps of the interpolation predictors (bits 6-7 of the order byte).
train_cmds="(none)"

fixture field3d_cfd_levels_rel1e-2 \
  "Field, f32, 16 × 32 × 32 (first 16 time steps of \`cfd_decay_ux.npy\`, one corner), \`rel:1e-2\`: interpolation with level-wise steps (scheme 1: the coarser levels quantized finer), chosen where most codes are 0." \
  "$IN/cfd_16x32x32.npy" \
  "$B compress $IN/cfd_16x32x32.npy --bound rel:1e-2 -T 1 -q -o $OUT/field3d_cfd_levels_rel1e-2.baler"

fixture field3d_cfd_levels_rel3e-2 \
  "The same field at \`rel:3e-2\`." \
  "$IN/cfd_16x32x32.npy" \
  "$B compress $IN/cfd_16x32x32.npy --bound rel:3e-2 -T 1 -q -o $OUT/field3d_cfd_levels_rel3e-2.baler"
fi

if [[ $version == 7 ]]; then
# Version 7: lossless transforms with the low byte coded apart (ids 20-27).
train_cmds="(none)"

fixture field3d_cfd_lossless_low \
  "Field, f32, 16 × 32 × 32 (first 16 time steps of \`cfd_decay_ux.npy\`, one corner), \`lossless\`: value words above the low byte less a Lorenzo prediction over planes, the low byte coded apart." \
  "$IN/cfd_16x32x32.npy" \
  "$B compress $IN/cfd_16x32x32.npy --bound lossless -T 1 -q -o $OUT/field3d_cfd_lossless_low.baler"
fi

if [[ $version == 8 ]]; then
# Version 8: lossless columns longer than 262,144 values coded in stream segments (ids 36-62),
# rows that repeat an earlier one (12, 13), the learned model's predictions (14), lags (15),
# lattices (64).
echo "== models" >&2
"$B" train fixtures/delphes_16k.npy --bound lossless -T 1 -q -o "$IN/delphes_lossless.bmdl"
train_cmds="$B train fixtures/delphes_16k.npy --bound lossless -T 1 -q -o IN/delphes_lossless.bmdl"

fixture field3d_volume_lossless_segments \
  "Field, f32, 32 × 96 × 88 (270,336 values: a triple running sum of pseudo-random steps, mantissas cut to 10 bits), \`lossless\`, one chunk (32 slices): every stream of its one column coded in two segments (262,144 codes, then the rest)." \
  "$IN/volume_32x96x88.npy" \
  "$B compress $IN/volume_32x96x88.npy --bound lossless -T 1 -q -o $OUT/field3d_volume_lossless_segments.baler"

fixture field3d_packed_lossless_lattice \
  "Field, f32, 4 × 32 × 48 (corners of the first frames of \`cfd_decay_ux.npy\`, each plane packed as GRIB packs a field: \`f32(k·2^-9..-11 + R)\`, integers k up to 60,000), \`lossless\`: every plane's offset and step, the integers coded as the f32 values 2^23 + k (transform 64 over a Lorenzo transform)." \
  "$IN/packed_4x32x48.npy" \
  "$B compress $IN/packed_4x32x48.npy --bound lossless -T 1 -q -o $OUT/field3d_packed_lossless_lattice.baler"

fixture table_blocks_lossless_lag \
  "Table, f32, 8192 × 2 (8 blocks of 1024 rows, each the first block's values a little changed), \`lossless\`, no model: value words less the value 1024 rows before (transform 15, the lag chosen per column)." \
  "$IN/blocks_8192x2.npy" \
  "$B compress $IN/blocks_8192x2.npy --bound lossless --model none -T 1 -q -o $OUT/table_blocks_lossless_lag.baler"

fixture table_delphes_lossless_repeats \
  "Table, f32, 4000 × 16 (first rows of \`delphes_16k.npy\`), \`lossless\`, column names, one chunk: particles listed again through their history and vertices many particles share, predicted from the last row with the same row key (every column before) or the same reference value (transforms 12 and 13)." \
  "$IN/delphes_4000.npy" \
  "$B compress $IN/delphes_4000.npy --bound lossless --model none --names $(cat fixtures/delphes_16k.columns) -T 1 -q -o $OUT/table_delphes_lossless_repeats.baler"

fixture table_delphes_mixed_repeats \
  "The same rows at \`rel:1e-3\` with E, Px and the vertex X lossless: the row keys hash the lossy columns' reconstructions." \
  "$IN/delphes_4000.npy" \
  "$B compress $IN/delphes_4000.npy --bound rel:1e-3 --bound-col E=lossless --bound-col Px=lossless --bound-col X=lossless --model none --names $(cat fixtures/delphes_16k.columns) -T 1 -q -o $OUT/table_delphes_mixed_repeats.baler"

fixture table_delphes_lossless_model \
  "The same 4000 rows, \`lossless\`, with a model trained on the whole 16,384-row file at \`lossless\` (its columns trained as if under \`pwrel:2^-24\`): value words less the word of the model's prediction (transform 14) where that codes smaller." \
  "$IN/delphes_4000.npy" \
  "$B compress $IN/delphes_4000.npy --bound lossless --model $IN/delphes_lossless.bmdl --names $(cat fixtures/delphes_16k.columns) -T 1 -q -o $OUT/table_delphes_lossless_model.baler" \
  "$IN/delphes_lossless.bmdl"
fi

if [[ $version == 9 ]]; then
# Version 9: bit-exact columns predicted by a relation to earlier columns (column kind 2).
train_cmds="(none)"
nexo_names=$(cat fixtures/nexo_8k.columns)

fixture table_nexo_lossless_relation \
  "Table, f32, 2000 × 10 (first rows of \`nexo_8k.npy\`), \`lossless\`, no model, column names: the energy after each step (fPostEnergyDeposit) predicted as the energy before less the deposit, a relation of two terms, one subtracted (column kind 2)." \
  "$IN/nexo_2000.npy" \
  "$B compress $IN/nexo_2000.npy --bound lossless --model none --names $nexo_names -T 1 -q -o $OUT/table_nexo_lossless_relation.baler"

fixture table_nexo_mixed_relation \
  "The same rows at \`rel:1e-3\` with the three energies lossless: the relation in a chunk of quantized columns (whose reconstructions the row keys hash)." \
  "$IN/nexo_2000.npy" \
  "$B compress $IN/nexo_2000.npy --bound rel:1e-3 --bound-col fEnergyDeposit=lossless --bound-col fPreEnergyDeposit=lossless --bound-col fPostEnergyDeposit=lossless --model none --names $nexo_names -T 1 -q -o $OUT/table_nexo_mixed_relation.baler"
fi

if [[ $version == 10 ]]; then
# Version 10: a field's second stacked variable predicted from its first (ids 96-99).
train_cmds="(none)"

fixture field3d_hst_lossless_sigma \
  "Field, f32, 2 × 48 × 96 (a corner of \`hst_frame.npy\`: a telescope frame's science and error planes), \`lossless\`, one chunk: the error plane predicted as the square root of the science plane times a gain plus the median of what its neighbours leave over (transform 96 and up)." \
  "$IN/hst_2x48x96.npy" \
  "$B compress $IN/hst_2x48x96.npy --bound lossless -T 1 -q -o $OUT/field3d_hst_lossless_sigma.baler"
fi

# ---------------------------------------------------------------------------------------------
total=$(cat "$OUT"/*.baler "$OUT"/*.expected.npy | wc -c)
{
  cat <<EOF
# Container format version $version fixtures

Written by baler commit \`$commit\` (\`$("$B" --version)\`, format version $version) with
\`scripts/make_format_fixtures.sh\`. Each \`NAME.baler\` comes with \`NAME.expected.npy\`, what
\`baler decompress NAME.baler -o NAME.expected.npy\` wrote at that commit.
\`cli/tests/format_compat.rs\` decodes every container here with the library and with the CLI and
requires the same shape, dtype and bits. **Never regenerate or edit these files**: a later
version of baler that cannot read them bit for bit has broken the format's promise. A new
format version gets a new folder (\`fixtures/format/v2/\`, written by the script from that
version), and this one stays.

Every container was checked against the array it was made from (\`baler evaluate\`) when it
was written. The inputs are not kept: the script cuts them again from \`fixtures/*.npy\` into a
temporary folder, written \`IN/\` below (see \`cut.py\` inside the script). \`target/release/baler\`
is the release build of that commit; \`stream_fixture\` is \`examples/stream_fixture.rs\`.
Predictor ids (\`src/predict.rs\`): 0 centre, 1 previous, 2 lorenzo2, 3 lorenzo3, 4 model,
5 interp, 6 interp-planes. The tables below are what \`baler info\` and \`baler info --columns\`
reported, and the payload kind of each chunk (coded, raw, LZ4) read from its flags.

Total: $(ls "$OUT"/*.baler | wc -l) containers, $total bytes with the expected arrays.

## The learned models

Trained on whole fixture files, then passed with \`--model\` (each container stores its own copy):

\`\`\`sh
$train_cmds
\`\`\`

## The containers

EOF
  cat "$readme_body"
} >"$OUT/README.md"

ls -l "$OUT" >&2
echo "make_format_fixtures: $OUT: $total bytes (containers and expected arrays)" >&2
