"""HDF5 datasets in and out of baler through h5py (the wheel carries no HDF5 library of its
own): a dataset is read in slabs of rows and streamed into the engine, and a container is
written into a dataset chunk by chunk, so neither is ever held whole in memory."""

import os

import numpy as np

from . import _baler

_SLAB_BYTES = 8 << 20


def _h5py():
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - h5py is installed where HDF5 is used
        raise _baler.BalerError(
            "HDF5 files are read and written through h5py: pip install h5py"
        ) from e
    return h5py


def _dataset(f, name):
    """The dataset `name`, or the file's only float dataset."""
    if name:
        if name not in f:
            raise _baler.BalerError(f"{f.filename} has no dataset {name!r}")
        return f[name]
    found = []
    f.visititems(lambda n, o: found.append(n) if getattr(o, "dtype", None) is not None
                 and o.dtype.kind == "f" else None)
    if len(found) != 1:
        raise _baler.BalerError(
            f"{f.filename} holds {len(found)} float datasets ({', '.join(found[:5])}): name "
            f"one, as FILE.h5:/dataset"
        )
    return f[found[0]]


class _Rows:
    """A dataset's values as little-endian bytes, read in slabs of whole rows."""

    def __init__(self, ds):
        self.ds = ds
        row = int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize
        self.step = max(1, _SLAB_BYTES // max(row, 1))
        self.next = 0
        self.buf = b""

    def read(self, n):
        while len(self.buf) < n and self.next < self.ds.shape[0]:
            a, b = self.next, min(self.next + self.step, self.ds.shape[0])
            slab = np.ascontiguousarray(self.ds[a:b], dtype=self.ds.dtype.newbyteorder("<"))
            self.buf += slab.tobytes()
            self.next = b
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def _sample(ds, rows, seed=1, block=256):
    """About `rows` records drawn uniformly from the dataset in blocks of `block`."""
    n = ds.shape[0]
    blocks = -(-n // block)
    want = min(blocks, -(-rows // block))
    picked = np.sort(np.random.default_rng(seed).choice(blocks, size=want, replace=False))
    return np.concatenate([ds[b * block: min(n, (b + 1) * block)] for b in picked])


def compress_dataset(path, dataset, dst, bound, bounds, names, model, effort, threads, layout,
                     chunk_size, force):
    h5py = _h5py()
    with h5py.File(path, "r") as f:
        ds = _dataset(f, dataset)
        if ds.dtype.kind != "f" or ds.dtype.itemsize not in (4, 8):
            raise _baler.BalerError(
                f"{path}:{ds.name} holds {ds.dtype}: baler compresses float32 or float64 datasets"
            )
        if names is None and ds.ndim == 2:
            attr = ds.attrs.get("columns", ds.attrs.get("column_names"))
            if attr is not None:
                names = [a.decode() if isinstance(a, bytes) else str(a) for a in attr]
        table = (layout or ("table" if ds.ndim == 2 else "field")) == "table"
        if isinstance(model, str) and model == "auto":
            # As the command line at `effort`: the engine's sample and epochs for this many
            # records (it samples a file itself; here h5py reads the sample).
            model = None
            records, epochs = (_baler.train_budget(effort, ds.shape[0])
                               if table and ds.ndim == 2 else (0, 0))
            if records > 0:
                sample = _sample(ds, records)
                try:
                    model = _baler.train(np.ascontiguousarray(sample), bound=bound,
                                         bounds=bounds, names=list(names) if names else None,
                                         sample=len(sample), epochs=epochs)
                except _baler.BalerError:
                    model = None  # nothing to learn: the plain and neighbour predictors
        dst = dst if dst is not None else f"{path}.baler"
        return _baler.compress_stream(
            _Rows(ds), f"{path}:{ds.name}", os.fspath(dst),
            "float32" if ds.dtype.itemsize == 4 else "float64", [int(d) for d in ds.shape],
            bound=bound, bounds=bounds, names=list(names) if names else None, model=model,
            threads=threads, layout=layout, chunk_size=chunk_size, force=force,
        )


def decompress_to_dataset(src, path, dataset, force):
    h5py = _h5py()
    if os.path.exists(path) and not force:
        raise _baler.BalerError(f"{path} exists: give force=True to overwrite it")
    tmp = f"{path}.baler-tmp-{os.getpid()}"
    with _baler.Container(src) as c:
        shape = tuple(c.shape)
        row = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(c.dtype).itemsize
        chunks = (max(1, min(shape[0], (1 << 20) // max(row, 1))),) + shape[1:] if shape[0] else None
        try:
            with h5py.File(tmp, "w") as f:
                ds = f.create_dataset(dataset or "/data", shape=shape, dtype=c.dtype, chunks=chunks)
                if c.layout == "table" and c.names:
                    ds.attrs["columns"] = c.names
                for k, (first, n) in enumerate(c.chunk_rows):
                    ds[first:first + n] = c.chunk(k)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        values = int(np.prod(shape, dtype=np.int64))
        return {"output": path, "values": values, "bytes_out": values * np.dtype(c.dtype).itemsize,
                "dtype": c.dtype, "shape": shape}
