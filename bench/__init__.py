"""Benchmarks; see the README for how to run them."""
