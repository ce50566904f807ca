"""Decoders: the bundle file format, the offline fit, and the per-TR online application."""
