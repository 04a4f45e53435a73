"""The CKA job: select arrays from feature stores, stream them as row sources, compute CKA matrices
and write them as CSV, JSON and a heatmap.

``math/`` holds the pure float64 math (kernels, HSIC estimators, CKA); ``source``, ``stream``,
``batch`` and ``matrix`` compute many HSIC pairs over row sources; ``analyses`` picks what to
compare in a store; ``outputs`` and ``plot`` write the results.
"""
