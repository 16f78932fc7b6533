"""Benchmarks: the spec's own algorithms (``baseline_spec``) against ours, on the same data in
the same run. ``python -m bench.run --help``."""
