"""Benchmarks: each reports medians and ratios against a baseline run in the same process."""
