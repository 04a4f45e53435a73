"""Image sources at cluster scale: WebDataset tar shards and Hugging Face datasets on disk.

:mod:`.detect` decides what ``DATA`` is; :mod:`.tars` indexes tar shards (once, cached beside the
store); :mod:`.tables` lists the rows of ``save_to_disk`` folders and Parquet files; :mod:`.read`
reads one item's bytes in a loader process, keeping its files open so that reading runs forward.
"""
