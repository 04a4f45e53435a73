"""Benchmark: each similarity metric between two (N, D) representations, streamed against the naive dense way.

Data: x (N, D) float32 standard normal and y = tanh(x·W/√D) + noise (related, like two blocks of one
model), generated from a seed inside each measuring process, so the figures exclude it; the
streamed path reads them through :class:`~diffprobe.pipelines.cka.source.Source` in row chunks.

Compared, each in a fresh process (unless --in-process) so that its peak memory is its own (the
peak resident memory above the process's memory once the data is ready, via /proc's VmHWM reset):
  streamed  diffprobe's ``similarity_matrix([x], [y], metric)``: k-NN tables from (tile, N) blocks,
            CCA/Procrustes from streamed covariances, RSA from tiled RDMs and exact ranks. The three
            k-NN metrics share one neighbour-table pass (measured once, with each metric's finishing
            step timed apart; its row shows tables + finish).
  naive     what one writes first: float64 copies in memory and whole N×N matrices — k-NN from full
            similarity matrices and torch.topk; SVCCA/PWCCA by numpy SVD and QR of the data;
            Procrustes from the full centred arrays; RSA from full RDMs, numpy triu and
            scipy.stats.spearmanr.
Where the naive way would need more than --machine-memory (default: this machine's available
memory) it is not run: its estimated need is printed instead, and said so. Exact streamed RSA needs
Θ(N²) memory too (ranks of N(N-1)/2 dissimilarities); beyond --max-memory it is refused, and the
table says what it would need.

    python benchmarks/similarity_speed.py                    # 10,000 and 50,000 items × 2,048 features
    python benchmarks/similarity_speed.py --smoke            # 300 items × 32 features, in-process, seconds

Prints a table; never asserts on time.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import time

import numpy as np

METRICS = ("mutual-knn", "cknna", "cycle-knn", "svcca", "pwcca", "procrustes", "rsa")
KNN = ("mutual-knn", "cknna", "cycle-knn")


def proc_bytes(path: str, key: str) -> int:
    """A kB figure of /proc/self/status or /proc/meminfo, in bytes (0 when absent)."""
    with open(path) as f:
        return next((int(line.split()[1]) * 1024 for line in f if line.startswith(key)), 0)


def peak_bytes() -> int:
    return proc_bytes("/proc/self/status", "VmHWM")


def reset_peak() -> int:
    """Reset the peak-RSS mark to the current RSS (Linux ≥ 4.0) and return it."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return peak_bytes()


def make_data(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d), dtype=np.float32)
    w = rng.standard_normal((d, d), dtype=np.float32) / np.float32(np.sqrt(d))
    y = np.tanh(x @ w)
    y += np.float32(0.5) * rng.standard_normal((n, d), dtype=np.float32)
    return x, y


# --- the naive dense implementations ------------------------------------------------------------


def naive_knn(x: np.ndarray, y: np.ndarray, k: int, metric: str) -> float:
    """Full N×N cosine similarity matrices of both representations, torch.topk per row."""
    import torch

    def kernel(a: np.ndarray) -> torch.Tensor:
        z = torch.nn.functional.normalize(torch.from_numpy(a).double(), dim=1)
        return z @ z.T

    kx, ky = kernel(x), kernel(y)
    n = kx.shape[0]
    nx, ny = (torch.topk(g.fill_diagonal_(float("-inf")), k, dim=1).indices for g in (kx.clone(), ky.clone()))
    mx = torch.zeros(n, n, dtype=torch.bool).scatter_(1, nx, True)
    my = torch.zeros(n, n, dtype=torch.bool).scatter_(1, ny, True)
    if metric == "mutual-knn":
        return float((mx & my).sum()) / (n * k)
    if metric == "cycle-knn":
        return float(mx[ny, torch.arange(n)[:, None]].any(1).double().mean())  # ∃ j ∈ S_y(i): i ∈ S_x(j)
    kx -= kx.mean(1, keepdim=True)
    ky -= ky.mean(1, keepdim=True)
    return float((kx * ky)[mx & my].sum() / torch.sqrt((kx * kx)[mx].sum() * (ky * ky)[my].sum()))


