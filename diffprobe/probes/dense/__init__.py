"""Dense probes: per-pixel classification (semantic segmentation) from cached feature maps.

:mod:`.source` streams (features, masks) batches of items from a store (or raw pixels, the
baseline); :mod:`.heads` holds the heads; :mod:`.train` fits one; :mod:`.metrics` computes mIoU,
per-class IoU and pixel accuracy from a confusion matrix; :mod:`.run` is one probe run.
"""
