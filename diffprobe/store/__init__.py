"""Feature stores: layout, Zarr and HDF5 backends, work units and resume."""
