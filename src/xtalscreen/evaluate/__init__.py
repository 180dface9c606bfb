"""Evaluation: metrics, reports, plots and frame rendering."""
