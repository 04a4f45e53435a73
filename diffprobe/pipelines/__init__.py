"""Pipelines: extraction jobs, sweeps, CKA, plots and the demo."""
