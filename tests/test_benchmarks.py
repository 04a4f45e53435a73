"""The benchmark scripts run (tiny settings, CPU): their figures are for people, their code must not rot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.slow
def test_extract_speed_benchmark_runs(tmp_path):
    results = tmp_path / "results.jsonl"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "extract_speed.py"), "--device", "cpu", "--iters", "1", "--batch", "2",
           "--fuse", "auto", "--timesteps", "2", "--e2e", "--e2e-images", "24", "--json", str(results)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert re.search(r"reference: fp32, full forward, hook\s+[\d.]+\s+1\.00", out), out
    assert re.search(r"diffprobe: early exit, fp32, pooled on device\s+[\d.]+\s+[\d.]+", out), out
    assert "(fuse auto → 2)" in out and re.search(r"fuse 2\s+\(\s+4 rows per forward\)", out), out
    assert re.search(r"p=2 pooled\s+steady\s+[\d.]+ img/s =\s+[\d.]+% of compute-only", out), out
    assert "native map" in out
    table = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_table.py"), str(results)], capture_output=True, text=True, cwd=ROOT)
    assert table.returncode == 0, table.stderr[-2000:]
    assert re.search(r"extract_speed\s+adm-32-fmnist b13: end to end, p=2 pooled\s+[\d.,]+ img/s", table.stdout), table.stdout
    assert re.search(r"end to end p=2 ≥ 750 img/s\s+[\d.,]+ img/s\s+MISSED", table.stdout), table.stdout  # a CPU, 24 images
    assert re.search(r"store writer alone ≥ 400 MB/s\s+—\s+not measured", table.stdout), table.stdout


@pytest.mark.slow
def test_difffeed_speed_benchmark_runs():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "difffeed_speed.py"), "--device", "cpu", "--iters", "1", "--batch", "2", "--dim", "16"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert "feedback [(12, 8), (15, 5), (18, 2)]" in out and "read block 15" in out
    assert re.search(r"released style \(two full forwards\)\s+[\d.]+\s+[\d.]+\s+1\.00×", out), out
    assert re.search(r"cached pass 1, truncated pass 2\s+[\d.]+\s+[\d.]+\s+[\d.]+×", out), out


@pytest.mark.slow
def test_checksum_cost_benchmark_runs():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "checksum_cost.py"), "--device", "cpu", "--repeats", "1", "--blocks", "7",
           "--per-class", "6"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert re.search(r"extract: seconds\s+[\d.]+\s+[\d.]+\s+-?[\d.]+%", r.stdout), r.stdout
    assert re.search(r"read all: seconds\s+[\d.]+\s+[\d.]+\s+-?[\d.]+%", r.stdout), r.stdout
    assert re.search(r"store verify: [\d.]+ s \(metadata only\); store verify --deep: [\d.]+ s", r.stdout), r.stdout


@pytest.mark.slow
def test_decode_speed_benchmark_runs():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "decode_speed.py"), "--images", "60", "--size", "64", "--per-shard", "25",
           "--workers", "0", "--repeats", "1"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "60 JPEG images of 64×64" in r.stdout and re.search(r"\n\s+0\s+\d+ /s\s+\d+ /s\s+[\d.]+×", r.stdout), r.stdout


@pytest.mark.slow
def test_dense_memory_benchmark_runs():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "dense_memory.py"), "--n", "20", "--epochs", "1", "--max-memory", "1MiB",
           "--val-per-class", "2"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert re.search(r"\n\s+20\s+\d+ MiB\s+\d+ MiB\s+\d+ MiB\s+\d+ MiB\s+[\d.]+ s\s+[\d.]+%", r.stdout), r.stdout
    assert re.search(r"\n\s+80\s+\d+ MiB", r.stdout), r.stdout


@pytest.mark.slow
def test_augment_views_benchmark_runs(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "augment_views.py"), "--workdir", str(tmp_path), "--limit", "2",
           "--views", "1,2", "--draws", "1", "--attention-epochs", "1"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert re.search(r"\| 1 \| 1 \| 1 \| [\d.]+ s \| 1\.0 \|", out), out
    assert re.search(r"\| 2 \| 1 \| 2 \| [\d.]+ s \| [\d.]+ \| [\d.]+ MiB \| [\d.]+% \([\d.]+ s\) \| [\d.]+% \|", out), out


@pytest.mark.slow
def test_gpu_profile_benchmark_runs(tmp_path):
    trace = tmp_path / "trace.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_profile.py"), "--device", "cpu", "--iters", "1", "--batch", "2",
           "--trace", str(trace)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert "model adm-32-fmnist (random weights), block 13" in out and "batch 2, fp32, eager" in out, out
    assert re.search(r"wall: [\d.]+ ms per batch \(median of 1\), [\d.]+ img/s", out), out
    groups = ("convolution", "matmul/attention", "norm+activation", "elementwise", "copies/layout", "pooling/reduction", "other")
    shares = {}
    for g in groups:
        m = re.search(rf"^{re.escape(g)}\s+([\d.]+)\s+([\d.]+)%\s+(\d+)", out, re.M)
        assert m, (g, out)
        shares[g] = float(m.group(2))
    assert sum(shares.values()) == pytest.approx(100, abs=0.5), out
    assert shares["convolution"] > 10 and "aten::mkldnn_convolution" in out, out  # the conv's compute is found, not lost in a parent op
    assert re.search(r"kernel time [\d.]+ ms of [\d.]+ ms wall per profiled batch", out), out
    assert trace.stat().st_size > 0


def test_unit_pieces_benchmark_runs_and_the_three_ways_store_the_same_bytes(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "unit_pieces.py"), "--unit-size", "64", "--keys", "2", "--channels", "8",
           "--size", "4", "--piece", "4096", "--dir", str(tmp_path)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    pieces = {}
    for label in ("held whole", "pieces into the shards", "pieces spilled"):
        m = re.search(rf"^{label}\s+(\d+)\s+[\d.]+\s+[\d.]+×\s+[\d,]+\s+([\d.]+)×", out, re.M)
        assert m, (label, out)
        pieces[label] = (int(m.group(1)), float(m.group(2)))
    assert [p for p, _ in pieces.values()] == [1, 8, 8], out  # 64 rows of 512 bytes in pieces of 8 rows
    # the old way rewrites the shards written so far with every piece; the spill writes the unit twice
    assert pieces["pieces into the shards"][1] > 2 * pieces["held whole"][1] and pieces["pieces spilled"][1] < 2.6 * pieces["held whole"][1], out
    assert "stored shards: the same bytes in all three; spill files left: 0" in out, out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_writer_speed_benchmark_runs(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "writer_speed.py"), "--channels", "8", "--size", "4", "--unit-size", "16",
           "--units", "3", "--keys", "2", "--threads", "1,2", "--repeats", "1", "--dir", str(tmp_path)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert "3 units × 16 items × 2 key(s) of 8×4×4 float16" in out and re.search(r"load average before: [\d.]+ [\d.]+ [\d.]+", out), out
    number = r"\s+[\d.]+\s+\d+\s+\d+\s+[\d.]+×\s+[\d.]+\s+[\d.]+"
    for label in ("raw tofile \\(same bytes\\)", "before: 1 thread \\(the old writer\\)", "BackgroundWriter, 1 thread\\(s\\)", "BackgroundWriter, 2 thread\\(s\\)"):
        assert re.search(label + number, out), (label, out)
    for stage in ("encode \\+ write", "digests", "marker"):
        assert re.search(rf"{stage}\s+[\d.]+ s\s+[\d.]+%", out), (stage, out)
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone


@pytest.mark.slow
def test_gpu_probes_benchmark_runs(tmp_path):
    import json

    results = tmp_path / "results.jsonl"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_probes.py"), "--device", "cpu", "--workdir", str(tmp_path),
           "--json", str(results),
           "--small-per-class", "2,1", "--small-t", "90", "--head-epochs", "1",
           "--scale-n", "1000", "--scale-dim", "16", "--scale-classes", "5", "--scale-max-memory", "16KB",
           "--attn-n", "40", "--attn-channels", "8", "--attn-classes", "4", "--attn-dim", "16", "--attn-max-memory", "16KB"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert out.startswith("device: cpu;"), out
    for stage in ("small", "scale", "attention"):
        assert re.search(rf"^== {stage} \(budget \d+ s, \d+ s left for measuring\)$", out, re.M), (stage, out)
        assert re.search(rf"^   {stage} took [\d.]+ s$", out, re.M), (stage, out)
    lines = [json.loads(line) for line in results.read_text().splitlines()]  # one per stage, appended as it ended
    assert [(ln["benchmark"], ln["device"], ln["stage"]) for ln in lines] == [("gpu_probes", "cpu", s) for s in ("small", "scale", "attention")]
    assert all(row["what"].startswith(f"{ln['stage']}: ") for ln in lines for row in ln["rows"])
    rows = {row["what"]: row for ln in lines for row in ln["rows"]}
    assert all(set(row) == {"what", "value", "unit", "note"} for row in rows.values())
    probes = ("logistic", "linear", "knn", "attention", "difformer")
    expected = [
        "small: extract", *(f"small: {p} {m}" for p in probes for m in ("fit", "top-1")), "small: cka blocks",
        "scale: write", "scale: write throughput", "scale: read pass",
        *(f"scale: {p} {m}" for p in ("logistic", "linear-4lr") for m in ("fit", "top-1", "load+eval")),
        "attention: write", "attention: write throughput", "attention: fit", "attention: train throughput", "attention: load+eval",
        "attention: top-1",
    ]  # fmt: skip
    for what in expected:
        assert what in rows and isinstance(rows[what]["value"], float), (what, rows.get(what), out)
        assert re.search(rf"^  {re.escape(what)}\s+[\d.,]+ ", out, re.M), (what, out)  # printed as it was measured
    assert rows["scale: logistic top-1"]["value"] > 50 and rows["scale: logistic top-1"]["unit"] == "%"  # learnable: chance is 20%
    assert "streamed from the store" in rows["scale: logistic fit"]["note"]
    assert "diagonal 1.0000" in rows["small: cka blocks"]["note"]
    assert "standardised (the default)" in rows["attention: fit"]["note"]
    assert list(tmp_path.iterdir()) == [results]  # the stores are gone


@pytest.mark.slow
def test_gpu_probes_benchmark_keeps_its_figures_when_terminated(tmp_path):
    """A caller's `timeout` (SIGTERM) in the middle of a fit: the rows measured so far still reach --json."""
    import json
    import signal

    results = tmp_path / "results.jsonl"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_probes.py"), "--device", "cpu", "--workdir", str(tmp_path),
           "--json", str(results), "--stages", "attention", "--attn-budget", "60", "--attn-epochs", "100000",
           "--attn-n", "40", "--attn-channels", "8", "--attn-classes", "4", "--attn-dim", "16", "--attn-max-memory", "16KB"]  # fmt: skip
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    out = []
    for line in p.stdout:  # the fit (100,000 epochs) starts right after the write's rows
        out.append(line)
        if "attention: write throughput" in line:
            p.send_signal(signal.SIGTERM)
            break
    out.append(p.stdout.read())
    assert p.wait(timeout=60) == 128 + signal.SIGTERM, "".join(out)
    [line] = [json.loads(text) for text in results.read_text().splitlines()]
    rows = {row["what"]: row for row in line["rows"]}
    assert line["stage"] == "attention" and {"attention: write", "attention: write throughput"} <= set(rows), line
    assert "stopped by SIGTERM" in rows["attention: stage"]["note"], line
    assert list(tmp_path.iterdir()) == [results]  # the store is gone


