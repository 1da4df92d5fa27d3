"""The Python package (`baler-rs`, import `baler`) from its wheel, in a clean environment:
round trips of tables and fields at every bound mode, checked here with NumPy; the containers
are the command line's, both ways; errors are BalerError with the command line's messages.

    scripts/test_python.sh        # builds the wheel, installs it into a fresh venv, runs this
"""

import os
import subprocess
import threading

import numpy as np
import pytest

import baler

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BALER = os.environ.get("BALER", os.path.join(ROOT, "target", "release", "baler"))


def table(dtype, rows=20_000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.empty((rows, 6), dtype=dtype)
    t[:, 0] = rng.exponential(40.0, rows)  # pt-like
    t[:, 1] = rng.normal(0.0, 2.0, rows)  # eta-like
    t[:, 2] = rng.uniform(-np.pi, np.pi, rows)  # phi-like
    t[:, 3] = t[:, 0] * np.cos(t[:, 2])  # px from pt, phi
    t[:, 4] = rng.integers(-3, 4, rows)  # a charge-like category
    t[:, 5] = rng.normal(1e3, 1e2, rows)
    t[5, 1] = np.nan
    t[7, 0] = np.inf
    t[9, 3] = -0.0
    return t


def field(dtype, shape=(24, 40, 50)):
    z, y, x = np.meshgrid(*(np.linspace(0, 3, n) for n in shape), indexing="ij")
    f = np.sin(x) * np.cos(y) + 0.2 * z
    f += np.random.default_rng(1).normal(0, 1e-3, shape)
    return f.astype(dtype)


def specials_equal(a, b):
    """NaN, +-Inf and -0.0 bit for bit."""
    ba = a.view(np.uint32 if a.dtype == np.float32 else np.uint64)
    bb = b.view(ba.dtype)
    special = ~np.isfinite(a) | ((a == 0) & np.signbit(a))
    return np.array_equal(ba[special], bb[special])


@np.errstate(invalid="ignore")
def check(orig, back, mode, value, per_column):
    assert back.dtype == orig.dtype and back.shape == orig.shape
    assert specials_equal(orig, back)
    x = orig.astype(np.float64)
    y = back.astype(np.float64)
    fin = np.isfinite(x)
    if mode == "lossless":
        assert np.array_equal(orig.view(np.uint8), back.view(np.uint8))
        return
    if mode in ("abs", "rel"):
        if mode == "abs":
            bound = np.full(x.shape, value)
        else:
            masked = np.where(fin, x, np.nan)
            if per_column:
                rng_ = np.nanmax(masked, axis=0) - np.nanmin(masked, axis=0)
                bound = np.broadcast_to(value * rng_, x.shape)
            else:
                bound = np.full(x.shape, value * (np.nanmax(masked) - np.nanmin(masked)))
        assert np.all(np.abs(x - y)[fin] <= bound[fin])
    else:
        r = value if mode == "pwrel" else 2.0 ** -(value + 1)
        assert np.all(np.abs(x - y)[fin] <= r * np.abs(x)[fin])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "spec",
    ["abs:0.01", "rel:1e-3", "rel:1e-5", "pwrel:1e-3", "bits:10", "bits:4", "lossless"],
)
def test_tables_and_fields_round_trip_within_their_bound(dtype, spec):
    mode, _, value = spec.partition(":")
    value = float(value) if value else 0.0
    for arr, per_column in ((table(dtype), True), (field(dtype), False)):
        blob = baler.compress(arr, bound=spec)
        assert isinstance(blob, bytes)
        back = baler.decompress(blob)
        check(arr, back, mode, value, per_column)
        if mode != "lossless":
            assert len(blob) < arr.nbytes


def test_calls_after_calls_give_the_same_bytes_and_scratch_can_be_freed():
    # Each call's workers take the codecs the calls before kept: a table and a field in
    # turn, in both precisions, give the first call's bytes and values every time.
    arrays = [make(dtype) for dtype in (np.float32, np.float64) for make in (table, field)]
    baler.release_scratch()
    first = [baler.compress(a, bound="rel:1e-3") for a in arrays]
    backs = [baler.decompress(b) for b in first]
    for _ in range(3):
        for a, blob, back in zip(arrays, first, backs):
            again = baler.compress(a, bound="rel:1e-3")
            assert again == blob
            assert np.array_equal(baler.decompress(again), back, equal_nan=True)
    assert baler.release_scratch() is None


def _compress_in_child(arr, q):
    q.put(baler.decompress(baler.compress(arr, bound="rel:1e-3")).shape)


