"""Throughput benchmarks for gpubp, kept out of the default test run.

``python benchmarks/compare.py`` times one training step against PyTorch eager,
a hand-written NumPy backprop (``benchmarks/reference.py``) and the GEMM floor;
``python -m pytest benchmarks/ --benchmark-only`` runs the per-op and per-step
pytest-benchmark suite. See ``benchmarks/README.md``.
"""
