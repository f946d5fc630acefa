"""Benchmarks (``edgent bench NAME``): each module here with ``register(subparsers)`` adds one; results go to
``benchmarks/results/`` as JSON with the machine's details (:mod:`edgent.bench.record`)."""