@pytest.mark.slow
def test_similarity_speed_benchmark_runs(tmp_path):
    results = tmp_path / "results.jsonl"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "similarity_speed.py"), "--smoke", "--json", str(results)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    number = r"\s+[\d.]+ s\s+\d+ MiB\s+[\d.]+ s\s+\d+ MiB\s+[\d.]+×\s+\d+e[-+]\d+"
    for metric in ("mutual-knn", "cknna", "cycle-knn", "svcca", "pwcca", "procrustes", "rsa"):
        assert re.search(rf"^{metric}\s+300{number}", out, re.M), (metric, out)
    assert "shared by the 3 k-NN metrics" in out and "speed-up = naive time / streamed time (same run)" in out
    tiny = subprocess.run(cmd[:2] + ["--items", "400", "--features", "8", "--metrics", "rsa", "--machine-memory", "1MiB",
                                     "--max-memory", "1MiB", "--in-process"], capture_output=True, text=True, timeout=300, cwd=ROOT)  # fmt: skip
    assert tiny.returncode == 0, tiny.stderr[-2000:]
    assert re.search(r"^rsa\s+400\s+refused\s+—\s+not run\s+~\d+ MiB", tiny.stdout, re.M), tiny.stdout
    assert "exact RSA over 400 items needs" in tiny.stdout and "naive needs ~" in tiny.stdout
    assert '"benchmark": "similarity_speed"' in results.read_text()


