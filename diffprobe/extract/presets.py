"""Named models: a family plus a published configuration, and where the weights come from.

Each family registers its presets in :data:`PRESETS` from its own package (``extract/adm/presets.py``,
``extract/diffusers/presets.py``, ``extract/timm/presets.py``) when :mod:`diffprobe.extract.registry`
imports the families, so read the full list through the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffprobe.registry import Registry

ASSETS = Path(__file__).resolve().parent.parent / "assets"


@dataclass(frozen=True)
class Preset:
    """A named model: its backbone family, architecture flags and where its weights come from.

    Attributes:
        config: the family's configuration (an ``ADMConfig``; a diffusers layout's config files).
        checkpoint_file: the published file name (or names) of its weights.
        bundled: the file under ``diffprobe/assets`` that ships with diffprobe, if any: used when no
            checkpoint is given.
        url: where to download the weights (never fetched by diffprobe).
        hub: the Hugging Face repository of a diffusers-format model (never fetched by diffprobe).
        best: what the literature found most discriminative (blocks and t), for the README's table.
    """

    name: str
    family: str
    config: Any
    checkpoint_file: str
    description: str
    bundled: str | None = None
    url: str | None = None
    hub: str | None = None
    best: str = ""

    @property
    def bundled_checkpoint(self) -> Path | None:
        return ASSETS / self.bundled if self.bundled else None

    def how_to_get(self) -> str:
        """Where its checkpoint comes from, in words for an error message."""
        if self.hub:
            local = self.hub.split("/")[-1]
            return f"download {self.hub} (`hf download {self.hub} --local-dir {local}`)"
        if self.url:
            return f"download {self.checkpoint_file} from {self.url}"
        return f"get {self.checkpoint_file} (see `diffprobe models`)"


#: Every preset by name (the families' own names, ``adm``/``diffusers``/``timm``, are models too: see
#: :func:`diffprobe.extract.registry.model_names`).
PRESETS: Registry[Preset] = Registry("model", hint="see `diffprobe models`", sort=True)


def register_preset(preset: Preset) -> Preset:
    """Make ``preset`` available by its name (``--model NAME``)."""
    return PRESETS.register(preset.name, preset)
