"""Feature extraction: backbones, block numbering, noise, data sources and the extraction loop.

The package is also callable: ``diffprobe.extract(config)`` runs an extraction (see
:func:`diffprobe.pipelines.extract_job.extract`), while ``diffprobe.extract.backbone`` etc. remain
its sub-modules.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    def __call__(self, config: Any, **kwargs: Any) -> Any:
        from diffprobe.pipelines.extract_job import extract

        return extract(config, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
