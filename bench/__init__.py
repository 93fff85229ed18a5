"""Benchmarks; how to run them and the figures: bench/README.md."""
