"""Loading checkpoint files safely and explaining why one does not fit a model.

A checkpoint is untrusted input: it is read with ``torch.load(weights_only=True)``, which refuses
pickled objects other than tensors and plain containers.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import cast

import torch
from torch import Tensor

from diffprobe.errors import CheckpointError, CheckpointNotFoundError

_log = logging.getLogger(__name__)

#: Keys under which training checkpoints commonly nest the model's state dict, in preference order.
WRAPPER_KEYS = ("ema", "ema_model", "model_ema", "state_dict", "model_state_dict", "model", "module", "net")
_STRIP_PREFIXES = ("module.", "_orig_mod.", "model.", "net.")


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, for provenance (cached per path, size and modification time)."""
    p = Path(path).resolve()
    st = p.stat()
    return _sha256_cached(str(p), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256_cached(path: str, size: int, mtime_ns: int, chunk: int = 1 << 20) -> str:
    del size, mtime_ns  # part of the cache key only
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, Tensor) for v in obj.values())


def _unwrap(obj: object, path: Path) -> dict[str, Tensor]:
    if _is_state_dict(obj):
        sd = dict(cast(Mapping[str, Tensor], obj))
    elif isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            if key in obj and _is_state_dict(obj[key]):
                sd = dict(obj[key])
                break
        else:
            keys = ", ".join(repr(k) for k in list(obj)[:10])
            raise CheckpointError(
                f"{path} is not a state dict (a mapping of parameter names to tensors) and holds none "
                f"under the usual wrapper keys {', '.join(WRAPPER_KEYS)}; its top-level keys are: {keys}. "
                "Save the model's state_dict() and pass that file."
            )
    else:
        raise CheckpointError(
            f"{path} holds a {type(obj).__name__}, not a state dict; save model.state_dict() and pass that file"
        )
    for prefix in _STRIP_PREFIXES:
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


#: How a file that is not a torch checkpoint starts, and what it probably is.
_NOT_CHECKPOINTS = ((b"{", "a JSON file"), (b"[", "a JSON file"), (b"\x89HDF", "an HDF5 file"), (b"\x93NUMPY", "a NumPy .npy file"))


def check_checkpoint_file(path: str | Path) -> Path:
    """``path`` if it can be a torch checkpoint: an existing file written by ``torch.save`` (a zip
    archive, or the legacy pickle format). Cheap: only the first bytes are read.

    Raises:
        CheckpointNotFoundError: no such file.  CheckpointError: a directory, or another kind of file.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointNotFoundError(f"checkpoint not found: {p}; check the path (it is not downloaded for you)")
    if p.is_dir():
        raise CheckpointError(f"checkpoint {p} is a directory; pass the .pt file inside it")
    with open(p, "rb") as f:
        head = f.read(8)
    if zipfile.is_zipfile(p) or head.startswith(b"\x80"):
        return p
    kind = next((what for magic, what in _NOT_CHECKPOINTS if head.lstrip().startswith(magic)), None)
    if kind is None and head and all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        kind = "a text file"
    hint = " (model flags go in --flags)" if kind == "a JSON file" else ""
    raise CheckpointError(
        f"{p} is not a PyTorch checkpoint{f': it looks like {kind}' if kind else ''}{hint}; pass the .pt file "
        "written by torch.save (a state dict) with --checkpoint"
    )


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from ``path`` without unpickling arbitrary objects.

    Common training-checkpoint wrappers (``{"ema": ...}``, ``{"state_dict": ...}``, DDP's
    ``module.`` prefix) are unwrapped.

    Raises:
        CheckpointNotFoundError: the file does not exist.
        CheckpointError: the file is not a torch checkpoint, needs unsafe unpickling, or holds no
            state dict.
    """
    p = check_checkpoint_file(path)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(p))
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(
            f"refusing to load {p}: it contains pickled Python objects beyond tensors, which could run "
            f"arbitrary code ({first}). If you trust the file, re-save only the weights: "
            "torch.save(torch.load(path, weights_only=False)['<key>'], 'weights.pt')"
        ) from None
    except Exception as e:  # torch raises many types (KeyError, RuntimeError …) for a non-checkpoint
        raise CheckpointError(f"cannot read {p} as a PyTorch checkpoint: {e}") from None
    return _unwrap(obj, p)


def fit_problems(expected: Mapping[str, tuple[int, ...]], got: Mapping[str, tuple[int, ...]], path: Path) -> list[str]:
    """Lines saying why a checkpoint's tensors (``got``: key → shape) do not fit a model's
    (``expected``); empty when they fit."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    if missing or unexpected:
        lines = [f"checkpoint {path} does not fit this model: {len(missing)} missing and {len(unexpected)} unexpected keys"]
        if missing:
            lines.append(f"  missing (first 5): {', '.join(missing[:5])}")
        if unexpected:
            lines.append(f"  unexpected (first 5): {', '.join(unexpected[:5])}")
        return lines
    bad = [(k, expected[k], got[k]) for k in expected if tuple(expected[k]) != tuple(got[k])]
    if bad:
        k, exp, shape = bad[0]
        lines = [f"checkpoint {path}: {len(bad)} tensors have the wrong shape; first: {k} expected {list(exp)}, got {list(shape)}"]
        return lines + [f"  {k2}: expected {list(e2)}, got {list(g2)}" for k2, e2, g2 in bad[1:4]]
    return []


def check_finite(model: torch.nn.Module, source: str | Path, *, allow: bool = False) -> list[str]:
    """The loaded weights of ``model`` (parameters and floating buffers) that hold NaN or Inf.

    Every feature of such a model is NaN or Inf, so it is refused unless ``allow`` (then a warning
    names them). One pass over the weights, one device synchronisation.

    Raises:
        CheckpointError: a weight is not finite and ``allow`` is False (the message names the tensors).
    """
    named = [(n, t) for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_floating_point() and t.numel()]
    if not named:
        return []
    heads = {n.split(".", 1)[0] for n, _ in named}
    if len(heads) == 1 and all("." in n for n, _ in named):  # the wrapper's own attribute (``net.``): name them as the checkpoint does
        named = [(n.split(".", 1)[1], t) for n, t in named]
    ok = torch.stack([torch.isfinite(t.detach()).all() for _, t in named]).cpu().tolist()
    bad = [n for (n, _), good in zip(named, ok) if not good]
    if not bad:
        return []
    shown = ", ".join(bad[:5]) + (f" … ({len(bad)} in all)" if len(bad) > 5 else "")
    if not allow:
        raise CheckpointError(
            f"{source} holds NaN or Inf in {len(bad)} of {len(named)} weight tensors ({shown}): every feature it gives would be "
            "NaN or Inf. Use another checkpoint (a diverged training run saves such weights), or pass --allow-nonfinite "
            "to extract anyway"
        )
    _log.warning("%s holds NaN or Inf in %d weight tensors (%s); extracting anyway (--allow-nonfinite)", source, len(bad), shown)
    return bad
