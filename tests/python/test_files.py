"""Files, training, lazy reading and evaluation from Python: compress_file / decompress_file
(streaming, as the command line; HDF5 through h5py), baler.open (random access through the
footer index), baler.train and baler.Model, baler.evaluate. Every value is checked by NumPy.
"""

import os
import pickle
import subprocess

import h5py
import numpy as np
import pytest

import baler

from test_baler import BALER, ROOT, check, field, table

DELPHES = os.path.join(ROOT, "fixtures", "delphes_16k.npy")


def within_rel(orig, back, r):
    """Every finite value within r x its column's range (a table) or the field's range."""
    x, y = orig.astype(np.float64), back.astype(np.float64)
    axis = 0 if orig.ndim == 2 else None
    with np.errstate(invalid="ignore"):
        fin = np.where(np.isfinite(x), x, np.nan)
        e = r * (np.nanmax(fin, axis=axis) - np.nanmin(fin, axis=axis))
        ok = ~np.isfinite(x) | (np.abs(y - x) <= e)
    assert ok.all(), f"{np.count_nonzero(~ok)} values beyond rel:{r}"


def test_compress_trains_by_default_as_the_command_line(tmp_path):
    a = np.load(DELPHES)
    auto = baler.compress(a)  # model="auto", effort 3: the linear parts on sampled records
    plain = baler.compress(a, model=None)
    assert len(auto) < 0.8 * len(plain), (len(auto), len(plain))
    assert baler.compress(a, effort=1) == plain  # effort 1 trains nothing
    p = tmp_path / "a.baler"
    p.write_bytes(auto)
    with baler.open(p) as c:
        assert c.model is not None and c.model.predicted > 0
    within_rel(a, baler.decompress(auto), 1e-3)
    with pytest.raises(baler.BalerError, match="effort"):
        baler.compress(a, effort=10)


def test_compress_file_writes_the_command_lines_container(tmp_path):
    cli = tmp_path / "cli.baler"
    subprocess.run([BALER, "compress", DELPHES, "-b", "rel:1e-3", "-o", str(cli), "-q"], check=True)
    py = tmp_path / "py.baler"
    summary = baler.compress_file(DELPHES, py, bound="rel:1e-3")
    assert py.read_bytes() == cli.read_bytes()  # same sample, model, ranges and coding
    assert summary["records"] == 16384 and summary["bytes_out"] == py.stat().st_size
    assert summary["ratio"] > 15 and summary["model_bytes"] > 0
    # Lossless, where the model that keeps the table's own order is tried too: the same.
    cli_ll, py_ll = tmp_path / "cli_ll.baler", tmp_path / "py_ll.baler"
    subprocess.run([BALER, "compress", DELPHES, "-b", "lossless", "-o", str(cli_ll), "-q"],
                   check=True)
    baler.compress_file(DELPHES, py_ll, bound="lossless")
    assert py_ll.read_bytes() == cli_ll.read_bytes()
    assert baler.decompress(py_ll.read_bytes()).tobytes() == np.load(DELPHES).tobytes()
    # Refused without force, and nothing changed; accepted with it.
    with pytest.raises(baler.BalerError, match="exists"):
        baler.compress_file(DELPHES, py)
    baler.compress_file(DELPHES, py, bound="abs:0.5", force=True, model="none")
    back = tmp_path / "back.npy"
    d = baler.decompress_file(py, back)
    assert d["shape"] == [16384, 16] and d["dtype"] == "float32"
    a = np.load(DELPHES)
    check(a, np.load(back), "abs", 0.5, False)
    # The default output names: SRC.baler, and back without .baler.
    src = tmp_path / "t.npy"
    np.save(src, a[:5000])
    baler.compress_file(src, bound="bits:10")
    os.remove(src)
    baler.decompress_file(str(src) + ".baler")
    check(a[:5000], np.load(src), "bits", 10, False)


def test_raw_inputs_and_outputs(tmp_path):
    f = field(np.float64)
    raw = tmp_path / "f.f64"
    f.tofile(raw)
    baler.compress_file(raw, tmp_path / "f.baler", bound="pwrel:1e-4", dtype="float64",
                        shape=(-1,) + f.shape[1:])
    with baler.open(tmp_path / "f.baler") as c:
        assert c.shape == f.shape and c.layout == "field" and c.dtype == "float64"
    baler.decompress_file(tmp_path / "f.baler", tmp_path / "back.raw")
    back = np.fromfile(tmp_path / "back.raw", dtype=np.float64).reshape(f.shape)
    check(f, back, "pwrel", 1e-4, False)
    with pytest.raises(baler.BalerError, match="float32 or float64"):
        baler.compress_file(raw, tmp_path / "x.baler", dtype="int32", shape=(-1,))


