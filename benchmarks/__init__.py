"""Benchmarks: ``make bench`` runs every one and prints ratios measured side by side."""
