"""Philox4x32-10 in NumPy: the CPU twin of the GPU generator in ``kernels/random.cu``.

The GPU's random numbers are a pure function of (seed, offset, index): counter j
= (j mod 2³², j div 2³², offset mod 2³², offset div 2³²), key = (seed mod 2³²,
seed div 2³²). Each generating launch uses one offset, so the generator's state
is just the pair. These functions compute the same words and the same values
from them as the kernels do, and the GPU tests compare the two.
"""

from __future__ import annotations

import math

import numpy as np

M0, M1 = 0xD2511F53, 0xCD9E8D57  # round multipliers
W0, W1 = 0x9E3779B9, 0xBB67AE85  # key increments (golden ratio, sqrt(3) - 1)
_MASK = 0xFFFFFFFF

# Known-answer vectors of Random123 (its kat_vectors file): counter, key, output words.
KNOWN_ANSWERS = (
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
)


def philox4x32_10(counters: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """Philox4x32 with 10 rounds on each row of ``counters`` (n, 4) uint32 under a
    two-word key; returns (n, 4) uint32. Products of two 32-bit words fit in uint64."""
    c = [counters[:, i].astype(np.uint64) for i in range(4)]
    k0, k1 = np.uint64(key[0] & _MASK), np.uint64(key[1] & _MASK)
    mask = np.uint64(_MASK)
    shift = np.uint64(32)
    for round_ in range(10):
        if round_:
            k0 = (k0 + np.uint64(W0)) & mask
            k1 = (k1 + np.uint64(W1)) & mask
        p0 = np.uint64(M0) * c[0]
        p1 = np.uint64(M1) * c[2]
        c = [(p1 >> shift) ^ c[1] ^ k0, p1 & mask, (p0 >> shift) ^ c[3] ^ k1, p0 & mask]
    return np.stack(c, axis=1).astype(np.uint32)


def words(counters: int, seed: int, offset: int) -> np.ndarray:
    """The (counters, 4) random words of counters 0..counters-1 at one offset."""
    j = np.arange(counters, dtype=np.uint64)
    block = np.empty((counters, 4), dtype=np.uint32)
    block[:, 0] = j & np.uint64(_MASK)
    block[:, 1] = j >> np.uint64(32)
    block[:, 2] = offset & _MASK
    block[:, 3] = (offset >> 32) & _MASK
    return philox4x32_10(block, (seed & _MASK, (seed >> 32) & _MASK))


def _unit(dtype: np.dtype, w: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) values from the words, as ``Uniform<T>`` in random.cu: 24 bits
    (float32), 11 bits (float16, exact so never 1), 53 bits from word pairs (float64)."""
    if dtype == np.float64:
        a = (w[:, 0::2] >> np.uint32(5)).astype(np.uint64)
        b = (w[:, 1::2] >> np.uint32(6)).astype(np.uint64)
        return ((a * np.uint64(67108864) + b).astype(np.float64) * 2.0**-53).reshape(-1)
    bits = 21 if dtype == np.float16 else 8
    scale = np.float32(2.0 ** -(32 - bits))
    return ((w >> np.uint32(bits)).astype(np.float32) * scale).reshape(-1)


def uniform(n: int, seed: int, offset: int, dtype: np.dtype, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """``uniform<T>``: low + u·(high − low), in float32 arithmetic for float16/32."""
    dtype = np.dtype(dtype)
    per = 2 if dtype == np.float64 else 4
    u = _unit(dtype, words(-(-n // per), seed, offset))[:n]
    acc = np.float64 if dtype == np.float64 else np.float32
    out = u * (acc(high) - acc(low)) + acc(low)
    return out.astype(dtype)


def normal(n: int, seed: int, offset: int, dtype: np.dtype) -> np.ndarray:
    """``normal<T>``: Box-Muller on consecutive pairs (u1, u2), u1 = 1 − u in (0, 1]."""
    dtype = np.dtype(dtype)
    acc = np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)
    per = 2 if acc == np.float64 else 4
    u = _unit(acc, words(-(-n // per), seed, offset))
    u1 = acc.type(1) - u[0::2]
    u2 = u[1::2]
    radius = np.sqrt(acc.type(-2) * np.log(u1))
    angle = 2.0 * np.pi * u2.astype(np.float64)
    out = np.empty(u.size, dtype=acc)
    out[0::2] = radius * np.cos(angle).astype(acc)
    out[1::2] = radius * np.sin(angle).astype(acc)
    return out[:n].astype(dtype)


def dropout_threshold(p: float) -> int:
    """The integer t with P(draw ≥ t) = 1 − p for a 24-bit draw: ceil(p · 2²⁴)."""
    return min(math.ceil(p * 2**24), 2**24)


def dropout_mask(n: int, seed: int, offset: int, p: float, dtype: np.dtype) -> np.ndarray:
    """``dropout_mask<T>``: 1/(1 − p) where the 24-bit draw is ≥ the threshold, else 0."""
    dtype = np.dtype(dtype)
    if p >= 1:
        return np.zeros(n, dtype=dtype)
    w = words(-(-n // 4), seed, offset).reshape(-1)[:n]
    keep = (w >> np.uint32(8)) >= dropout_threshold(p)
    return keep * dtype.type(1.0 / (1.0 - p))
