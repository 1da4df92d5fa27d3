"""baler: error-bounded compression of large floating-point scientific arrays.

Every finite value comes back within the bound you choose, checked exactly in the data's own
precision; NaN, +-Inf and -0.0 come back bit for bit. The containers are the command line's
(`baler decompress` reads what `baler.compress` writes, and the other way round).

    >>> import numpy as np, baler
    >>> jets = np.random.default_rng(0).normal(size=(10_000, 8)).astype(np.float32)
    >>> blob = baler.compress(jets, bound="rel:1e-3")        # bytes, a .baler container
    >>> back = baler.decompress(blob)                         # numpy array, same dtype and shape
    >>> bool(np.all(np.abs(back - jets) <= 1e-3 * (jets.max(0) - jets.min(0))))
    True

Files stream in bounded memory, with the command line's defaults:

    >>> baler.compress_file("jets.npy", bound="rel:1e-3")      # -> jets.npy.baler, a summary dict
    >>> with baler.open("jets.npy.baler") as c:                 # lazy: header now, chunks on demand
    ...     part = c[100_000:120_000]                            # decodes only the chunks it needs
    >>> baler.decompress_file("jets.npy.baler", "back.npy")
    >>> baler.evaluate(jets, "jets.npy.baler")["bound_met"]    # the CLI's `evaluate` figures
    True

Bounds, as the command line states them:
    abs:E      |x - x'| <= E
    rel:R      E = R x (max - min), per column of a table (a 2-D array), or over a field
    pwrel:R    |x - x'| <= R |x| for every value
    bits:N     N mantissa bits: pwrel:2^-(N+1)
    lossless   bit for bit
"""

import os
from os import PathLike
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from ._baler import BalerError, Container, Model, __version__
from ._baler import compress as _compress
from ._baler import compress_file as _compress_file
from ._baler import decompress as _decompress
from ._baler import decompress_file as _decompress_file
from ._baler import evaluate as _evaluate
from ._baler import release_scratch as _release_scratch
from ._baler import train as _train

__all__ = [
    "compress",
    "decompress",
    "compress_file",
    "decompress_file",
    "open",
    "train",
    "evaluate",
    "release_scratch",
    "Model",
    "Container",
    "BalerError",
    "__version__",
]


_DEFAULT_BOUND = "rel:1e-3"


def compress(
    array,
    bound: Optional[str] = _DEFAULT_BOUND,
    bounds: Union[None, str, PathLike, Mapping[Union[int, str], str]] = None,
    names: Optional[Sequence[str]] = None,
    model: Union[None, str, PathLike, bytes, Model] = "auto",
    effort: int = 3,
    threads: Optional[int] = None,
    layout: Optional[str] = None,
    chunk_size: Optional[int] = None,
) -> bytes:
    """Compresses a float32 or float64 NumPy array into a baler container (bytes).

    array       any array-like of float32/float64; a C-contiguous, aligned NumPy array is read
                in place (no copy), anything else is made one first.
    bound       the bound of every column (a table: a 2-D array) or of the whole array (a
                field: any other rank), e.g. "rel:1e-3" (the default), "abs:0.01", "bits:10",
                "lossless". With a bounds file that has a `default` line and no bound given,
                the file's default applies.
    bounds      per-column bounds: a bounds file (lines `COLUMN SPEC` and `default SPEC`, as
                `baler compress --bounds`), or a mapping {column: spec} where a column is a
                0-based index, a name (see `names`) or a glob such as "Jet_*" (as --bound-col).
    names       a table's column names, stored in the container.
    model       the learned predictor of a table: "auto" (the default, as the command line:
                trained on a sample of the array's records at `effort`), "none"/None (the
                plain and neighbour predictors only), a baler.Model, or a model file from
                `baler train` / Model.save (its path, or its contents as bytes).
    effort      1 (fastest: no learned predictor) to 9 (most thorough), as `baler compress
                -e`: the default 3 fits the model's linear parts on 25,000 sampled records.
    threads     worker threads (default: one per core). The GIL is released while compressing.
    layout      "table" or "field" (default: table for 2-D arrays, field otherwise).
    chunk_size  target bytes of input per chunk (default: 4 MiB, chosen from the array's size).

    Raises BalerError (a ValueError) with the command line's message on a bad bound, shape or
    model.
    """
    a = _floats(array, "compresses")
    return _compress(
        a,
        bound=_bound(bound, bounds),
        bounds=bounds,
        names=list(names) if names is not None else None,
        model=model,
        effort=effort,
        threads=threads,
        layout=layout,
        chunk_size=chunk_size,
    )


