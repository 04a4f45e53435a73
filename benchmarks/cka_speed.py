"""Benchmark: an L×L linear-CKA matrix over N items, streamed vs straightforward pairwise Grams.

Data: L arrays shaped like pooled blocks of the bundled ADM-32 model (channel widths from its block
table; ``--pool`` p gives C·p² features), float16, chunked along N in a temporary Zarr group and
read through dask, as ``store.read(..., lazy=True)`` returns them.

Compared, each in a fresh process so that peak memory is its own (peak RSS above the process's
RSS once its inputs are ready):
  streamed    diffprobe's cka_matrix, method "features": one pass over the data accumulating the
              cross-moments of all L(L+1)/2 pairs; no N×N matrix.
  minibatch   diffprobe's minibatch estimator (unbiased HSIC over minibatches of --batch-size).
  pairwise    the straightforward approach: all features in memory, and for each pair two N×N
              linear Grams, centred, HSIC_0 (Kornblith et al. 2019 eq. 3). At large N this takes
              seconds per pair, so by default only --baseline-pairs pairs run and the total is
              extrapolated (printed as such); --baseline-pairs 0 runs all of them.

    python benchmarks/cka_speed.py                      # 19 blocks × 10,000 items
    python benchmarks/cka_speed.py --items 2000 --baseline-pairs 0

Prints figures; never asserts on time.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def block_widths(count: int, pool: int) -> list[int]:
    from diffprobe.extract.registry import model_spec

    chans = [b.channels for b in model_spec("adm-32-fmnist").blocks]
    return [chans[i % len(chans)] * pool * pool for i in range(count)]


def make_data(root: Path, n: int, dims: list[int], chunk: int, seed: int = 0) -> list[str]:
    """L float16 arrays (N, D, 1, 1) sharing a latent factor, written chunk by chunk to a Zarr group."""
    import zarr

    rng = np.random.default_rng(seed)
    group = zarr.open_group(root, mode="w")
    maps = [rng.normal(size=(32, d)) / np.sqrt(32) for d in dims]
    names = [f"b{i + 1:02d}" for i in range(len(dims))]
    arrays = [group.create_array(nm, shape=(n, d, 1, 1), chunks=(chunk, d, 1, 1), dtype="float16") for nm, d in zip(names, dims)]
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        z = rng.normal(size=(stop - start, 32))
        for i, (arr, w) in enumerate(zip(arrays, maps)):
            mix = np.tanh(z @ w * (1 + i / len(dims))) + 0.5 * rng.normal(size=(stop - start, w.shape[1]))
            arr[start:stop] = mix.astype(np.float16).reshape(stop - start, -1, 1, 1)
    return names


def _report(queue: mp.Queue, fn, *args) -> None:
    try:
        queue.put(fn(*args))
    except BaseException as e:  # noqa: BLE001  (surface any child error in the parent)
        queue.put({"error": f"{type(e).__name__}: {e}"})


def in_child(fn, *args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_report, args=(queue, fn, *args))
    proc.start()
    out = queue.get()
    proc.join()
    if "error" in out:
        raise RuntimeError(out["error"])
    return out


def run_diffprobe(root: str, names: list[str], estimator: str, batch_size: int, max_memory: int, device: str) -> dict:
    import dask.array as da

    from diffprobe.pipelines.cka.config import CKAConfig
    from diffprobe.pipelines.cka.matrix import cka_matrix
    from diffprobe.pipelines.cka.source import Source

    srcs = [Source.of(nm, da.from_zarr(str(Path(root) / nm))) for nm in names]
    cfg = CKAConfig(estimator=estimator, batch_size=batch_size, max_memory=max_memory, device=device,
                    method="features" if estimator != "minibatch" else "auto")  # fmt: skip
    base = rss_bytes()
    t0 = time.perf_counter()
    res = cka_matrix(srcs, None, cfg)
    return {"seconds": time.perf_counter() - t0, "peak": peak_rss_bytes() - base, "values": res.values, "facts": res.facts}


def run_pairwise(root: str, names: list[str], pairs: list[tuple[int, int]]) -> dict:
    """Straightforward: features in memory; per pair two centred N×N Grams (numpy float64)."""
    import zarr

    group = zarr.open_group(root, mode="r")
    feats = [np.asarray(group[nm][:], dtype=np.float64).reshape(group[nm].shape[0], -1) for nm in names]

    def centred_gram(x: np.ndarray) -> np.ndarray:
        k = x @ x.T
        k -= k.mean(0, keepdims=True)
        k -= k.mean(1, keepdims=True)
        return k

    base = rss_bytes()
    t0 = time.perf_counter()
    values = {}
    for a, b in pairs:
        ka, kb = centred_gram(feats[a]), centred_gram(feats[b])
        values[(a, b)] = float((ka * kb).sum() / np.sqrt((ka * ka).sum() * (kb * kb).sum()))
        del ka, kb
    return {"seconds": time.perf_counter() - t0, "peak": peak_rss_bytes() - base, "values": values}


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--blocks", type=int, default=19)
    ap.add_argument("--pool", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=1024, help="rows per storage chunk")
    ap.add_argument("--baseline-pairs", type=int, default=8, help="pairwise pairs to time (0 = all, no extrapolation)")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--max-memory", default="2GiB")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workdir", default=None, help="where the temporary Zarr data goes (default: a temp dir)")
    args = ap.parse_args()

    from diffprobe.sizes import parse_size

    dims = block_widths(args.blocks, args.pool)
    n, count = args.items, args.blocks
    all_pairs = [(a, b) for a in range(count) for b in range(a, count)]
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = str(Path(tmp) / "feats.zarr")
        t0 = time.perf_counter()
        names = make_data(Path(root), n, dims, args.chunk)
        print(f"# {count} arrays × {n} items, D = {min(dims)}..{max(dims)} (ΣD = {sum(dims)}), float16 Zarr chunks of "
              f"{args.chunk} rows ({time.perf_counter() - t0:.1f} s to write)")  # fmt: skip
        print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
              f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
        mem = parse_size(args.max_memory)
        stream = in_child(run_diffprobe, root, names, "biased", args.batch_size, mem, args.device)
        mini = in_child(run_diffprobe, root, names, "minibatch", args.batch_size, mem, args.device)
        if args.baseline_pairs and args.baseline_pairs < len(all_pairs):
            pick = np.random.default_rng(0).choice(len(all_pairs), args.baseline_pairs, replace=False)
            pairs = [all_pairs[i] for i in sorted(pick)]
        else:
            pairs = all_pairs
        base = in_child(run_pairwise, root, names, pairs)

    per_pair = base["seconds"] / len(pairs)
    full = per_pair * len(all_pairs)
    diff = max(abs(stream["values"][a, b] - v) for (a, b), v in base["values"].items())
    f = stream["facts"]
    print(f"{'method':<34}{'time':>12}{'peak memory':>14}")
    print(f"{'streamed (feature space, exact)':<34}{stream['seconds']:>10.2f} s{gib(stream['peak']):>14}"
          f"   {f['passes']} pass, {f['chunk_rows']}-row chunks, device {f['device']}")  # fmt: skip
    print(f"{'minibatch (unbiased, b=' + str(args.batch_size) + ')':<34}{mini['seconds']:>10.2f} s{gib(mini['peak']):>14}"
          f"   {mini['facts']['batches']} batches")  # fmt: skip
    label = "pairwise Grams" + ("" if len(pairs) == len(all_pairs) else f" ({len(pairs)} of {len(all_pairs)} pairs)")
    print(f"{label:<34}{base['seconds']:>10.2f} s{gib(base['peak']):>14}   {per_pair:.2f} s per pair")
    if len(pairs) != len(all_pairs):
        print(f"{'pairwise Grams, all pairs (extrap.)':<34}{full:>10.0f} s{gib(base['peak']):>14}")
    print(f"speed-up of streaming over pairwise for the full matrix: {full / stream['seconds']:.0f}×; "
          f"max |difference| on the pairs both computed: {diff:.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
