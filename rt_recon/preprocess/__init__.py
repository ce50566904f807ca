"""Per-TR preprocessing stages: pure stateful objects, ``update(array) -> array``, no I/O."""
