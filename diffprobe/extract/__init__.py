"""Feature extraction: backbones, block numbering, noise, data sources and the per-batch computation.

The extraction job that drives these over a dataset and into a store is
:func:`diffprobe.extract_features` (``diffprobe.pipelines.extraction``).
"""
