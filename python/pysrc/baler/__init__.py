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

Bounds, as the command line states them:
    abs:E      |x - x'| <= E
    rel:R      E = R x (max - min), per column of a table (a 2-D array), or over a field
    pwrel:R    |x - x'| <= R |x| for every value
    bits:N     N mantissa bits: pwrel:2^-(N+1)
    lossless   bit for bit
"""

from os import PathLike
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from ._baler import BalerError, __version__
from ._baler import compress as _compress
from ._baler import decompress as _decompress

__all__ = ["compress", "decompress", "BalerError", "__version__"]


_DEFAULT_BOUND = "rel:1e-3"


def compress(
    array,
    bound: Optional[str] = _DEFAULT_BOUND,
    bounds: Union[None, str, PathLike, Mapping[Union[int, str], str]] = None,
    names: Optional[Sequence[str]] = None,
    model: Union[None, str, PathLike, bytes] = None,
    threads: Optional[int] = None,
    layout: Optional[str] = None,
    chunk_size: Optional[int] = None,
) -> bytes:
    """Compresses a float32 or float64 NumPy array into a baler container (bytes).

    array       any array-like of float32/float64; a C-contiguous NumPy array is read in place
                (no copy), anything else is made one first.
    bound       the bound of every column (a table: a 2-D array) or of the whole array (a
                field: any other rank), e.g. "rel:1e-3" (the default), "abs:0.01", "bits:10",
                "lossless". With a bounds file that has a `default` line and no bound given,
                the file's default applies.
    bounds      per-column bounds: a bounds file (lines `COLUMN SPEC` and `default SPEC`, as
                `baler compress --bounds`), or a mapping {column: spec} where a column is a
                0-based index, a name (see `names`) or a glob such as "Jet_*" (as --bound-col).
    names       a table's column names, stored in the container.
    model       a model file from `baler train` (its path, or its contents as bytes), for a
                table of as many columns (the learned predictor; without it the plain and
                neighbour predictors are used).
    threads     worker threads (default: one per core). The GIL is released while compressing.
    layout      "table" or "field" (default: table for 2-D arrays, field otherwise).
    chunk_size  target bytes of input per chunk (default: 4 MiB, chosen from the array's size).

    Raises BalerError (a ValueError) with the command line's message on a bad bound, shape or
    model.
    """
    a = np.asarray(array)
    if a.dtype.kind != "f" or a.dtype.itemsize not in (4, 8):
        raise BalerError(f"baler compresses float32 or float64 arrays, not {a.dtype}")
    if not a.dtype.isnative or not a.flags.c_contiguous:
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))
    if bound is _DEFAULT_BOUND and bounds is not None and not isinstance(bounds, Mapping):
        bound = None  # the bounds file's default line, if it has one
    return _compress(
        a,
        bound=bound,
        bounds=bounds,
        names=list(names) if names is not None else None,
        model=model,
        threads=threads,
        layout=layout,
        chunk_size=chunk_size,
    )


def decompress(data) -> np.ndarray:
    """Decompresses a baler container (bytes, bytearray or memoryview) into a NumPy array of
    its dtype and shape. Every chunk's checksums are verified: a damaged or truncated container
    raises BalerError."""
    return _decompress(bytes(data) if not isinstance(data, bytes) else data)
