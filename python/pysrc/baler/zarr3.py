"""baler as a zarr v3 array->bytes codec (name "baler", registered through the `zarr.codecs`
entry point of the `baler-rs` wheel), in place of zarr's "bytes" serializer:

    >>> from baler.zarr3 import BalerCodec
    >>> z = zarr.create_array("f.zarr", shape=(400, 600, 500), chunks=(10, 600, 500),
    ...                       dtype="float32", serializer=BalerCodec(bound="abs:0.001"))

Each chunk is one self-contained baler container (it decodes alone), encoded off the event
loop (`asyncio.to_thread`; the engine releases the GIL, so chunks compress in parallel). What
holds for the numcodecs codec (`baler.codecs`) holds here: the bound applies per chunk, and a
model trained beforehand travels in the configuration (base64) and in every chunk's header.
"""

from __future__ import annotations

import asyncio
import base64
import os
from dataclasses import dataclass

from zarr.abc.codec import ArrayBytesCodec
from zarr.core.buffer import Buffer, NDBuffer
from zarr.core.common import parse_named_configuration

from . import compress, decompress


@dataclass(frozen=True)
class BalerCodec(ArrayBytesCodec):
    """Error-bounded compression of a float32/float64 chunk (see `baler.compress`): `bound`,
    `bounds` (a mapping {column: spec}), `names`, `layout`, `model` (a model file's path or
    bytes, kept as base64), `threads` per chunk (default 1: zarr works on many chunks)."""

    is_fixed_size = False

    bound: str | None = "rel:1e-3"
    bounds: dict | None = None
    names: tuple | None = None
    layout: str | None = None
    model: str | None = None
    threads: int = 1

    def __init__(self, *, bound="rel:1e-3", bounds=None, names=None, layout=None, model=None, threads=1):
        if isinstance(model, (os.PathLike,)) or (isinstance(model, str) and os.path.exists(model)):
            with open(model, "rb") as f:
                model = f.read()
        if isinstance(model, (bytes, bytearray)):
            model = base64.b64encode(bytes(model)).decode("ascii")
        object.__setattr__(self, "bound", bound)
        object.__setattr__(self, "bounds", {str(k): v for k, v in bounds.items()} if bounds else None)
        object.__setattr__(self, "names", tuple(names) if names is not None else None)
        object.__setattr__(self, "layout", layout)
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "threads", int(threads))

    @classmethod
    def from_dict(cls, data):
        _, configuration = parse_named_configuration(data, "baler", require_configuration=False)
        return cls(**(configuration or {}))

    def to_dict(self):
        config = {"bound": self.bound, "threads": self.threads}
        for key in ("bounds", "layout", "model"):
            if getattr(self, key) is not None:
                config[key] = getattr(self, key)
        if self.names is not None:
            config["names"] = list(self.names)
        return {"name": "baler", "configuration": config}

    def _compress(self, array):
        bounds = self.bounds
        if bounds is not None:
            bounds = {(int(k) if k.isdigit() else k): v for k, v in bounds.items()}
        return compress(
            array,
            bound=self.bound,
            bounds=bounds,
            names=self.names,
            model=base64.b64decode(self.model) if self.model is not None else None,
            threads=self.threads,
            layout=self.layout,
        )

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec) -> Buffer | None:
        array = chunk_array.as_numpy_array()
        blob = await asyncio.to_thread(self._compress, array)
        return chunk_spec.prototype.buffer.from_bytes(blob)

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec) -> NDBuffer:
        array = await asyncio.to_thread(decompress, chunk_bytes.to_bytes())
        if array.shape != tuple(chunk_spec.shape):
            array = array.reshape(chunk_spec.shape)
        return chunk_spec.prototype.nd_buffer.from_numpy_array(array)

    def compute_encoded_size(self, _input_byte_length, _chunk_spec):
        raise NotImplementedError("a baler chunk's size depends on its values")
