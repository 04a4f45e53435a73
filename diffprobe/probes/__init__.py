"""Probes trained on cached features."""
