"""The runtime's bandwidth samples: the shaper's burst taken out, and the bound from a request that timed out."""

from __future__ import annotations

import pytest

from edgent.runtime.bandwidth import (BandwidthEstimator, corrected_sample_bps, lower_bound_bps, timeout_bound_bps,
                                     transfer_ms)


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


def test_lower_bound_is_the_slowest_rate_that_moves_the_bytes_in_the_time() -> None:
    # no shaper: the bytes over the time
    assert lower_bound_bps(10_000, 0, 8.0) == pytest.approx(8 * 10_000 / 8e-3, rel=1e-5)
    # the app's bucket: the bound is where the bytes beyond that rate's burst take the time measured
    lb = lower_bound_bps(2703, 120, 1.2, "app")
    assert 1.19 <= transfer_ms(2703, 120, lb, "app") <= 1.2  # (the burst is whole bytes: steps of 1 B)
    assert transfer_ms(2703, 120, lb * 0.99, "app") > 1.2
    assert lower_bound_bps(1000, 200, 5.0, "app") is None  # all of it fits in the burst at any rate
    assert lower_bound_bps(1000, 200, 0.0, "app") is None


def test_a_small_transfer_lifts_a_stale_low_estimate_and_a_late_one_does_not_drag_it_down() -> None:
    """The fleet's failure: one timeout at a busy moment set an upper bound of 1.37 Mbit/s on a 20 Mbit/s link;
    the plans then sent 2.7 KB, all of it inside the bucket at the link's rate, so no sample replaced the bound,
    and a host's delay of a few ms on one of them read as 0.25 Mbit/s. Every transfer's lower bound now drops
    the kept samples below it, and a transfer that is latency-bound at the estimate gives only that bound."""
    est = BandwidthEstimator(shaper="app")
    est.observe_rtt(10.0)
    for _ in range(3):
        est.add(200_000, transfer_ms(200_000, 120, 20e6, "app"), 120)  # large transfers at 20 Mbit/s
    assert est.rate_bps == pytest.approx(20e6, rel=1e-3)
    est.add_upper_bound(1.37e6)  # a request that timed out at a busy edge
    assert est.rate_bps == pytest.approx(1.37e6)
    s = est.add(2703, 1.2, 120)  # the next 2.7 KB crossed in 1.2 ms beyond the round trip
    assert s is not None and s.kind == "lower_bound" and s.rate_bps == pytest.approx(lower_bound_bps(2703, 120, 1.2,
                                                                                                     "app"))
    assert est.rate_bps > 5e6
    before = est.rate_bps
    assert est.add(2703, 9.4, 120) is None  # the same bytes 8 ms later (a busy host): latency-bound, no sample
    assert est.rate_bps == pytest.approx(before)
    # a transfer long enough to time the rate still lowers the estimate: the link did slow down
    slow = est.add(200_000, transfer_ms(200_000, 120, 2e6, "app"), 120)
    assert slow is not None and slow.kind == "measured" and est.rate_bps < before
