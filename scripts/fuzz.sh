#!/usr/bin/env bash
# Fuzzes the parsers of every input baler reads, with cargo-fuzz (libFuzzer) on the stable
# toolchain (`-s none`: no sanitizer; Rust's own checks catch overflows and bounds in the
# release build with debug assertions):
#
#   container  a whole container: header, every chunk decoded, end mark, footer, trailer check
#   header     a container header
#   chunk      one chunk payload under real headers (table, table with a model, field, f64)
#   model      a learned model's serialized form
#   npy        a .npy header
#   shard      a plan (parsed, split into shards) or a shard (opened and joined)
#
#     scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     # default: 60 s, every target
#
# The seed corpus is cut from the repository's own containers (fixtures/format/v*/, every kind:
# tables with and without a model, fields, lossless, f64, streams, raw and LZ4 chunks) and
# .npy fixtures into fuzz/corpus/ (kept between runs, so longer campaigns build on shorter
# ones). Any crash, timeout (20 s) or allocation above 2.5 GiB fails the run and leaves its
# input in fuzz/artifacts/TARGET/. Installs cargo-fuzz if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(container header chunk model npy shard)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2

mkdir -p fuzz/corpus fuzz/headers
python3 - <<'PY'
import glob, os, struct

def uvarint(b, p):
    v = s = 0
    while True:
        x = b[p]; p += 1
        v |= (x & 0x7F) << s; s += 7
        if x < 0x80:
            return v, p

def chunks(b):
    """(records, flags, payload) of each chunk of a container."""
    blen = struct.unpack_from("<I", b, 10)[0]
    p = 14 + blen + 4
    while b[p:p + 1] == b"C":
        _, rec, flags, plen = struct.unpack_from("<QIHI", b, p + 1)
        yield rec, flags, b[p + 27:p + 27 + plen]
        p += 27 + plen

def model_section(b):
    """The MODEL section's model bytes (after its kind byte), if any."""
    blen = struct.unpack_from("<I", b, 10)[0]
    body, p = b[14:14 + blen], 0
    while p < len(body):
        tag = body[p]; n, q = uvarint(body, p + 1)
        if tag == 0x05 and n > 1 and body[q] == 2:
            return body[q + 1:q + n]
        p = q + n
    return None

def put(target, name, data):
    d = f"fuzz/corpus/{target}"
    os.makedirs(d, exist_ok=True)
    open(f"{d}/{name}", "wb").write(data)

containers = sorted(glob.glob("fixtures/format/v*/*.baler"))
# The chunk target's headers: one per kind, in a fixed order (its first input byte picks one).
kinds = ["v1/table_model_delphes", "v1/field3d_cfd_interp_rel1e-3", "v1/f64_tau_lossless",
         "v3/table_nexo_bits10_binned", "v3/table_nexo_8k_bits12_carry", "v4/table_delphes_chunks_rel1e-3",
         "v1/raw_lz4_coded_lossless", "v2/field2d_ocean_bits7"]
for i, k in enumerate(kinds):
    b = open(f"fixtures/format/{k}.baler", "rb").read()
    open(f"fuzz/headers/{i}.baler", "wb").write(b)
    for j, (rec, flags, payload) in enumerate(chunks(b)):
        if j < 2:
            put("chunk", f"{i}_{j}", bytes([i]) + struct.pack("<I", rec - 1) + bytes([flags & 3]) + payload)
for c in containers:
    b = open(c, "rb").read()
    name = c.split("/")[-2] + "_" + os.path.basename(c)
    put("container", name, b)
    put("header", name, b[:14 + struct.unpack_from("<I", b, 10)[0] + 4])
    m = model_section(b)
    if m:
        put("model", name, m)
for n in glob.glob("fixtures/*.npy"):
    put("npy", os.path.basename(n), open(n, "rb").read()[:256])
for n in glob.glob("fixtures/shards/v*/*"):
    if n.endswith(".plan"):
        put("shard", "plan_" + os.path.basename(n), b"\0" + open(n, "rb").read())
    elif n.endswith(".shard"):
        put("shard", os.path.basename(n), b"\1" + open(n, "rb").read()[:65536])
PY

failed=0
for t in "${targets[@]}"; do
  echo "== fuzz $t: ${secs} s" >&2
  log=$(mktemp)
  if ! (cd fuzz && cargo fuzz run -s none --release "$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=20 -rss_limit_mb=2560 -print_final_stats=1) \
        >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    failed=1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  echo "fuzz $t: ${execs:-?} executions, $(ls "fuzz/corpus/$t" | wc -l) inputs in the corpus" >&2
  rm -f "$log"
done
exit $failed
