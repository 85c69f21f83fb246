"""Shared building blocks: config access, audio I/O, atomic writes, safe checkpoint I/O."""
