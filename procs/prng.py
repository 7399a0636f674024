"""A tiny deterministic PRNG for jitted stages: xoshiro256** seeded by splitmix64.

Why not ``np.random`` inside numba: numba's generator state is per thread and per process,
seeded outside our control, so a synthetic feed forked into its own process could not
replay the same market for the same seed. Here the whole state is a ``uint64[4]`` array the
stage owns: the same seed gives the same stream in any process, any run, any batch split.

* ``new_state(seed)`` (Python): the state for ``seed`` (any int; taken modulo 2**64),
  expanded by splitmix64 as the xoshiro authors recommend (never all zero).
* ``next_u64(state)``: xoshiro256** (Blackman & Vigna, 2018): 64 random bits.
* ``uniform(state)``: a float in [0, 1) from the top 53 bits.
* ``below(state, n)``: an int in [0, n) (bias below 2**-50 for small n).
* ``normal(state)``: a standard normal by Box-Muller, one value per call (the sine
  partner is not cached: a cache would be hidden state and costs a branch; two
  uniforms per normal is cheap enough for a market generator).

All integer arithmetic is uint64 (wrapping), with every constant typed ``np.uint64`` so
numba never mixes signed and unsigned (that would promote to float64).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

_MASK64 = (1 << 64) - 1
_TWO_PI = 2.0 * math.pi
_INV_2_53 = 1.0 / 9007199254740992.0      # 2**-53


def _splitmix64(x: int) -> tuple[int, int]:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x, z ^ (z >> 31)


def new_state(seed: int) -> np.ndarray:
    """Return the xoshiro256** state (``uint64[4]``) for ``seed``."""
    x = int(seed) & _MASK64
    words = []
    for _ in range(4):
        x, z = _splitmix64(x)
        words.append(z)
    return np.array(words, dtype=np.uint64)


@njit(cache=True, inline="always")
def _rotl(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


# Compiled without numba's reference counting (``_nrt=False``): they allocate nothing, and
# the sim venue and exec call them from their ``_nrt=False`` duty cycles, where NRT would
# add an atomic incref/decref of ``state`` per draw.
@njit(cache=True, _nrt=False)
def next_u64(state):
    """Advance ``state`` (xoshiro256**) and return 64 random bits as uint64."""
    s0, s1, s2, s3 = state[0], state[1], state[2], state[3]
    result = _rotl(s1 * np.uint64(5), 7) * np.uint64(9)
    t = s1 << np.uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    state[0], state[1], state[2], state[3] = s0, s1, s2, s3
    return result


@njit(cache=True, _nrt=False)
def uniform(state):
    """A float64 uniform in [0, 1)."""
    return np.float64(next_u64(state) >> np.uint64(11)) * _INV_2_53


@njit(cache=True, _nrt=False)
def below(state, n):
    """An int64 uniform in [0, n) for n >= 1."""
    return np.int64(uniform(state) * n)


@njit(cache=True, _nrt=False)
def normal(state):
    """A standard normal variate (Box-Muller; two uniforms per call)."""
    u1 = 1.0 - uniform(state)            # (0, 1]: log is finite
    u2 = uniform(state)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(_TWO_PI * u2)
