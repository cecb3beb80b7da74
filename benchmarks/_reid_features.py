"""Shared by bench_evaluation.py and bench_neighbours.py: re-ID-like synthetic features and memory/time measurement.

Features: each identity has a random centre in R^d, each camera a random bias; an image is
centre + 0.45 * camera bias + 3.0 * noise (distractors get their own random centre). With d = 2048 this gives
Market-like numbers (mAP ~ 0.75, rank-1 ~ 0.99, mINP ~ 0.2): matches are near but far from all first.
Memory: peak resident memory above the level before the call (VmHWM, reset through /proc/self/clear_refs) and the
tracemalloc peak (NumPy allocations; torch's are not traced). Memory that an earlier step freed but the allocator
kept can be reused without raising the peak, so a step's figure can undercount: run a step alone in its own process
for its true peak (bench_neighbours.py takes step names).
"""
import gc
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

sys.path.insert(0, str(ROOT / "tests"))  # the dense / per-query references live in the test files


def features(pids: np.ndarray, cams: np.ndarray, dim: int = 2048, seed: int = 0, cam_bias: float = 0.45,
             noise: float = 3.0, n_cams: int = 15) -> torch.Tensor:
    """float32 features for images with these identities (0 = distractor: a centre of its own) and cameras."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(int(pids.max()) + 1, dim, generator=g)
    biases = torch.randn(n_cams, dim, generator=g)
    x = centres[torch.as_tensor(pids)] + cam_bias * biases[torch.as_tensor(cams)]
    x[torch.as_tensor(pids == 0)] = torch.randn(int((pids == 0).sum()), dim, generator=g)
    return x.add_(noise * torch.randn(x.shape, generator=g))


def market_split(seed: int = 0):
    """Market-1501 test-set sizes: 3,368 queries (750 ids), 15,913 gallery images (751 ids + 2,798 distractors)."""
    rng = np.random.default_rng(seed)
    q_pids = np.concatenate([np.arange(1, 751), rng.integers(1, 751, 3368 - 750)])
    g_pids = np.concatenate([np.arange(1, 752), rng.integers(1, 752, 13115 - 751), np.zeros(2798, np.int64)])
    return q_pids, g_pids, rng.integers(0, 6, len(q_pids)), rng.integers(0, 6, len(g_pids))


def train_split(n: int, n_ids: int, n_cams: int, seed: int = 0):
    """A training set: n images of n_ids identities over n_cams cameras."""
    rng = np.random.default_rng(seed)
    return np.concatenate([np.arange(1, n_ids + 1), rng.integers(1, n_ids + 1, n - n_ids)]), rng.integers(0, n_cams, n)


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key): return int(line.split()[1]) * 1024
    return -1


def measure(fn, *args, trace: bool = True, **kwargs):
    """(result, seconds, (peak RSS above the starting RSS, peak RSS of the process) in bytes, tracemalloc peak in
    bytes or 0 when not traced).
    trace=False for the Python-loop references: tracemalloc would slow their many small allocations."""
    gc.collect()
    try: Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
    except OSError: pass
    base = _status("VmRSS:")
    if trace: tracemalloc.start()
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    dt = time.perf_counter() - t
    traced = tracemalloc.get_traced_memory()[1] if trace else 0
    if trace: tracemalloc.stop()
    hwm = _status("VmHWM:")
    return out, dt, (max(hwm - base, 0), hwm), traced


def row(name: str, dt: float, rss: tuple, traced: int, target: str = "") -> str:
    tm = f"{traced / 2**20:.0f} MB" if traced else "-"
    return f"| {name} | {dt:.2f} s | {rss[0] / 2**20:.0f} MB | {rss[1] / 2**20:.0f} MB | {tm} | {target} |"


HEADER = ("| step | time | peak RSS above start | process peak RSS | tracemalloc peak | target |\n"
          "|---|---|---|---|---|---|")