@pytest.mark.slow
def test_read_integrity_benchmark_runs(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "read_integrity.py"), "--items", "400", "--channels", "8", "--repeats", "1",
           "--workdir", str(tmp_path)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert "400 train + 100 val items × 1 key of 8×2×2 float16" in out, out
    for label in ("probe read \\(row prints\\)", "probe read \\(digest fallback\\)"):
        assert re.search(label + r"\s+[\d.]+s\s+[\d.]+s\s+-?[\d.]+%\s+[\d.]+s\s+[\d.]+%", out), (label, out)
    assert re.search(r"target ≤ 5% for stores written now: (met|MISSED) \([\d.]+% in the check\)", out), out
    assert list(tmp_path.iterdir()) == []  # the stores are gone


@pytest.mark.slow
def test_shared_cpu_benchmark_runs():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "shared_cpu.py"), "--per-class", "1", "--repeats", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert re.search(r"passive, thread per core \(default\)\s+[\d.]+s\s+[\d.]+s\s+[\d.]+×", r.stdout), r.stdout
    assert re.search(r"OpenMP spinning \(--busy-wait\)\s+[\d.]+s\s+[\d.]+s\s+[\d.]+×", r.stdout), r.stdout


@pytest.mark.slow
def test_scale_benchmark_runs(tmp_path):
    """Every stage at two sizes, the exponents, the file projection and the dask run with a worker killed."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--smoke", "--plot", str(tmp_path / "scale.png")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    for stage in ("extract", "finalize", "info", "verify", "verify --deep", "logistic", "linear", "linear wide"):
        assert re.search(rf"2,200  {re.escape(stage)}\s+[\d.]+\s+\d+", out), (stage, out)
        assert re.search(rf"^{re.escape(stage)}\s+-?[\d.]+  RSS", out, re.M), (stage, out)
    assert "FAILED" not in out and "vs one process: IDENTICAL" in out and "SIGKILLed" in out, out
    assert (tmp_path / "scale.png").stat().st_size > 10_000


def test_the_planner_keeps_an_imagenet_store_under_100k_files():
    """1.28M + 50k items × 100 keys of the 256 model (1,024 channels, p = 1, 2, 4 and 8 — or an 8×8
    native map, whose units of 2,048 items are 26.8 GB, filled in spilled pieces): under 100k files."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from scale_curves import growth_exponent, project_store
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    for key_bytes in (128, 2048, 8192, 32768, 131072):
        assert project_store({"train": 1_281_167, "val": 50_000}, [key_bytes] * 100) < 100_000, key_bytes
    assert growth_exponent(1e4, 2.0, 1e5, 20.0) == pytest.approx(1.0) and growth_exponent(1e4, 2.0, 1e5, 2.0) == 0
