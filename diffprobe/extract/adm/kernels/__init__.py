"""Fused kernels for the U-Nets' memory-bound ops, each with a torch reference it is tested against.

:func:`group_norm_act`: GroupNorm (float32 statistics) → optional per-item scale-shift → optional
SiLU, with ``kernel="torch"`` (the reference, byte-identical to ADM's modules) or ``"triton"``.
"""

from diffprobe.extract.adm.kernels.group_norm import NORM_KERNELS, group_norm_act

__all__ = ["NORM_KERNELS", "group_norm_act"]
