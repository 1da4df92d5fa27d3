"""dask.array.to_zarr on a distributed LocalCluster (two worker processes, one thread each, on
loopback; the scheduler's HTTP server, which distributed starts even with dashboard_address=None
(at :8787), on a free port): every chunk is made and compressed by baler in a worker process,
through
(a) the numcodecs codec on a zarr format-2 array and (b) the zarr v3 array->bytes codec. Read
back with zarr and with dask.array.from_zarr, every value checked against the bound with NumPy,
and the stored chunk files checked to be baler containers.

Needs dask[distributed] and zarr 3 (scripts/test_python.sh installs them).
"""

import os

import numpy as np
import pytest

import dask
import dask.array as da
import zarr
from distributed import Client, LocalCluster, get_task_stream

import baler
from baler.codecs import Baler
from baler.zarr3 import BalerCodec

MAGIC = b"\x89BALER\r\n"  # src/container.rs, MAGIC
SHAPE = (20, 200, 200)
CHUNKS = (5, 100, 100)  # 4 x 2 x 2 = 16 chunks
N_CHUNKS = 16


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",  # on `host`, a free port (None still binds 8787)
        scheduler_port=0,
        worker_dashboard_address=None,
    )
    try:
        with Client(cluster) as c:
            yield c
    finally:
        cluster.close()


def field_block(block_info=None):
    """One chunk of a smooth 3-D float32 field with noise (seeded by the chunk's place)."""
    out = block_info[None]
    axes = [np.linspace(0.0, 4.0, n)[a:b] for n, (a, b) in zip(SHAPE, out["array-location"])]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    f = 10.0 * np.sin(x + 0.3 * z) * np.cos(1.5 * y) + 2.0 * z
    f += np.random.default_rng([5, *out["chunk-location"]]).normal(0.0, 0.05, f.shape)
    return f.astype(np.float32)


