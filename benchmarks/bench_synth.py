"""Benchmark: building the synthetic worlds (DATA.md D.9 budgets: default < 30 s on 2 cores, tiny < 2 s).

Times `make_world` for the 'tiny' world and for the 'default' world with 2 rendering workers, against a reference run
in the same process: the default world with 1 worker (the ratio is the parallel speed-up). Also prints the share of
the time spent deciding the world (no pixels), the render cost per image, and the peak resident memory of this
process and of its workers.
Run: flock /tmp/reid-nb-heavy.lock .venv/bin/python benchmarks/bench_synth.py [PRESET]
"""
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("REID_NB_PROGRESS", "0")
from reid_nb.render import render_image  # noqa: E402
from reid_nb.synth import build_world, world_config  # noqa: E402
from reid_nb.world import make_world  # noqa: E402


def timed(fn, *args, **kw) -> tuple[float, object]:
    t0 = time.perf_counter(); out = fn(*args, **kw)
    return time.perf_counter() - t0, out


def peak_mb(who) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def main(preset: str = "default") -> None:
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        t_tiny, _ = timed(make_world, d / "tiny", "tiny", 0, 2)
        t_build, world = timed(build_world, world_config(preset), 0)
        n = len(world.images["file"])
        t_render, _ = timed(lambda: [render_image(world, k) for k in range(0, n, max(1, n // 500))])
        per_image = t_render / len(range(0, n, max(1, n // 500)))
        t2, _ = timed(make_world, d / "w2", preset, 0, 2)
        t1, _ = timed(make_world, d / "w1", preset, 0, 1)
        mb = sum(p.stat().st_size for p in (d / "w2").rglob("*") if p.is_file()) / 2**20
    print(f"cpu cores: {os.cpu_count()}")
    print(f"tiny world, 2 workers:              {t_tiny:6.2f} s   (budget 2 s)")
    print(f"{preset} world: {n} images, {mb:.1f} MB on disk")
    print(f"  decide everything (no pixels):    {t_build:6.2f} s")
    print(f"  render one image (pre-JPEG):      {per_image * 1000:6.2f} ms")
    print(f"  make_world, 2 workers:            {t2:6.2f} s   (budget 30 s)")
    print(f"  make_world, 1 worker (reference): {t1:6.2f} s")
    print(f"  ratio reference / 2 workers:      {t1 / t2:6.2f} x")
    print(f"peak RSS: main {peak_mb(resource.RUSAGE_SELF):.0f} MB, largest worker {peak_mb(resource.RUSAGE_CHILDREN):.0f} MB")


if __name__ == "__main__":
    main(*sys.argv[1:])
