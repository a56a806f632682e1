"""Alembic migrations of the store (a package so it ships with moa_core)."""