def test_a_failed_compression_leaves_no_output(tmp_path):
    a = table(np.float32)
    src = tmp_path / "t.npy"
    np.save(src, a)
    data = src.read_bytes()
    src.write_bytes(data[: len(data) - 1000])  # truncated: fewer values than its header says
    out = tmp_path / "t.baler"
    with pytest.raises(baler.BalerError, match="truncated|ends"):
        baler.compress_file(src, out, model="none")
    assert os.listdir(tmp_path) == ["t.npy"]
    with pytest.raises(baler.BalerError, match="cannot open"):
        baler.compress_file(tmp_path / "missing.npy", out)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_open_reads_any_rows_from_the_chunks_that_hold_them(tmp_path, dtype):
    t = table(dtype, rows=50_000)
    p = tmp_path / "t.baler"
    p.write_bytes(baler.compress(t, bound="abs:0.01", chunk_size=64 << 10))
    whole = baler.decompress(p.read_bytes())
    with baler.open(p) as c:
        assert c.chunks > 5 and len(c) == 50_000 and c.shape == (50_000, 6)
        rows = c.chunk_rows
        assert rows[0][0] == 0 and sum(n for _, n in rows) == 50_000
        assert all(a + n == b for (a, n), (b, _) in zip(rows, rows[1:]))
        np.testing.assert_array_equal(c[:], whole)
        np.testing.assert_array_equal(c.read(), whole)
        for a, b in [(0, 1), (rows[1][0] - 3, rows[1][0] + 3), (12_345, 40_000), (49_990, 50_000), (7, 7)]:
            np.testing.assert_array_equal(c[a:b], whole[a:b])
        np.testing.assert_array_equal(c.chunk(2), whole[rows[2][0]:rows[2][0] + rows[2][1]])
        np.testing.assert_array_equal(c[-1], whole[-1])
        np.testing.assert_array_equal(c[100:20:-7], whole[100:20:-7])
        np.testing.assert_array_equal(c[::5000], whole[::5000])
        np.testing.assert_array_equal(c[10:20, 3], whole[10:20, 3])
        assert c[5, 2] == whole[5, 2]
        with pytest.raises(IndexError):
            c[50_000]
        with pytest.raises(IndexError):
            c.chunk(c.chunks)
    with pytest.raises(baler.BalerError, match="closed"):
        c[0:1]
    f = field(np.float32, shape=(40, 60, 50))
    p.write_bytes(baler.compress(f, bound="abs:1e-3", chunk_size=32 << 10))
    with baler.open(p) as c:
        assert c.chunks > 1 and c.shape == f.shape
        np.testing.assert_array_equal(c[13:29], baler.decompress(p.read_bytes())[13:29])


