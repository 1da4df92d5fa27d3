"""baler as a numcodecs codec (`codec_id = "baler"`), for zarr arrays and dask.array.to_zarr.

    >>> import numcodecs
    >>> codec = numcodecs.get_codec({"id": "baler", "bound": "abs:0.01"})
    >>> back = codec.decode(codec.encode(chunk))

Registered through the `numcodecs.codecs` entry point when the `baler-rs` wheel is installed
(and here, on import). Each chunk is one self-contained baler container, so every chunk decodes
on its own. The bound applies per chunk: `rel:R` is relative to each *chunk's* range, so give
`abs:E`, `pwrel:R` or `bits:N` where one bound must hold across the whole array. A learned
predictor is not trained per chunk (a chunk is too small to pay for one): give a model trained
beforehand (`baler train`, or its file's bytes), which the configuration carries (base64), so the
array's metadata is self-sufficient. Its cost: the configuration grows by the model file's size
x 4/3 (about 2-20 kB), and every chunk's container carries the model again (the model section
of its header), so keep chunks large (1 MB and up) where a model is used.
"""

import base64
import os
from typing import Mapping, Optional, Sequence, Union

import numpy as np
from numcodecs.abc import Codec
from numcodecs.compat import ensure_bytes, ensure_ndarray_like, ndarray_copy
from numcodecs.registry import register_codec

from . import compress, decompress


class Baler(Codec):
    """Error-bounded compression of a chunk of float32/float64 values (see `baler.compress`).

    bound, bounds (a mapping {column: spec}, kept in the configuration), names, layout as for
    `baler.compress`; model: a model file's path (read now) or its bytes; threads: worker
    threads per chunk (default 1: zarr and dask parallelize over chunks).
    """

    codec_id = "baler"

    def __init__(
        self,
        bound: Optional[str] = "rel:1e-3",
        bounds: Optional[Mapping[Union[int, str], str]] = None,
        names: Optional[Sequence[str]] = None,
        model: Union[None, str, os.PathLike, bytes] = None,
        layout: Optional[str] = None,
        threads: int = 1,
    ):
        if isinstance(model, (str, os.PathLike)):
            with open(model, "rb") as f:
                model = f.read()
        self.bound = bound
        self.bounds = dict(bounds) if bounds is not None else None
        self.names = list(names) if names is not None else None
        self.model = model
        self.layout = layout
        self.threads = threads

    def encode(self, buf):
        arr = ensure_ndarray_like(buf)
        if arr.dtype.kind != "f" or arr.dtype.itemsize not in (4, 8):
            raise TypeError(f"the baler codec compresses float32/float64 chunks, not {arr.dtype}")
        return compress(
            np.asarray(arr),
            bound=self.bound,
            bounds=self.bounds,
            names=self.names,
            model=self.model,
            threads=self.threads,
            layout=self.layout,
        )

    def decode(self, buf, out=None):
        arr = decompress(ensure_bytes(buf))
        return ndarray_copy(arr, out)

    def get_config(self):
        config = {"id": self.codec_id, "bound": self.bound, "threads": self.threads}
        if self.bounds is not None:
            config["bounds"] = {str(k): v for k, v in self.bounds.items()}
        if self.names is not None:
            config["names"] = self.names
        if self.layout is not None:
            config["layout"] = self.layout
        if self.model is not None:
            config["model"] = base64.b64encode(self.model).decode("ascii")
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("id", None)
        if isinstance(config.get("model"), str):
            config["model"] = base64.b64decode(config["model"])
        if config.get("bounds") is not None:
            config["bounds"] = {(int(k) if k.isdigit() else k): v for k, v in config["bounds"].items()}
        return cls(**config)

    def __repr__(self):
        model = f", model=<{len(self.model)} bytes>" if self.model is not None else ""
        return f"Baler(bound={self.bound!r}{model})"


register_codec(Baler)
