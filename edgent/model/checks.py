"""Checks a user can run on their own multi-exit model before deploying it."""

from __future__ import annotations

import torch

from edgent.model.chain import MultiExitChain


@torch.no_grad()
def check_partition_invariant(model: MultiExitChain, batch: int = 2, atol: float = 1e-5, seed: int = 0) -> int:
    """Assert that the edge part after the device part equals the full forward, for every exit and partition
    point, on a random batch. Returns the number of (exit, point) pairs checked; raises AssertionError naming
    the first pair that differs."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *model.input_shape), generator=gen)
    checked = 0
    for ep in model.exit_points:
        ref = model(x, exit=ep.exit)
        if ref.shape != (batch, model.num_classes):
            raise AssertionError(f"exit {ep.exit} returns shape {tuple(ref.shape)}, not (batch, num_classes)")
        for p in ep.partition_points:
            mid = model.run_device(x, ep.exit, p)
            if tuple(mid.shape[1:]) != model.unit_input_shape(ep.exit, p):
                raise AssertionError(f"exit {ep.exit} point {p}: tensor shape {tuple(mid.shape)} is not the recorded "
                                     f"{model.unit_input_shape(ep.exit, p)}")
            out = model.run_edge(mid, ep.exit, p)
            try:
                torch.testing.assert_close(out, ref, atol=atol, rtol=1e-4)
            except AssertionError as exc:
                raise AssertionError(f"exit {ep.exit} point {p}: edge(device(x)) != forward(x): {exc}") from exc
            checked += 1
    return checked
