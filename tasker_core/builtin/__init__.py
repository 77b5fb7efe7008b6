"""Embedded default backends (memory and SQLite stores), registered as plugins by the host."""
