"""The baler HDF5 filter plugin (hdf5-filter/, libh5baler.so) through h5py and Debian's HDF5 tools.

Run by tests/hdf5_filter/run.sh, which builds the plugin, makes the venv (h5py from PyPI, with
its own bundled HDF5) and sets HDF5_PLUGIN_PATH. Every value read back is checked against its
bound with NumPy, independently of baler's own check: abs |x - y| <= E in float64 (exact for
float32 data; for float64 the rounded difference can only be smaller than the exact one), rel
with E = R * (max - min) of the column (or field) over the chunk as the filter saw it (the
dataset's fill value included where a chunk reaches past the dataset's edge), pwrel
|x - y| <= R |x|, bits:N as pwrel with R = 2^-(N+1), lossless bit for bit.
"""

import itertools
import os
import shutil
import struct
import subprocess
import sys

import h5py
import numpy as np
import pytest

FILTER = 47646
ABS, REL, LOSSLESS, PWREL, BITS = 1, 2, 3, 4, 5
F64_BITS, FIELD_2D = 256, 512

TOOLS_ENV = dict(os.environ)


def f64_words(v):
    (bits,) = struct.unpack("<Q", struct.pack("<d", v))
    return [bits >> 32, bits & 0xFFFFFFFF]


# A bound as (kind, value) and its words (mode, a, b).
def words(bound):
    kind, value = bound
    return {
        "abs": lambda: [ABS, *value],  # value = (a, b): a * 10^-b
        "absf": lambda: [ABS | F64_BITS, *f64_words(value)],
        "rel": lambda: [REL, *value],
        "pwrel": lambda: [PWREL, *value],
        "bits": lambda: [BITS, value, 0],
        "lossless": lambda: [LOSSLESS, 0, 0],
    }[kind]()


def decimal(value):
    a, b = value
    return float(f"{a}e-{b}")


def check_bound(x, y, bound, rng_span=None):
    """x original, y decoded (same dtype); rng_span: max - min for rel bounds."""
    kind, value = bound
    assert y.dtype == x.dtype
    if kind == "lossless":
        ints = np.uint32 if x.dtype == np.float32 else np.uint64
        assert np.array_equal(x.view(ints), y.view(ints)), "lossless column not bit-exact"
        return
    ints = np.uint32 if x.dtype == np.float32 else np.uint64
    same_bits = x.view(ints) == y.view(ints)
    finite = np.isfinite(x)
    # NaN and infinities come back bit for bit.
    assert same_bits[~finite].all(), f"{kind}: a non-finite value changed"
    xd, yd = x[finite].astype(np.float64), y[finite].astype(np.float64)
    err = np.abs(xd - yd)
    if kind in ("abs", "absf", "rel"):
        if kind == "abs":
            lim = decimal(value)
        elif kind == "absf":
            lim = value
        else:
            lim = decimal(value) * rng_span
        assert np.isfinite(yd).all()
        worst = err.max(initial=0.0)
        assert worst <= lim, f"{kind} {value}: max error {worst!r} > {lim!r}"
    else:
        r = decimal(value) if kind == "pwrel" else 0.5 ** (value + 1)
        ok = (err <= r * np.abs(xd)) | same_bits[finite]
        assert ok.all(), f"{kind} {value}: {np.count_nonzero(~ok)} values out of bound"


def chunk_slices(shape, chunks):
    """Each chunk's slice of the dataset and whether it reaches past the dataset's edge."""
    ranges = [range(0, n, c) for n, c in zip(shape, chunks)]
    for corner in itertools.product(*ranges):
        sl = tuple(slice(o, min(o + c, n)) for o, c, n in zip(corner, chunks, shape))
        partial = any(o + c > n for o, c, n in zip(corner, chunks, shape))
        yield sl, partial


def span(values, partial, fill):
    v = values[np.isfinite(values)].astype(np.float64)
    lo, hi = v.min(), v.max()
    if partial:
        lo, hi = min(lo, fill), max(hi, fill)
    return hi - lo