def test_open_detects_a_damaged_chunk(tmp_path):
    t = table(np.float32, rows=50_000)
    p = tmp_path / "t.baler"
    p.write_bytes(baler.compress(t, bound="abs:0.01", chunk_size=64 << 10, model=None))
    with baler.open(p) as c:
        rows = c.chunk_rows
    data = bytearray(p.read_bytes())
    # A payload byte in the middle of the file: one chunk's checksum fails, the others read.
    data[len(data) // 2] ^= 0x10
    p.write_bytes(bytes(data))
    with baler.open(p) as c:
        bad = 0
        for k, (a, n) in enumerate(rows):
            try:
                c.chunk(k)
            except baler.BalerError as e:
                assert "checksum" in str(e) or "corrupt" in str(e).lower(), e
                bad += 1
        assert bad == 1
    p.write_bytes(b"not a container at all")
    with pytest.raises(baler.BalerError):
        baler.open(p)


def test_train_save_load_and_use_a_model(tmp_path):
    a = np.load(DELPHES)
    m = baler.train(a, bound="rel:1e-3", sample=10_000, epochs=3)
    assert m.columns == 16 and 0 < m.predicted <= 16 and m.parameters > 0
    assert sorted(m.order) == list(range(16))
    m.save(tmp_path / "d.bmdl")
    m2 = baler.Model.load(tmp_path / "d.bmdl")
    assert m2.to_bytes() == m.to_bytes() == (tmp_path / "d.bmdl").read_bytes()
    assert pickle.loads(pickle.dumps(m)).to_bytes() == m.to_bytes()
    blobs = {baler.compress(a, model=x) for x in (m, m2, tmp_path / "d.bmdl", m.to_bytes())}
    assert len(blobs) == 1
    within_rel(a, baler.decompress(blobs.pop()), 1e-3)
    # The command line reads it.
    npy = tmp_path / "d.npy"
    np.save(npy, a)
    subprocess.run([BALER, "compress", str(npy), "-b", "rel:1e-3", "--model", str(tmp_path / "d.bmdl"),
                    "-o", str(tmp_path / "cli.baler"), "-q"], check=True)
    # A .npy path is memory-mapped: the same sample, the same model.
    assert baler.train(DELPHES, sample=10_000, epochs=3).to_bytes() == m.to_bytes()
    with pytest.raises(baler.BalerError, match="16 columns"):
        baler.compress(a[:, :8].copy(), model=m)
    with pytest.raises(baler.BalerError, match="tables"):
        baler.train(a.ravel())
    with pytest.raises(baler.BalerError):
        baler.Model.from_bytes(b"BALERMDL garbage")


def test_evaluate_gives_the_command_lines_figures(tmp_path):
    t = table(np.float64)
    blob = baler.compress(t, bound="abs:0.001")
    r = baler.evaluate(t, blob)
    assert r["bound_met"] and r["worst_error_over_bound"] <= 1.0
    assert r["shape"] == [20_000, 6] and r["original_bytes"] == t.nbytes
    assert r["ratio"] == pytest.approx(t.nbytes / len(blob))
    assert len(r["columns"]) == 6 and all(c["violations"] == 0 for c in r["columns"])
    assert r["columns"][1]["nonfinite"] == 1  # the NaN
    # The CLI's JSON, on the same pair.
    (tmp_path / "t.baler").write_bytes(blob)
    np.save(tmp_path / "t.npy", t)
    assert baler.evaluate(tmp_path / "t.npy", tmp_path / "t.baler")["columns"] == r["columns"]
    # Another original: its violations are counted, and where the first one is.
    other = t.copy()
    other[123, 5] += 1.0
    r2 = baler.evaluate(other, blob)
    assert not r2["bound_met"] and r2["columns"][5]["violations"] == 1
    assert r2["columns"][5]["first_violation_at"] == 123
    with pytest.raises(baler.BalerError, match="not the array"):
        baler.evaluate(t[:, :5].copy(), blob)
    with pytest.raises(baler.BalerError, match="float64"):
        baler.evaluate(t.astype(np.float32), blob)
    with pytest.raises(baler.BalerError, match="more values|holds"):
        baler.evaluate(t[:100].copy(), blob)


def test_hdf5_datasets_through_h5py(tmp_path):
    t = table(np.float32, rows=30_000)
    f = field(np.float64)
    h5 = tmp_path / "in.h5"
    with h5py.File(h5, "w") as hf:
        d = hf.create_dataset("/events/jets", data=t, chunks=(4096, 6))
        d.attrs["columns"] = ["pt", "eta", "phi", "px", "q", "m"]
        hf.create_dataset("/field", data=f, chunks=(4, 40, 50))
    out = tmp_path / "jets.baler"
    s = baler.compress_file(f"{h5}:/events/jets", out, bound="rel:1e-3")
    assert s["records"] == 30_000
    with baler.open(out) as c:
        assert c.names == ["pt", "eta", "phi", "px", "q", "m"] and c.model is not None
    back = baler.decompress(out.read_bytes())
    # A stream's ranges come from its first chunks (here all of it, in one chunk) as for stdin.
    within_rel(t, back, 1e-3)
    baler.compress_file(h5, tmp_path / "f.baler", dataset="/field", bound="abs:1e-4")
    baler.decompress_file(tmp_path / "f.baler", tmp_path / "out.h5:/grp/f")
    with h5py.File(tmp_path / "out.h5", "r") as hf:
        check(f, hf["/grp/f"][...], "abs", 1e-4, False)
    baler.decompress_file(out, tmp_path / "jets.h5")
    with h5py.File(tmp_path / "jets.h5", "r") as hf:
        assert list(hf["/data"].attrs["columns"]) == ["pt", "eta", "phi", "px", "q", "m"]
        np.testing.assert_array_equal(hf["/data"][...], back)
    with pytest.raises(baler.BalerError, match="exists"):
        baler.decompress_file(out, tmp_path / "jets.h5")
    with pytest.raises(baler.BalerError, match="float datasets|name"):
        baler.compress_file(h5, tmp_path / "x.baler")  # two float datasets: which one?


def test_decompress_sizes_the_array_from_the_footer(tmp_path):
    # A container written from a stream (the first dimension unknown in its header) decodes
    # to its full shape, as does one of a known shape, in many chunks.
    t = table(np.float32, rows=30_000)
    raw = t.tobytes()
    out = subprocess.run(
        [BALER, "compress", "-", "--dtype", "f32", "--shape", "-1,6", "-b", "abs:0.01",
         "--chunk-size", "65536", "-q", "-o", "-"],
        input=raw, capture_output=True, check=True,
    ).stdout
    back = baler.decompress(out)
    assert back.shape == (30_000, 6)
    check(t, back, "abs", 0.01, False)
    blob = baler.compress(t, bound="abs:0.01", chunk_size=65536)
    again = baler.decompress(blob)
    check(t, again, "abs", 0.01, False)
    np.testing.assert_array_equal(baler.decompress(memoryview(blob)), again)
    # A cut container is an error, not a short array.
    with pytest.raises(baler.BalerError):
        baler.decompress(blob[: len(blob) // 2])
