"""Outcome models behind the policies (Vowpal Wabbit regressions and per-arm statistics)."""
