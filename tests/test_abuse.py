"""A reduced ``edgent bench abuse``: three attacks against a live ``edgent serve`` with a valid device alongside.
Asserts what does not depend on the host's speed: the device's requests are answered, the server's sockets stay
within its cap, its memory within the bound, and it survives."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from edgent.bench import abuse


@pytest.fixture(scope="module")
def chain():
    from edgent.model.zoo import load_for_inference

    return load_for_inference(abuse.MODEL, random_weights=True, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pipeline-4", "slowloris", "raw-tls"])
def test_attack_leaves_the_edge_usable(chain, tmp_path: Path, name: str):
    attack = next(a for a in abuse.ATTACKS if a.name == name)
    if name == "raw-tls":  # fewer connections than the benchmark's 1000, still more than the cap of 256
        attack = dataclasses.replace(attack, params={**attack.params, "conns": 400})
    cert = None
    if attack.server == "tls":
        if shutil.which("openssl") is None:
            pytest.skip("openssl is not installed")
        cert = abuse._self_signed_cert(tmp_path, abuse.KEY_TYPES["ec"])
    r = abuse.run_attack(attack, chain, tmp_path, cert, n_base=10, n_attack=40, period_s=0.05, ramp_s=1.0,
                         timeout_s=5.0)
    under = r["valid_device"]["under_attack"]
    assert under["answered"] >= 0.95 * under["requests"], under
    assert r["checks"]["sockets_within_cap"] and r["checks"]["server_alive"], r
    assert r["server_rss_mib"]["during_max"] - r["server_rss_mib"]["before"] <= abuse.MAX_RSS_GROWTH_MIB, r
    assert r["attacker"].get("connects", 0) >= (1 if name.startswith("pipeline") else 100), r["attacker"]