def check_table(x, y, chunks, default, columns, fill):
    """Per column, per chunk: the column's bound (rel against the chunk's column range)."""
    for sl, partial in chunk_slices(x.shape, chunks):
        for c in range(x.shape[1]):
            bound = columns.get(c, default)
            xs, ys = x[sl[0], c], y[sl[0], c]
            s = span(xs, partial, fill) if bound[0] == "rel" else None
            check_bound(xs, ys, bound, s)


def check_field(x, y, chunks, bound, fill):
    for sl, partial in chunk_slices(x.shape, chunks):
        s = span(x[sl], partial, fill) if bound[0] == "rel" else None
        check_bound(x[sl], y[sl], bound, s)


def table_data(dtype, rows=5000, seed=1):
    g = np.random.default_rng(seed)
    pt = g.exponential(30.0, rows)
    eta = g.normal(0, 1.5, rows)
    phi = g.uniform(-np.pi, np.pi, rows)
    t = np.stack(
        [
            pt,
            eta,
            phi,
            pt * np.cosh(eta),
            g.integers(0, 5, rows).astype(float),
            np.cumsum(g.normal(0, 1, rows)),
        ],
        axis=1,
    ).astype(dtype)
    t[17, 1] = np.nan  # special values come back bit for bit
    t[18, 3] = -0.0
    return t


def field_data(dtype, shape=(40, 50, 60)):
    z, y, x = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    f = np.sin(6 * x) * np.cos(4 * y) + 0.3 * z + 0.01 * np.sin(50 * x * y * z)
    return f.astype(dtype)


def opts(default, columns=None, field_2d=False):
    w = words(default)
    if field_2d:
        w[0] |= FIELD_2D
    if columns:
        w.append(len(columns))
        for c, b in sorted(columns.items()):
            w += [c, *words(b)]
    return tuple(w)


def write(path, name, data, chunks, o, fill=0.0):
    with h5py.File(path, "a") as f:
        f.create_dataset(name, data=data, chunks=chunks, compression=FILTER,
                         compression_opts=o, fillvalue=fill)


def read(path, name):
    with h5py.File(path, "r") as f:
        d = f[name]
        assert str(FILTER) in d._filters, d._filters
        return d[...], d.id.get_storage_size()


