"""Analyses over a run directory's tables (pandas / numpy only, no torch)."""
