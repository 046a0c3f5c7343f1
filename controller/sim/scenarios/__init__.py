"""Simulated fleets shipped with the package (the format is in shared/SCHEMA.md)."""