COLUMNS = {
    0: ("pwrel", (1, 3)),
    1: ("lossless", None),
    2: ("bits", 10),
    3: ("rel", (1, 4)),
    4: ("abs", (0, 0)),  # abs:0 (a category kept exactly within 0)
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunks", [(1000, 6), (1200, 6), (5000, 6), (333, 6)])
def test_table_with_column_bounds(tmp_path, dtype, chunks):
    x = table_data(dtype)
    path = tmp_path / "t.h5"
    default = ("abs", (1, 3))
    write(path, "t", x, chunks, opts(default, COLUMNS))
    y, stored = read(path, "t")
    check_table(x, y, chunks, default, COLUMNS, 0.0)
    assert stored < x.nbytes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_table_rel_default_and_f64_bits_bound(tmp_path, dtype):
    x = table_data(dtype, rows=3000, seed=2)
    path = tmp_path / "t.h5"
    chunks = (700, 6)  # 3000 = 4 x 700 + 200: a partial last chunk, fill value 2.5
    cols = {5: ("absf", 1.0 / 3.0)}
    default = ("rel", (1, 3))
    write(path, "t", x, chunks, opts(default, cols), fill=2.5)
    y, _ = read(path, "t")
    check_table(x, y, chunks, default, cols, 2.5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "chunks,bound",
    [
        ((10, 25, 60), ("rel", (1, 3))),
        ((16, 16, 16), ("rel", (1, 4))),  # partial chunks on every axis
        ((40, 50, 60), ("abs", (5, 4))),
        ((7, 50, 13), ("pwrel", (1, 2))),
        ((20, 20, 20), ("bits", 12)),
        ((8, 8, 60), ("lossless", None)),
        ((13, 17, 19), ("absf", 2.0 ** -11)),
    ],
)
def test_field(tmp_path, dtype, chunks, bound):
    x = field_data(dtype)
    path = tmp_path / "f.h5"
    write(path, "f", x, chunks, opts(bound), fill=0.0)
    y, stored = read(path, "f")
    check_field(x, y, chunks, bound, 0.0)
    if bound[0] != "lossless":
        assert stored < x.nbytes / 2


def test_one_d_series_and_image_as_field(tmp_path):
    path = tmp_path / "s.h5"
    s = np.cumsum(np.random.default_rng(3).normal(size=2500)).astype(np.float32)
    write(path, "s", s, (1000,), opts(("rel", (1, 3))), fill=0.0)
    y, _ = read(path, "s")
    check_field(s, y, (1000,), ("rel", (1, 3)), 0.0)
    img = field_data(np.float64, (1, 300, 200))[0]
    write(path, "img", img, (128, 128), opts(("rel", (1, 3)), field_2d=True), fill=0.0)
    y, _ = read(path, "img")
    check_field(img, y, (128, 128), ("rel", (1, 3)), 0.0)


def test_parameters_stored_by_set_local(tmp_path):
    path = tmp_path / "p.h5"
    write(path, "t", table_data(np.float32, rows=100), (50, 6), (1, 1, 3))
    with h5py.File(path, "r") as f:
        assert f["t"]._filters[str(FILTER)] == (0xBA1E0001, 4, 2, 50, 6, 1, 1, 3)


def test_wrong_types_and_parameters_are_refused(tmp_path):
    path = tmp_path / "bad.h5"
    cases = [
        (np.arange(100, dtype=np.int32), (10,), (1, 1, 3), "32- and 64-bit floats"),
        (np.arange(100, dtype=np.float16), (10,), (1, 1, 3), "32- and 64-bit floats"),
        (np.arange(100, dtype=">f4"), (10,), (1, 1, 3), "little-endian"),
        (np.zeros(100, np.float32), (10,), (), "no bound given"),
        (np.zeros(100, np.float32), (10,), (9, 1, 3), "unknown bound mode"),
        (np.zeros(100, np.float32), (10,), (4, 2, 0), "invalid bound"),
        (np.zeros((10, 4), np.float32), (5, 4), (1, 1, 3, 1, 7, 3, 0, 0), "column"),
        (np.zeros((4, 4, 4), np.float32), (2, 2, 2), (1, 1, 3, 1, 0, 3, 0, 0), "per-column"),
    ]
    for i, (data, chunks, o, msg) in enumerate(cases):
        with h5py.File(path, "a") as f:
            with pytest.raises(Exception) as e:
                f.create_dataset(f"d{i}", data=data, chunks=chunks, compression=FILTER,
                                 compression_opts=o)
            assert msg in str(e.value), (i, str(e.value))


def flip_byte_in_chunk(path, name, index, where=0.5):
    with h5py.File(path, "r") as f:
        info = f[name].id.get_chunk_info(index)
    off = info.byte_offset + int(info.size * where)
    with open(path, "r+b") as fh:
        fh.seek(off)
        b = fh.read(1)
        fh.seek(off)
        fh.write(bytes([b[0] ^ 0x10]))
    return info


@pytest.mark.parametrize("where", [0.0, 0.02, 0.5, 0.999])
def test_corrupt_chunk_is_a_read_error(tmp_path, where):
    path = tmp_path / "c.h5"
    x = field_data(np.float32)
    write(path, "f", x, (10, 50, 60), opts(("rel", (1, 3))))
    flip_byte_in_chunk(path, "f", 1, where)
    with h5py.File(path, "r") as f:
        d = f["f"]
        # The damaged chunk (rows 10-19) is an error, whole or in part ...
        with pytest.raises(OSError):
            d[...]
        with pytest.raises(OSError):
            d[12]
        # ... and the others still read, within their bound.
        good = d[20:40]
        check_field(x[20:40], good, (10, 50, 60), ("rel", (1, 3)), 0.0)


def h5tool(*args):
    exe = shutil.which(args[0])
    assert exe, f"{args[0]} not found (apt-get install hdf5-tools)"
    r = subprocess.run([exe, *args[1:]], capture_output=True, text=True, env=TOOLS_ENV)
    assert r.returncode == 0, f"{' '.join(args)}: {r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r.stdout


def test_h5dump_reads_what_h5py_wrote(tmp_path):
    path = tmp_path / "d.h5"
    x = table_data(np.float64, rows=2000)
    write(path, "t", x, (600, 6), opts(("abs", (1, 3)), COLUMNS))
    f32 = field_data(np.float32)
    write(path, "f", f32, (16, 16, 16), opts(("rel", (1, 3))))
    header = h5tool("h5dump", "-p", "-H", str(path))
    assert "FILTER_ID 47646" in header and "baler" in header
    for name, dt in [("t", np.float64), ("f", np.float32)]:
        out = tmp_path / f"{name}.bin"
        h5tool("h5dump", "-d", f"/{name}", "-b", "LE", "-o", str(out), str(path))
        ours, _ = read(path, name)
        theirs = np.fromfile(out, dtype=dt).reshape(ours.shape)
        # The same chunks decoded by the same plugin in HDF5 1.10 and in h5py's HDF5.
        assert np.array_equal(ours.view(np.uint8), theirs.view(np.uint8))
    text = h5tool("h5dump", "-d", "/t", "-s", "0,0", "-c", "1,6", str(path))
    assert "DATA" in text and "(0,0):" in text


def test_h5dump_fails_on_a_corrupt_chunk(tmp_path):
    path = tmp_path / "c.h5"
    write(path, "f", field_data(np.float32), (10, 50, 60), opts(("abs", (1, 3))))
    flip_byte_in_chunk(path, "f", 0)
    r = subprocess.run(["h5dump", "-d", "/f", "-b", "LE", "-o", str(tmp_path / "x.bin"),
                        str(path)], capture_output=True, text=True, env=TOOLS_ENV)
    assert r.returncode != 0


def test_h5repack_writes_through_the_filter(tmp_path):
    src, dst = tmp_path / "in.h5", tmp_path / "out.h5"
    table = table_data(np.float32, rows=4000)
    field = field_data(np.float64)
    with h5py.File(src, "w") as f:
        f.create_dataset("g/table", data=table, chunks=(1000, 6), compression="gzip")
        f.create_dataset("field", data=field)  # contiguous: h5repack chunks it
        f.create_dataset("ints", data=np.arange(1000, dtype=np.int64))
        f["g/table"].attrs["columns"] = "pt,eta,phi,p,cat,walk"
    table_words = opts(("abs", (1, 3)), {1: ("lossless", None), 2: ("bits", 10)})
    ud = lambda w: f"UD={FILTER},0,{len(w)}," + ",".join(map(str, w))
    h5tool(
        "h5repack",
        "-f", f"/g/table:{ud(table_words)}",
        "-l", "/field:CHUNK=10x25x60",
        "-f", f"/field:{ud(opts(('rel', (1, 4))))}",
        str(src), str(dst),
    )
    y, stored = read(dst, "g/table")
    check_table(table, y, (1000, 6), ("abs", (1, 3)),
                {1: ("lossless", None), 2: ("bits", 10)}, 0.0)
    y, _ = read(dst, "field")
    check_field(field, y, (10, 25, 60), ("rel", (1, 4)), 0.0)
    with h5py.File(dst, "r") as f:
        assert f["g/table"].attrs["columns"] == "pt,eta,phi,p,cat,walk"
        assert np.array_equal(f["ints"][...], np.arange(1000))
    # One filter for the whole file: every float dataset takes it (the contiguous one is
    # chunked by h5repack), the int one is left as it was (can_apply says no).
    every = tmp_path / "every.h5"
    h5tool("h5repack", "-f", ud(opts(("abs", (1, 3)))), str(src), str(every))
    y, _ = read(every, "g/table")
    check_table(table, y, (1000, 6), ("abs", (1, 3)), {}, 0.0)
    with h5py.File(every, "r") as f:
        check_field(field, f["field"][...], field.shape, ("abs", (1, 3)), 0.0)
        assert str(FILTER) in f["field"]._filters
        assert not f["ints"]._filters and np.array_equal(f["ints"][...], np.arange(1000))
    # And back: h5repack decodes the plugin's chunks (to no filter at all).
    back = tmp_path / "back.h5"
    h5tool("h5repack", "-f", "NONE", str(dst), str(back))
    with h5py.File(back, "r") as f:
        assert not f["field"]._filters
        assert np.array_equal(f["field"][...], read(dst, "field")[0])


REGISTER = r"""
import ctypes, sys
import h5py, numpy as np
lib = ctypes.CDLL(sys.argv[1])
lib.init_filter.argtypes = [ctypes.c_char_p]
assert lib.init_filter(h5py.h5z.__file__.encode()) == 1
assert lib.init_filter(b"/nonexistent/libhdf5.so") == -1
lib.H5PLget_plugin_info.restype = ctypes.c_void_p
assert not h5py.h5z.filter_avail(47646)
h5py.h5z.register_filter(lib.H5PLget_plugin_info())
assert h5py.h5z.filter_avail(47646)
x = np.linspace(0, 1, 10000, dtype=np.float32).reshape(100, 100)
with h5py.File(sys.argv[2], "w") as f:
    f.create_dataset("x", data=x, chunks=(50, 100), compression=47646,
                     compression_opts=(1 | 512, 1, 4))
with h5py.File(sys.argv[2], "r") as f:
    err = np.abs(f["x"][...].astype(np.float64) - x).max()
assert err <= 1e-4, err
print("registered", err)
"""


def test_hdf5plugin_style_registration_without_plugin_path(tmp_path):
    """hdf5plugin's way: load the library, init_filter(h5py.h5z.__file__), H5Zregister."""
    lib = os.path.join(os.environ["HDF5_PLUGIN_PATH"], "libh5baler.so")
    env = {k: v for k, v in os.environ.items() if k != "HDF5_PLUGIN_PATH"}
    r = subprocess.run([sys.executable, "-c", REGISTER, lib, str(tmp_path / "r.h5")],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "registered" in r.stdout, r.stdout + r.stderr


def model_words(path):
    b = open(path, "rb").read()
    n = len(b)
    b += bytes(-n % 4)
    return [n, *struct.unpack(f"<{len(b) // 4}I", b)]


HERE = os.path.dirname(os.path.abspath(__file__))
# `baler train fixtures/delphes_16k.npy -b rel:1e-3 -o tests/hdf5_filter/delphes_16k_rel1e-3.bmdl`
MODEL = os.path.join(HERE, "delphes_16k_rel1e-3.bmdl")
DELPHES = os.path.join(HERE, "..", "..", "fixtures", "delphes_16k.npy")


@pytest.mark.parametrize("chunks", [(16384, 16), (3000, 16)])
def test_table_with_a_trained_model(tmp_path, chunks):
    x = np.load(DELPHES)
    path = tmp_path / "m.h5"
    plain = opts(("rel", (1, 3)))
    # K = 0 per-column bounds, then the model file.
    with_model = plain + (0, *model_words(MODEL))
    write(path, "plain", x, chunks, plain)
    write(path, "model", x, chunks, with_model)
    y, size_model = read(path, "model")
    check_table(x, y, chunks, ("rel", (1, 3)), {}, 0.0)
    _, size_plain = read(path, "plain")
    # The learned predictor pays even with its copy in every chunk (measured: 20.3x against
    # 14.9x in one chunk, 16.2x against 12.4x in 4096-row chunks).
    assert size_model < 0.9 * size_plain, (size_model, size_plain)
    with h5py.File(path, "r") as f:
        assert f["model"]._filters[str(FILTER)][5:9] == plain + (0,)


def test_bad_models_are_refused(tmp_path):
    words = model_words(MODEL)
    damaged = list(words)
    damaged[40] ^= 1
    path = tmp_path / "bad.h5"
    cases = [
        (np.zeros((100, 16), np.float32), (50, 16), damaged, "damaged"),
        (np.zeros((100, 6), np.float32), (50, 6), words, "trained on 16 columns"),
        (np.zeros((4, 4, 16), np.float32), (2, 2, 16), words, "tables"),
        (np.zeros((100, 16), np.float32), (50, 16), words[:-1], "takes"),
    ]
    for i, (data, chunks, w, msg) in enumerate(cases):
        with h5py.File(path, "a") as f:
            with pytest.raises(Exception) as e:
                f.create_dataset(f"d{i}", data=data, chunks=chunks, compression=FILTER,
                                 compression_opts=(2, 1, 3, 0, *w))
            assert msg in str(e.value), (i, str(e.value))
