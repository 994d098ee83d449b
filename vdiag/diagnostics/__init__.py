"""Diagnostics: what a video model has learned, measured on frozen features (docs/diagnostics/)."""
