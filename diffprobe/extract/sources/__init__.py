"""Where images come from: the item model and every kind of data diffprobe reads.

:mod:`.item` is the item model (:class:`Item`, :class:`DataSpec`); :mod:`.kinds` the registry of
source kinds (each a detector and/or a reader); :mod:`.discover` asks the detectors what DATA is.
The kinds: :mod:`.folder` (ImageFolder and segmentation trees, plain image files), :mod:`.manifest`
(CSV/TSV), :mod:`.tars` (WebDataset shards, indexed once and cached beside the store),
:mod:`.tables` (Hugging Face ``save_to_disk`` folders and Parquet files). :mod:`.files` keeps a
loader process's files open so that reading runs forward; :mod:`.decode` decodes an image and
applies the evaluation transform.
"""