def _floats(array, what):
    """`array` as a float32/float64 NumPy array the engine reads in place: native byte order,
    C-contiguous and aligned (a copy only where it is not)."""
    a = np.asarray(array)
    if a.dtype.kind != "f" or a.dtype.itemsize not in (4, 8):
        raise BalerError(f"baler {what} float32 or float64 arrays, not {a.dtype}")
    if not a.dtype.isnative or not a.flags.c_contiguous or not a.flags.aligned:
        # (ascontiguousarray would hand back an unaligned array as it is: a Dask chunk shipped
        # to a worker arrives so.)
        a = np.require(a, dtype=a.dtype.newbyteorder("="), requirements=["C", "A"])
    return a


def _bound(bound, bounds):
    """With a bounds file and the default bound, the file's `default` line (if it has one)."""
    if bound is _DEFAULT_BOUND and bounds is not None and not isinstance(bounds, Mapping):
        return None
    return bound


def decompress(data) -> np.ndarray:
    """Decompresses a baler container (bytes, bytearray or memoryview) into a NumPy array of
    its dtype and shape. Every chunk's checksums are verified: a damaged or truncated container
    raises BalerError."""
    return _decompress(bytes(data) if not isinstance(data, bytes) else data)


def _hdf5_path(path):
    """(file, dataset) where `path` names an HDF5 file (`FILE.h5:/dataset`, or FILE.h5)."""
    p = str(path)
    for ext in (".h5", ".hdf5", ".he5", ".hdf", ".nc"):
        i = p.find(ext + ":")
        if i > 0 and not os.path.exists(p):
            return p[: i + len(ext)], p[i + len(ext) + 1 :]
        if p.endswith(ext):
            return p, None
    return None


def compress_file(
    src,
    dst=None,
    bound: Optional[str] = _DEFAULT_BOUND,
    bounds=None,
    names: Optional[Sequence[str]] = None,
    model="auto",
    effort: int = 3,
    threads: Optional[int] = None,
    layout: Optional[str] = None,
    chunk_size: Optional[int] = None,
    dtype: Optional[str] = None,
    shape: Optional[Sequence[int]] = None,
    dataset: Optional[str] = None,
    force: bool = False,
) -> dict:
    """Compresses a file into a container file, streaming in bounded memory, as `baler compress
    SRC -o DST` does (the GIL released): the range pre-pass a `rel` bound needs, the training
    sample drawn from the whole file, one pass of compression.

    src         a .npy file, raw little-endian values (give dtype= "float32"/"float64" and
                shape=, the first dimension -1 for as many as there are), or an HDF5 dataset
                ("FILE.h5:/group/dataset", or FILE.h5 with dataset=), read through h5py.
    dst         the container (default: SRC.baler); an existing one is refused unless force.
    The other arguments as compress(). Returns a summary: output, records, chunks, bytes_in,
    bytes_out, ratio, model_bytes, seconds. The output is written under a temporary name and
    renamed when complete: a failure leaves nothing behind.
    """
    h5 = _hdf5_path(src)
    if h5 is not None:
        from . import _h5

        return _h5.compress_dataset(
            h5[0], h5[1] or dataset, dst, bound=_bound(bound, bounds), bounds=bounds,
            names=names, model=model, effort=effort, threads=threads, layout=layout,
            chunk_size=chunk_size, force=force,
        )
    return _compress_file(
        os.fspath(src),
        None if dst is None else os.fspath(dst),
        bound=_bound(bound, bounds),
        bounds=bounds,
        names=list(names) if names is not None else None,
        model=model,
        effort=effort,
        threads=threads,
        layout=layout,
        chunk_size=chunk_size,
        dtype=None if dtype is None else np.dtype(dtype).name,
        shape=None if shape is None else [int(d) for d in shape],
        dataset=dataset,
        force=force,
    )