def field():
    """The field as a dask array whose chunks are made where they are computed: on the workers,
    as when each worker reads its part of a dataset. (Chunks made here and shipped to the
    workers: test_to_zarr_of_chunks_shipped_to_the_workers.)"""
    chunks = tuple((c,) * (n // c) for n, c in zip(SHAPE, CHUNKS))
    return da.map_blocks(field_block, chunks=chunks, dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))


@pytest.fixture(scope="module")
def data():
    """The same field, made here (in this process, not on the cluster)."""
    return field().compute(scheduler="synchronous")


def within_abs(orig, back, e):
    assert back.shape == orig.shape and back.dtype == orig.dtype
    err = np.abs(back.astype(np.float64) - orig.astype(np.float64))
    assert np.all(err <= e), f"{np.count_nonzero(err > e)} values beyond abs:{e}, largest {err.max()}"
    # The bound was used, not a lossless copy (the check above would pass for one).
    assert err.max() > e / 4
    return err.max()


def chunk_files(path):
    """The chunk files under a zarr store directory (every file but the metadata)."""
    out = []
    for root, _, files in os.walk(path):
        for name in files:
            if not name.startswith(".") and name != "zarr.json":
                out.append(os.path.join(root, name))
    return sorted(out)


def stored_by_workers(client, tasks):
    """The workers that ran the store tasks seen in a task stream."""
    workers = set(client.scheduler_info()["workers"])
    ran = {t["worker"] for t in tasks if "store" in str(t["key"])}
    assert ran and ran <= workers, (ran, workers)
    return ran


def test_to_zarr_format_2_with_the_numcodecs_codec(client, data, tmp_path):
    path = str(tmp_path / "v2.zarr")
    darr = field()
    with get_task_stream(client) as ts:
        da.to_zarr(darr, path, zarr_format=2, compressors=Baler(bound="abs:0.01"))
    stored_by_workers(client, ts.data)

    z = zarr.open_array(path, mode="r")
    assert z.metadata.zarr_format == 2 and z.chunks == CHUNKS
    assert z.metadata.to_dict()["compressor"]["id"] == "baler"
    within_abs(data, z[...], 0.01)
    back = da.from_zarr(path)
    assert back.chunks == darr.chunks
    within_abs(data, back.compute(), 0.01)  # read on the workers
    within_abs(data[5:10, 100:], z[5:10, 100:], 0.01)

    files = chunk_files(path)
    assert len(files) == N_CHUNKS
    total = 0
    for f in files:
        raw = open(f, "rb").read()
        assert raw[:8] == MAGIC, f
        total += len(raw)
        assert baler.decompress(raw).shape == CHUNKS  # a container that decodes alone
    assert total < data.nbytes / 2


def test_to_zarr_v3_with_the_array_to_bytes_codec(client, data, tmp_path):
    path = str(tmp_path / "v3.zarr")
    z = zarr.create_array(
        store=path, shape=SHAPE, chunks=CHUNKS, dtype="float32",
        serializer=BalerCodec(bound="abs:0.002"), compressors=None,
    )
    with get_task_stream(client) as ts:
        da.to_zarr(field(), z)
    stored_by_workers(client, ts.data)

    again = zarr.open_array(path, mode="r")
    codecs = again.metadata.to_dict()["codecs"]
    assert [c["name"] for c in codecs] == ["baler"]
    assert codecs[0]["configuration"]["bound"] == "abs:0.002"
    within_abs(data, again[...], 0.002)
    back = da.from_zarr(path)
    within_abs(data, back.compute(), 0.002)  # read on the workers
    within_abs(data[10:15, :100, 100:], again[10:15, :100, 100:], 0.002)

    files = chunk_files(path)
    assert len(files) == N_CHUNKS
    assert all(os.path.relpath(f, path).startswith("c" + os.sep) for f in files)
    for f in files:
        raw = open(f, "rb").read()
        assert raw[:8] == MAGIC, f
        part = baler.decompress(raw)
        assert part.shape == CHUNKS and part.dtype == np.float32
    # One chunk checked on its own against its slab of the input.
    raw = open(os.path.join(path, "c", "1", "0", "1"), "rb").read()
    within_abs(data[5:10, :100, 100:], baler.decompress(raw), 0.002)


def test_the_default_scheduler_is_the_cluster(client):
    # What the tests above computed on: the cluster's client, with two single-threaded workers.
    assert dask.base.get_scheduler() == client.get
    info = client.scheduler_info()["workers"]
    assert len(info) == 2 and all(w["nthreads"] == 1 for w in info.values())
    assert all(addr.startswith("tcp://127.0.0.1:") for addr in info)
    assert client.scheduler.address.startswith("tcp://127.0.0.1:")


def test_to_zarr_of_chunks_shipped_to_the_workers(client, data, tmp_path):
    # Chunks made here and sent to the workers come out of their messages at odd offsets
    # (unaligned): baler.compress copies them into aligned memory (the engine reads an array's
    # buffer in place, and rust-numpy wants it aligned).
    path = str(tmp_path / "shipped.zarr")
    darr = da.from_array(data, chunks=CHUNKS)
    with get_task_stream(client) as ts:
        da.to_zarr(darr, path, zarr_format=2, compressors=Baler(bound="abs:0.01"))
    stored_by_workers(client, ts.data)
    within_abs(data, zarr.open_array(path, mode="r")[...], 0.01)


# A C-contiguous float32 array that is not aligned (its data at an odd address): copied into
# aligned memory, not refused.
def test_an_unaligned_array():
    raw = np.random.default_rng(0).random(1000).astype(np.float32)
    buf = bytearray(raw.nbytes + 1)
    a = np.frombuffer(buf, dtype=np.float32, offset=1)
    a[...] = raw
    assert a.flags.c_contiguous and not a.flags.aligned
    back = baler.decompress(baler.compress(a, bound="abs:0.01"))
    assert np.all(np.abs(back - raw) <= 0.01)
