from os import PathLike
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

__version__: str

class BalerError(ValueError): ...

def compress(
    array: npt.ArrayLike,
    bound: Optional[str] = "rel:1e-3",
    bounds: Union[None, str, PathLike[str], Mapping[Union[int, str], str]] = None,
    names: Optional[Sequence[str]] = None,
    model: Union[None, str, PathLike[str], bytes] = None,
    threads: Optional[int] = None,
    layout: Optional[str] = None,
    chunk_size: Optional[int] = None,
) -> bytes: ...
def decompress(data: Union[bytes, bytearray, memoryview]) -> npt.NDArray[np.floating]: ...
