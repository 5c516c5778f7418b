"""The NumPy twin of the GPU generator: Philox4x32-10 against the published known answers."""

from __future__ import annotations

import numpy as np
import pytest

from gpubp.backends import philox

KNOWN_ANSWERS = philox.KNOWN_ANSWERS


@pytest.mark.parametrize(("counter", "key", "expected"), KNOWN_ANSWERS)
def test_philox_matches_known_answers(counter, key, expected):
    out = philox.philox4x32_10(np.array([counter], dtype=np.uint32), key)
    assert tuple(int(w) for w in out[0]) == expected


def test_words_put_index_and_offset_in_the_counter_and_seed_in_the_key():
    seed, offset = 0xA409382299F31D0 + (0x1234 << 60), 0x0370734413198A2E
    got = philox.words(3, seed, offset)
    for j in range(3):
        counter = np.array([[j, 0, offset & 0xFFFFFFFF, offset >> 32]], dtype=np.uint32)
        want = philox.philox4x32_10(counter, (seed & 0xFFFFFFFF, seed >> 32))
        assert np.array_equal(got[j], want[0])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_uniform_is_in_range_and_reproducible(dtype):
    a = philox.uniform(10001, seed=7, offset=3, dtype=dtype)
    assert a.dtype == dtype and a.shape == (10001,)
    assert a.min() >= 0 and a.max() < 1
    assert abs(float(a.mean()) - 0.5) < 0.01
    assert np.array_equal(a, philox.uniform(10001, seed=7, offset=3, dtype=dtype))
    assert not np.array_equal(a, philox.uniform(10001, seed=7, offset=4, dtype=dtype))


def test_uniform_prefixes_agree():
    # Value i depends only on (seed, offset, i), not on how many were drawn.
    assert np.array_equal(philox.uniform(5, 1, 2, np.float32), philox.uniform(11, 1, 2, np.float32)[:5])


def test_uniform_scales_to_low_high():
    a = philox.uniform(1000, 0, 0, np.float64, low=-2.0, high=3.0)
    assert a.min() >= -2 and a.max() < 3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normal_has_unit_moments(dtype):
    z = philox.normal(200001, seed=11, offset=0, dtype=dtype)
    assert z.dtype == dtype and np.isfinite(z).all()
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1) < 0.01


def test_dropout_threshold_is_exact():
    assert philox.dropout_threshold(0.0) == 0
    assert philox.dropout_threshold(0.5) == 2**23
    assert philox.dropout_threshold(1.0) == 2**24
    assert philox.dropout_threshold(1e-9) == 1


def test_dropout_mask_keeps_one_minus_p_and_scales():
    mask = philox.dropout_mask(100000, seed=5, offset=9, p=0.3, dtype=np.float32)
    assert mask.dtype == np.float32
    assert set(np.unique(mask).tolist()) == {0.0, np.float32(1 / 0.7)}
    assert abs(float((mask > 0).mean()) - 0.7) < 0.01