def test_a_process_forked_after_a_call_compresses_on_its_own_threads():
    # baler keeps its threads parked between calls; a child made by fork has none of them
    # (multiprocessing's default on Linux), and must not wait on its parent's.
    import multiprocessing
    import warnings

    arr = table(np.float32, rows=2000)
    baler.compress(arr, bound="rel:1e-3")
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a process with threads: ours may be parked.
        warnings.simplefilter("ignore", DeprecationWarning)
        p = ctx.Process(target=_compress_in_child, args=(arr, q))
        p.start()
    p.join(30)
    if p.is_alive():
        p.kill()
        pytest.fail("the forked child hung")
    assert p.exitcode == 0
    assert q.get(timeout=5) == arr.shape
    # release_scratch lets the parked threads go: the process is back to its own threads.
    def threads():
        with open("/proc/self/status") as fh:
            return int(next(l for l in fh if l.startswith("Threads:")).split()[1])

    baler.release_scratch()
    before = threads()
    baler.compress(arr, bound="rel:1e-3")
    assert threads() > before, "the call's threads stay parked for the next"
    baler.release_scratch()
    assert threads() == before


def test_containers_are_the_command_lines_both_ways(tmp_path):
    t = table(np.float32)
    npy = tmp_path / "t.npy"
    np.save(npy, t)
    # Python -> command line.
    (tmp_path / "py.baler").write_bytes(baler.compress(t, bound="rel:1e-3"))
    subprocess.run([BALER, "decompress", str(tmp_path / "py.baler"), "-o", str(tmp_path / "back.npy"), "-q"], check=True)
    check(t, np.load(tmp_path / "back.npy"), "rel", 1e-3, True)
    # Command line -> Python.
    subprocess.run([BALER, "compress", str(npy), "-b", "rel:1e-3", "--model", "none", "-o", str(tmp_path / "cli.baler"), "-q"], check=True)
    cli = (tmp_path / "cli.baler").read_bytes()
    check(t, baler.decompress(cli), "rel", 1e-3, True)
    assert cli[:8] == b"\x89BALER\r\n"


def test_per_column_bounds_names_and_bounds_files(tmp_path):
    t = table(np.float64)
    names = ["PT", "Eta", "Phi", "Px", "Charge", "E"]
    blob = baler.compress(t, bound="rel:1e-3", names=names, bounds={"Charge": "lossless", 5: "abs:0.5", "P*": "bits:12"})
    back = baler.decompress(blob)
    assert np.array_equal(back[:, 4], t[:, 4])
    assert np.all(np.abs(back[:, 5] - t[:, 5]) <= 0.5)
    fin = np.isfinite(t[:, 0])
    assert np.all(np.abs(back[fin, 0] - t[fin, 0]) <= 2.0**-13 * np.abs(t[fin, 0]))
    f = tmp_path / "nano.bounds"
    f.write_text("# NanoAOD-like\ndefault bits:10\nCharge lossless\n")
    back = baler.decompress(baler.compress(t, bounds=f, names=names))
    assert np.array_equal(back[:, 4], t[:, 4])
    fin = np.isfinite(t[:, 1])
    assert np.all(np.abs(back[fin, 1] - t[fin, 1]) <= 2.0**-11 * np.abs(t[fin, 1]))


def test_inputs_without_a_copy_and_others_made_contiguous():
    t = table(np.float32)
    for a in (t, np.asfortranarray(t), t[::2], t.astype(">f4")):
        back = baler.decompress(baler.compress(a, bound="abs:0.01"))
        assert back.shape == a.shape and back.dtype == np.float32
        fin = np.isfinite(a)
        assert np.all(np.abs(back[fin].astype(np.float64) - a[fin]) <= 0.01)