def naive_cca(x: np.ndarray, y: np.ndarray, metric: str, keep: float = 0.99) -> float:
    """SVCCA: SVD of each centred array, keep 99% of the variance, QR, SVD; PWCCA: QR of the whole arrays."""
    xc, yc = x.astype(np.float64), y.astype(np.float64)
    xc -= xc.mean(0)
    yc -= yc.mean(0)
    if metric == "svcca":
        def reduce(a: np.ndarray) -> np.ndarray:
            _, s, vt = np.linalg.svd(a, full_matrices=False)
            kept = int(np.searchsorted(np.cumsum(s**2) / np.sum(s**2), keep)) + 1
            return a @ vt[:kept].T

        qx, qy = np.linalg.qr(reduce(xc))[0], np.linalg.qr(reduce(yc))[0]
        return float(np.linalg.svd(qx.T @ qy, compute_uv=False).mean())
    qx, qy = np.linalg.qr(xc)[0], np.linalg.qr(yc)[0]
    u, rho, _ = np.linalg.svd(qx.T @ qy, full_matrices=False)
    alpha = np.abs((qx @ u).T @ xc).sum(1)
    return float(alpha @ rho / alpha.sum())


def naive_procrustes(x: np.ndarray, y: np.ndarray) -> float:
    a, b = x.astype(np.float64), y.astype(np.float64)
    a, b = a - a.mean(0), b - b.mean(0)
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    return float(2 - 2 * np.linalg.svd(a.T @ b, compute_uv=False).sum())


