"""The runtime's bandwidth samples: the shaper's burst taken out, and the bound from a request that timed out."""

from __future__ import annotations

import pytest

from edgent.runtime.bandwidth import corrected_sample_bps, timeout_bound_bps


def test_burst_correction() -> None:
    # 3204 bytes up, 364 down at 1 Mbit/s through a 1600-byte bucket: only 1604 bytes are paced (12.83 ms),
    # so the runtime's raw sample reads 2.22 Mbit/s; the correction gives the link rate back
    link_s = 1604 * 8 / 1e6
    raw = 8 * (3204 + 364) / link_s
    assert raw / 1e6 == pytest.approx(2.225, rel=1e-3)
    assert corrected_sample_bps(3204, 364, raw, False) == pytest.approx(1e6, rel=1e-6)
    assert corrected_sample_bps(3204, 364, raw, True) == pytest.approx(1e6 * 1514 / 1448, rel=1e-6)
    assert corrected_sample_bps(1000, 300, 5e6, True) is None  # nothing was paced: no information
    assert corrected_sample_bps(1000, 300, None, True) is None


def test_timeout_bound_counts_only_the_wait_for_the_edge():
    # a fallback's device_ms holds the part before sending and the fallback's own compute (here 430 ms, longer
    # than the 200 ms requirement): the bound must come from the 150 ms the device waited, not from 1 ms
    assert timeout_bound_bps(3072.0, total_ms=600.0, device_ms=445.0, encode_ms=5.0) == \
        pytest.approx(8 * 3072 / 0.150)
    assert timeout_bound_bps(3072.0, total_ms=10.0, device_ms=10.0) == pytest.approx(8 * 3072 / 0.001)
