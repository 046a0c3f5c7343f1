"""Simulated fleets shipped with the package (the format is in docs/wire-contract.md)."""
