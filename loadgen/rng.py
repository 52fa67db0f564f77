"""Deterministic random streams derived from (seed, purpose, ...) via SeedSequence."""

from __future__ import annotations

import zlib

import numpy as np


def _word(part: int | str) -> int:
    if isinstance(part, str):
        return zlib.crc32(part.encode("utf-8"))
    return int(part)


def generator(seed: int, *key: int | str) -> np.random.Generator:
    """A generator that depends only on the seed and the key parts."""
    seq = np.random.SeedSequence(int(seed), spawn_key=tuple(_word(p) for p in key))
    return np.random.Generator(np.random.PCG64(seq))
