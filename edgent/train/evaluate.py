"""Top-1 accuracy of every exit of a multi-exit model on a labelled split."""

from __future__ import annotations

import numpy as np
import torch

from edgent.data.cifar10 import ImageSplit, to_model_input
from edgent.model.chain import MultiExitChain


@torch.no_grad()
def evaluate_exits(chain: MultiExitChain, split: ImageSplit, batch_size: int = 500) -> list[float]:
    """Top-1 accuracy of each exit (exit 1 first) on ``split``, computed in one pass that shares the trunk."""
    was_training = chain.training
    chain.eval()
    correct = np.zeros(chain.num_exits, dtype=np.int64)
    try:
        for start in range(0, len(split), batch_size):
            x = to_model_input(split.images[start : start + batch_size])
            y = torch.as_tensor(split.labels[start : start + batch_size])
            for i, logits in enumerate(chain.forward_all(x)):
                correct[i] += int((logits.argmax(1) == y).sum())
    finally:
        chain.train(was_training)
    return [float(c) / len(split) for c in correct]
