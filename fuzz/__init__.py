"""Fuzz harnesses. Each ``fuzz/<target>.py`` exposes ``check(data: bytes) -> None``.

See fuzz/README.md for the invariants and how to run them.
"""
