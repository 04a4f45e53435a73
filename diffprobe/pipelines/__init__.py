"""Pipelines: the jobs built from the four stages, one sub-package each: ``extraction`` (local, dask
or static shards), ``cka`` (matrices between blocks, timesteps and stores), ``sweep`` (a probe per
key, tables and plots); ``demo`` runs the main job end to end."""