def naive_rsa(x: np.ndarray, y: np.ndarray) -> float:
    """Full correlation-distance RDMs, their upper triangles, scipy's Spearman."""
    import torch
    from scipy.stats import spearmanr

    def rdm(a: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(a).double()
        t = torch.nn.functional.normalize(t - t.mean(1, keepdim=True), dim=1)
        return (1 - t @ t.T).numpy()

    iu = np.triu_indices(x.shape[0], 1)
    return float(spearmanr(rdm(x)[iu], rdm(y)[iu])[0])


def naive_bytes(metric: str, n: int, d: int) -> int:
    """Estimated peak of the naive way: its N×N matrices and float64 copies."""
    m = n * (n - 1) // 2
    if metric in KNN:
        return 4 * 8 * n * n + 2 * n * n + 16 * n * d  # two float64 N×N kernels and their copies, two bool masks
    if metric == "rsa":
        return 2 * 8 * n * n + 16 * m + 2 * 8 * m + 3 * 8 * m  # RDMs, triu indices, triangles, scipy's ranks
    return 4 * 8 * n * d  # float64 copies, SVD/QR factors


def run_naive(metric: str, n: int, d: int, k: int) -> dict:
    import scipy.stats  # noqa: F401  (imported before the peak is reset, as the streamed side imports torch)
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    x, y = make_data(n, d)
    naive = {**{m: lambda: naive_knn(x, y, k, metric) for m in KNN}, "svcca": lambda: naive_cca(x, y, metric),
             "pwcca": lambda: naive_cca(x, y, metric), "procrustes": lambda: naive_procrustes(x, y), "rsa": lambda: naive_rsa(x, y)}  # fmt: skip
    base = reset_peak()
    t0 = time.perf_counter()
    value = naive[metric]()
    return {"seconds": time.perf_counter() - t0, "peak": max(0, peak_bytes() - base), "values": {metric: value}}


def run_streamed(metrics: tuple[str, ...], n: int, d: int, k: int, device: str, max_memory: int) -> dict:
    """One metric, or the k-NN family sharing one table pass: {seconds per metric, peak, values}."""
    import torch

    from diffprobe.pipelines.cka.source import Source
    from diffprobe.pipelines.similarity import SimilarityConfig, similarity_matrix
    from diffprobe.pipelines.similarity.knn_stream import neighbour_tables
    from diffprobe.pipelines.similarity.math import cknna_tables, cycle_knn_tables, mutual_knn_tables

    torch.set_num_threads(os.cpu_count() or 1)
    x, y = make_data(n, d)
    srcs = [Source.of("x", x), Source.of("y", y)]
    cfg = SimilarityConfig(k=k, device=device, max_memory=max_memory)
    base = reset_peak()
    if metrics[0] in KNN:
        from diffprobe.device import resolve_device

        dev = resolve_device(device)
        t0 = time.perf_counter()
        tables, _ = neighbour_tables(srcs, [0, 1], cfg, dev)
        shared = time.perf_counter() - t0
        finish = {"mutual-knn": mutual_knn_tables, "cknna": cknna_tables, "cycle-knn": cycle_knn_tables}
        seconds, values = {}, {}
        for m in metrics:
            t1 = time.perf_counter()
            values[m] = finish[m](tables[0], tables[1])
            seconds[m] = shared + time.perf_counter() - t1
        return {"seconds": seconds, "shared": shared, "peak": max(0, peak_bytes() - base), "values": values}
    t0 = time.perf_counter()
    res = similarity_matrix(srcs[:1], srcs[1:], metrics[0], cfg)
    return {"seconds": {metrics[0]: time.perf_counter() - t0}, "peak": max(0, peak_bytes() - base),
            "values": {metrics[0]: float(res.values[0, 0])}}  # fmt: skip


def _report(queue: mp.Queue, fn, *args) -> None:
    try:
        queue.put(fn(*args))
    except BaseException as e:  # noqa: BLE001  (surface any child error in the parent)
        queue.put({"error": f"{type(e).__name__}: {e}"})


def in_process(fn, *args) -> dict:
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001  (reported in the table like a child's error)
        return {"error": f"{type(e).__name__}: {e}"}


def in_child(fn, *args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_report, args=(queue, fn, *args))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def fmt_bytes(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", default="10000,50000", help="comma-separated N")
    ap.add_argument("--features", type=int, default=2048)
    ap.add_argument("--metrics", default=",".join(METRICS))
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-memory", default="2GiB", help="the streamed computation's budget (SimilarityConfig.max_memory)")
    ap.add_argument("--machine-memory", default=None, help="run the naive way only below this need (default: MemAvailable)")
    ap.add_argument("--smoke", action="store_true", help="300 items × 32 features, --in-process: checks that everything runs")
    ap.add_argument("--in-process", action="store_true", help="measure in this process (fast start; peaks less reliable)")
    ap.add_argument("--json", default=None, help="append the figures to this results file (benchmarks/results.py)")
    args = ap.parse_args()

    from diffprobe.sizes import parse_size

    items = [300] if args.smoke else [int(s) for s in args.items.split(",")]
    d = 32 if args.smoke else args.features
    metrics = tuple(m for m in args.metrics.split(",") if m)
    machine = parse_size(args.machine_memory) if args.machine_memory else proc_bytes("/proc/meminfo", "MemAvailable")
    budget = parse_size(args.max_memory)
    run = in_process if args.smoke or args.in_process else in_child
    print(f"# two related float32 arrays (N × {d}), k = {args.k}, device {args.device}, streamed max_memory {fmt_bytes(budget)}; "
          f"naive runs where it needs < {fmt_bytes(machine)}")  # fmt: skip
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'metric':<12}{'N':>8}{'streamed':>12}{'peak':>12}{'naive':>12}{'peak':>12}{'speed-up':>10}{'|diff|':>10}")
    rows = []
    for n in items:
        knn = tuple(m for m in metrics if m in KNN)
        shared = run(run_streamed, knn, n, d, args.k, args.device, budget) if knn else {}
        for m in metrics:
            s = shared if m in KNN else run(run_streamed, (m,), n, d, args.k, args.device, budget)
            need = naive_bytes(m, n, d)
            naive = run(run_naive, m, n, d, args.k) if need < 0.8 * machine else None
            line, figures = table_row(m, n, s, naive, need, machine)
            print(line)
            rows += figures
    print("speed-up = naive time / streamed time (same run); peak = resident memory above the loaded data")
    if args.json:
        from results import append

        append(args.json, "similarity_speed", rows, device=args.device, features=d)


def table_row(m: str, n: int, s: dict, naive: dict | None, need: int, machine: int) -> tuple[str, list]:
    """One printed line of the table and its two figures for --json."""
    from results import Row

    ok, notes = "error" not in s, []
    s_time, s_peak = (f"{s['seconds'][m]:.2f} s", fmt_bytes(s["peak"])) if ok else ("refused", "—")
    if not ok:
        notes.append(s["error"].split(";")[0].replace("ConfigError: ", ""))
    elif m in KNN:
        notes.append(f"incl. {s['shared']:.2f} s of k-NN tables shared by the 3 k-NN metrics")
    n_time, n_peak, ratio, diff = "not run", f"~{fmt_bytes(need)}", "—", "—"
    if naive is None:
        notes.append(f"naive needs ~{fmt_bytes(need)} > this machine's {fmt_bytes(machine)}")
    elif "error" in naive:
        n_time, n_peak = "failed", "—"
        notes.append(naive["error"])
    else:
        n_time, n_peak = f"{naive['seconds']:.2f} s", fmt_bytes(naive["peak"])
        if ok:
            ratio = f"{naive['seconds'] / s['seconds'][m]:.2f}×"
            diff = f"{abs(naive['values'][m] - s['values'][m]):.0e}"
    line = f"{m:<12}{n:>8}{s_time:>12}{s_peak:>12}{n_time:>12}{n_peak:>12}{ratio:>10}{diff:>10}   {'; '.join(notes)}"
    ran = naive is not None and "error" not in naive
    figures = [Row(f"{m} N={n}: streamed", s["seconds"][m] if ok else None, "s", "" if ok else s["error"]),
               Row(f"{m} N={n}: naive", naive["seconds"] if ran else None, "s", "" if ran else f"not run: needs ~{fmt_bytes(need)}")]  # fmt: skip
    return line, figures


if __name__ == "__main__":
    main()
