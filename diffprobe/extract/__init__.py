"""Feature extraction: backbones, block numbering, noise, data sources and the extraction loop."""