def decompress_file(src, dst=None, force: bool = False, threads: Optional[int] = None) -> dict:
    """Decompresses a container file, streaming in bounded memory, as `baler decompress`:
    to .npy, raw values (.raw, .bin, .f32, .f64), or an HDF5 dataset ("OUT.h5" or
    "OUT.h5:/dataset", written through h5py chunk by chunk); by default SRC without .baler,
    in the format the input had. Returns a summary: output, values, bytes_out, dtype, shape,
    seconds."""
    if dst is not None and _hdf5_path(dst) is not None:
        from . import _h5

        f, ds = _hdf5_path(dst)
        return _h5.decompress_to_dataset(os.fspath(src), f, ds, force=force)
    return _decompress_file(
        os.fspath(src), None if dst is None else os.fspath(dst), force=force, threads=threads
    )


def release_scratch() -> None:
    """Frees the memory baler keeps between calls.

    Each call's worker threads take the codecs (and their warm scratch buffers) that earlier
    calls left, so that compressing or decompressing array after array does not fault fresh
    memory in every time: at most eight of them, for chunks of up to 4 MiB of values and
    16 MiB of chunks in all, a few tens of MiB. This frees them; the next call allocates its
    own again.

    The worker threads themselves stay parked for the next call, and leave after a second
    without work; this also lets them go at once and waits for them to end, so a process
    that forks next (``multiprocessing`` on Linux) copies one thread, not several. A process
    forked while they are parked works too: it starts threads of its own.
    """
    _release_scratch()


def open(path) -> Container:  # noqa: A001 (as h5py.File, zarr.open)
    """Opens a container file for lazy reading: the header (dtype, shape, layout, names,
    bounds, model) at once, values on demand. `c[a:b]` decodes rows a..b along the first axis
    from the chunks that hold them (found through the footer index), `c[:]` everything,
    `c.chunk(k)` one chunk; every chunk's checksums are verified as it is read. A context
    manager; `close()` releases the file."""
    return Container(os.fspath(path))


def train(
    data,
    bound: Optional[str] = _DEFAULT_BOUND,
    bounds=None,
    names: Optional[Sequence[str]] = None,
    sample: Optional[int] = None,
    epochs: Optional[int] = None,
    hidden: Optional[int] = None,
    inputs: Optional[int] = None,
    seed: int = 1,
) -> Model:
    """Trains a learned predictor for tables like `data` (a 2-D float32/float64 array, or a
    .npy file's path, memory-mapped: only the sampled records are read), as `baler train`:
    200,000 records sampled uniformly over the whole table (sample=), up to 12 epochs of the
    network with early stopping on a held-out split (epochs=; 0 fits the linear parts only).
    The bound is the one the model will be used at. Returns a Model: save(path) writes the file
    `baler compress --model` and compress(model=...) take."""
    if isinstance(data, (str, PathLike)):
        data = np.load(os.fspath(data), mmap_mode="r")
    a = _floats(data, "trains on")
    return _train(
        a,
        bound=_bound(bound, bounds),
        bounds=bounds,
        names=list(names) if names is not None else None,
        sample=sample,
        epochs=epochs,
        hidden=hidden,
        inputs=inputs,
        seed=seed,
    )


def evaluate(original, compressed, threads: Optional[int] = None) -> dict:
    """The figures of `baler evaluate` for a container (its bytes, or a file's path) against
    its original (an array, or a .npy file's path, memory-mapped): ratio, bound_met,
    worst_error_over_bound, and per column (one for a field) the bound, violations, largest
    absolute and relative errors and where, RMSE, PSNR, residual and relative-response
    statistics. Every value is checked exactly in the data's own precision, chunk by chunk."""
    if isinstance(original, (str, PathLike)):
        original = np.load(os.fspath(original), mmap_mode="r")
    a = _floats(original, "evaluates")
    if isinstance(compressed, (bytearray, memoryview)):
        compressed = bytes(compressed)
    elif not isinstance(compressed, bytes):
        compressed = os.fspath(compressed)
    return _evaluate(a, compressed, threads=threads)
