"""Click commands, one module per area; :mod:`diffprobe.cli` registers them on the ``diffprobe`` group.

Modules import only click (and light diffprobe modules) at import time; heavy imports live inside the
command functions so that ``diffprobe --help`` stays instant. Shared options are in :mod:`.options`.
"""