def test_errors_are_baler_errors_with_the_command_lines_messages():
    t = table(np.float32)
    with pytest.raises(baler.BalerError, match="bound"):
        baler.compress(t, bound="relative:5")
    with pytest.raises(ValueError):
        baler.compress(t, bound="rel:1e-3", bounds={"NoSuchColumn": "abs:1"}, names=list("abcdef"))
    with pytest.raises(baler.BalerError, match="float32 or float64"):
        baler.compress(np.arange(10), bound="abs:1")
    with pytest.raises(baler.BalerError, match="field"):
        baler.compress(field(np.float32), bound="abs:1", bounds={0: "abs:2"})
    blob = bytearray(baler.compress(t, bound="rel:1e-3"))
    blob[len(blob) // 2] ^= 0x40
    with pytest.raises(baler.BalerError, match="corrupt|checksum"):
        baler.decompress(blob)
    with pytest.raises(baler.BalerError, match="truncated"):
        baler.decompress(bytes(blob[: len(blob) // 3]))
    with pytest.raises(baler.BalerError):
        baler.decompress(b"not a container")


def test_the_gil_is_released_while_compressing():
    """Two threads compressing at once both finish, and a third thread runs Python meanwhile."""
    big = np.random.default_rng(3).normal(size=(400_000, 8)).astype(np.float32)
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(1)
            stop.wait(0.001)

    t = threading.Thread(target=tick)
    t.start()
    out = [None, None]
    workers = [threading.Thread(target=lambda i=i: out.__setitem__(i, baler.compress(big, bound="rel:1e-3", threads=1))) for i in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    t.join()
    assert out[0] == out[1]
    assert len(ticks) > 5


def test_a_model_file_from_baler_train(tmp_path):
    t = table(np.float32, rows=60_000)
    npy = tmp_path / "t.npy"
    np.save(npy, t)
    model = tmp_path / "t.bmdl"
    subprocess.run([BALER, "train", str(npy), "-b", "rel:1e-3", "-o", str(model), "-q", "--epochs", "0"], check=True)
    plain = baler.compress(t, bound="rel:1e-3")
    learned = baler.compress(t, bound="rel:1e-3", model=model)
    check(t, baler.decompress(learned), "rel", 1e-3, True)
    assert len(learned) < len(plain)  # px = pt cos(phi) is learned
    with pytest.raises(baler.BalerError, match="columns"):
        baler.compress(t[:, :4].copy(), bound="rel:1e-3", model=model)


def test_the_numcodecs_codec_from_its_entry_point(tmp_path):
    numcodecs = pytest.importorskip("numcodecs")
    codec = numcodecs.get_codec({"id": "baler", "bound": "abs:0.01"})
    assert type(codec).__module__ == "baler.codecs"
    chunk = field(np.float32)
    back = codec.decode(codec.encode(chunk))
    assert back.shape == chunk.shape and np.all(np.abs(back - chunk) <= 0.01)
    out = np.empty_like(chunk)
    codec.decode(codec.encode(chunk), out=out)
    assert np.array_equal(out, back)
    # A table's chunk with per-column bounds and a model trained beforehand: the configuration
    # carries the model, and a codec made from it decodes alone.
    t = table(np.float32, rows=60_000)
    npy = tmp_path / "t.npy"
    np.save(npy, t)
    model = tmp_path / "t.bmdl"
    subprocess.run([BALER, "train", str(npy), "-b", "abs:0.01", "-o", str(model), "-q", "--epochs", "0"], check=True)
    codec = numcodecs.get_codec({"id": "baler", "bound": "abs:0.01", "bounds": {"4": "lossless"}, "model": None})
    with_model = type(codec)(bound="abs:0.01", bounds={4: "lossless"}, model=model)
    config = with_model.get_config()
    assert isinstance(config["model"], str) and len(config["model"]) < 4 * model.stat().st_size
    again = numcodecs.get_codec(config)
    blob = again.encode(t)
    assert len(blob) < len(codec.encode(t))
    back = numcodecs.get_codec(config).decode(blob)
    assert np.array_equal(back[:, 4], t[:, 4])
    with pytest.raises(TypeError):
        codec.encode(np.arange(10))


def test_zarr_arrays_through_the_codec(tmp_path):
    zarr = pytest.importorskip("zarr")
    from baler.codecs import Baler

    data = field(np.float32, shape=(40, 60, 50))
    z = zarr.create_array(
        store=str(tmp_path / "f.zarr"),
        shape=data.shape,
        chunks=(10, 60, 50),
        dtype="float32",
        zarr_format=2,
        compressors=Baler(bound="abs:0.001"),
    )
    z[...] = data
    back = zarr.open_array(str(tmp_path / "f.zarr"), mode="r")[...]
    assert np.all(np.abs(back - data) <= 0.001)
    # Every chunk decodes on its own: one slab read back alone.
    part = zarr.open_array(str(tmp_path / "f.zarr"), mode="r")[20:30]
    assert np.all(np.abs(part - data[20:30]) <= 0.001)


def test_zarr_v3_arrays_through_the_array_to_bytes_codec(tmp_path):
    zarr = pytest.importorskip("zarr", minversion="3")
    from baler.zarr3 import BalerCodec

    # Found by name through the zarr.codecs entry point.
    assert zarr.registry.get_codec_class("baler") is BalerCodec
    data = field(np.float64, shape=(40, 60, 50))
    path = str(tmp_path / "v3.zarr")
    z = zarr.create_array(
        store=path, shape=data.shape, chunks=(10, 30, 50), dtype="float64",
        serializer=BalerCodec(bound="pwrel:1e-4"), compressors=None,
    )
    z[...] = data
    again = zarr.open_array(path, mode="r")
    assert again.metadata.to_dict()["codecs"][0]["name"] == "baler"
    back = again[...]
    assert np.all(np.abs(back - data) <= 1e-4 * np.abs(data))
    part = again[10:20, 30:60]
    assert np.array_equal(part, back[10:20, 30:60])
    # A table with per-column bounds and a model in its configuration.
    t = table(np.float32, rows=60_000)
    npy = tmp_path / "t.npy"
    np.save(npy, t)
    model = tmp_path / "t.bmdl"
    subprocess.run([BALER, "train", str(npy), "-b", "abs:0.01", "-o", str(model), "-q", "--epochs", "0"], check=True)
    tz = zarr.create_array(
        store=str(tmp_path / "t.zarr"), shape=t.shape, chunks=(20_000, 6), dtype="float32",
        serializer=BalerCodec(bound="abs:0.01", bounds={4: "lossless"}, model=model), compressors=None,
    )
    tz[...] = t
    tb = zarr.open_array(str(tmp_path / "t.zarr"), mode="r")[...]
    assert np.array_equal(tb[:, 4], t[:, 4])
    fin = np.isfinite(t)
    with np.errstate(invalid="ignore"):
        assert np.all(np.abs(tb.astype(np.float64) - t)[fin] <= 0.01)
