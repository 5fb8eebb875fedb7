"""Hand-built label volumes of one row, shared by the metric tests."""

from __future__ import annotations

import numpy as np


def spans(n: int, **id_to_range: tuple[int, int]) -> np.ndarray:
    """A (1, 1, n) volume with label int(k[1:]) on x in [start, stop) for each k='l<id>'."""
    out = np.zeros(n, np.uint32)
    for key, (start, stop) in id_to_range.items():
        out[start:stop] = int(key[1:])
    return out.reshape(1, 1, n)
