"""`make gpu-check`: one prepared measurement of reid-nb on one GPU, under 8 minutes in all, no network.

Prints the device, then runs three sections, cheapest first, each guarded (one that fails or runs out of time is
recorded with its error and the others still run):
1. train: images/s of reid-nb's training loop (`bench_train.make_run` / `time_loop`: backbone + BN neck through
   `reid_nb.train.sgd_steps`) at ResNet-50, 256x128, batch 64, in fp32, AMP, channels_last and AMP + channels_last,
   against the card's own AMP throughput (`bench_train.plain_torchvision_amp`: a plain torchvision ResNet-50
   forward + backward + SGD loop, channels_last, no reid-nb code) measured in the same process (target >= 70 %);
2. features: `reid_nb.features.extract_features` images/s with the image bank on the GPU (`ImageBank.to`), in pinned
   host memory and in pageable host memory; `reid_nb.features.knn` at Market-1501 size, 2048-d (query 3,368 ->
   gallery 15,913, k = 100; self search over the query and the whole test folder, 3,368 + 19,732 with junk and
   distractors, k = 30), torch on the GPU against faiss-gpu (when installed);
3. reproduce_check: `reid-nb reproduce --profile paper --dataset market1501 --check` on a synthetic world copied into
   Market-1501's layout (`paper_world` of tests/test_paper_path.py: the 'market-mini' world, a random ResNet-50
   stand-in in the torchvision cache, the real batch sizes, the test's lighter settings): the estimated full reproduce
   on this GPU.
It writes <out>/gpu-check.json and gpu-check.md after every section, so a killed run keeps what finished.
`--dry`: the same sections at tiny sizes on any device (the small net at 64x32, a tiny kNN, `--check` of the uga
notebook with the smoke profile on the tiny world's copy); tests/test_gpu_check.py runs it in `make test`. Figures
that need a GPU then read "n/a: <reason>".
`--readme SUMMARY`: rewrite README.md's GPU paragraph from a gpu-check.json (one from a CPU says "n/a: no GPU
available" for every figure); nothing is measured.
Run: make gpu-check [GPU_CHECK_ARGS="--max-minutes 7.5 --out results/gpu-check"], then
     .venv/bin/python benchmarks/gpu_check.py --readme results/gpu-check/gpu-check.json
"""
import argparse
import contextlib
import gc
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("REID_NB_PROGRESS", "0")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _reid_features import ROOT, features, train_split  # noqa: E402  (also puts tests/ on the import path)
from bench_neighbours import _times  # noqa: E402
from bench_train import plain_torchvision_amp  # noqa: E402
from bench_train import measure as best_training_rates  # noqa: E402
from reid_nb.core import CHECK_LOG, BadInputError  # noqa: E402
from reid_nb.features import extract_features, knn  # noqa: E402
from reid_nb.models import build_backbone  # noqa: E402
from reid_nb.runner import check_estimate, format_estimate  # noqa: E402
from reid_nb.sampling import ImageBank  # noqa: E402
from reid_nb.world import LAYOUTS  # noqa: E402
from test_paper_path import LIGHT, paper_env, paper_world, scratch_results  # noqa: E402

SCHEMA = 1
SUMMARY_JSON, SUMMARY_MD, CHECK_OUTPUT = "gpu-check.json", "gpu-check.md", "reproduce-check.log"
NO_GPU = "n/a: no GPU available"


@dataclass(frozen=True)
class Sizes:
    """What a mode measures: the training benchmark, extraction, kNN and the reproduce check."""
    arch: str  # backbone of the training and extraction figures
    hw: tuple  # input height, width
    batch: int  # training batch
    iters: int  # timed training iterations per setting and round
    rounds: int  # interleaved timing rounds (best kept)
    bank: int  # images in the extraction bank
    extract_batch: int  # images per extraction batch
    queries: int  # kNN query rows (Market-1501: 3,368)
    gallery: int  # gallery rows without junk (Market-1501: 15,913)
    test_folder: int  # the whole test folder, junk and distractors included (Market-1501: 19,732)
    dim: int  # feature dimension
    k_gallery: int  # neighbours per query, query -> gallery
    k_self: int  # neighbours per row, self search
    profile: str  # reproduce --profile
    preset: str  # the synthetic world copied into Market-1501's layout
    ids: int | None  # identities kept per split of that world (None: all)
    check_batch: int | None  # $REID_NB_CHECK_BATCH of the check (None: the real batches)
    only: tuple  # reproduce --only (empty: every notebook)
    check_params: tuple  # more -p NAME VALUE pairs of the check


FULL = Sizes("resnet50", (256, 128), 64, 20, 2, 19732, 256, 3368, 15913, 19732, 2048, 100, 30,
             "paper", "market-mini", None, None, (), ())
DRY = Sizes("small", (64, 32), 8, 2, 1, 96, 32, 40, 160, 200, 64, 10, 5,
            "smoke", "tiny", 4, 8, ("uga",), ("bounds", "false"))
SECTIONS = ("train", "features", "reproduce_check")


class TimeCap(Exception):
    """The run reached --max-minutes."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise TimeCap in the main thread once `seconds` have passed."""
    def expire(signum, frame): raise TimeCap(f"stopped at the time cap (--max-minutes) after {seconds:.0f} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try: yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------- the device
def no_gpu_reason(device: torch.device) -> str | None:
    """Why the figures that need a GPU are n/a in this run; None on a GPU."""
    if device.type == "cuda": return None
    return NO_GPU if not torch.cuda.is_available() else "n/a: --device cpu"


def faiss_state() -> str:
    """'not installed', 'CPU only' or 'GPU (N devices)'."""
    try: import faiss
    except ImportError: return "not installed"
    gpus = faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0
    return f"GPU ({gpus} devices)" if gpus else "CPU only"


def cpu_name() -> str:
    """The processor's model name (Linux), else its architecture."""
    try: lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError: lines = []
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.machine())


def device_info(device: torch.device) -> dict:
    """Name, memory and software of the device the sections run on."""
    info = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "faiss": faiss_state(), "name": cpu_name()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(name=p.name, memory_gib=round(p.total_memory / 2**30, 1), cuda=torch.version.cuda,
                    capability=f"{p.major}.{p.minor}")
    return info


def amp_of(device: torch.device) -> str:
    """The mixed precision sgd_steps runs on this device: bf16 (CPU; GPUs that have it), else fp16."""
    return "bf16" if device.type == "cpu" or torch.cuda.is_bf16_supported() else "fp16"


# ---------------------------------------------------------------- figure names (one home: sections and README)
REFERENCE = "plain torchvision ResNet-50 AMP channels_last, the card's reference (images/s)"
RATIO = "reid-nb AMP channels_last / the card's reference (%)"
EXTRACTION = "extraction, bank {} (images/s)"
PLACES = ("on the GPU", "in pinned host memory", "in host memory")
BACKENDS = ("torch", "faiss")
ESTIMATE = ("estimated full reproduce on this device (s)", "capped check, wall time (s)",
            "per training iteration, median (s)", "per extracted image (ms)")
GPU_ONLY = ("the card's reference", "bank on the GPU", "pinned host memory", "faiss-gpu")  # n/a without a GPU


def knn_searches(s: Sizes) -> dict:
    """name -> (what the database is, k, with queries): query -> gallery and self search."""
    return {f"query -> gallery {s.queries} -> {s.gallery}, k={s.k_gallery}": ("gallery", s.k_gallery, True),
            f"self search {s.queries} + {s.test_folder}, k={s.k_self}": ("query + test folder", s.k_self, False)}


def knn_name(search: str, backend: str, device: torch.device) -> str:
    return f"kNN {search}, {'faiss-gpu' if backend == 'faiss' else f'torch on {device.type}'} (s)"


def figure_names(s: Sizes, device: torch.device, amp: str) -> dict[str, list[str]]:
    """Every figure a run measures, per section, in order."""
    return {"train": [case[0] for case in training_cases(s, device, amp)] + [REFERENCE, RATIO],
            "features": [EXTRACTION.format(p) for p in PLACES] +
                        [knn_name(n, b, device) for n in knn_searches(s) for b in BACKENDS],
            "reproduce_check": list(ESTIMATE)}


# ---------------------------------------------------------------- 1. training
def training_cases(s: Sizes, device: torch.device, amp: str) -> list:
    """bench_train cases: fp32, AMP, channels_last and AMP + channels_last at the mode's sizes."""
    kw = dict(arch=s.arch, hw=s.hw, batch=s.batch, device=device.type)
    return [(f"{name} (images/s)", torch.get_num_threads(), dict(kw, channels_last=cl), s.iters, a)
            for name, a, cl in (("fp32", None, False), (f"AMP {amp}", amp, False),
                                ("fp32 channels_last", None, True), (f"AMP {amp} channels_last", amp, True))]


def card_reference(s: Sizes, device: torch.device, amp: str) -> float | str:
    """The card's own AMP images/s (plain torchvision ResNet-50 loop), or why it is n/a."""
    if no_gpu_reason(device): return no_gpu_reason(device)
    if s.arch != "resnet50": return "n/a: --dry (the card's reference is a full-size ResNet-50)"
    return plain_torchvision_amp(s.batch, s.hw, s.iters, torch.bfloat16 if amp == "bf16" else torch.float16)


def train_section(s: Sizes, device: torch.device) -> dict:
    """Images/s of reid-nb's training loop in four settings and its share of the card's plain AMP loop."""
    amp = amp_of(device)
    figures = best_training_rates(training_cases(s, device, amp), s.rounds)
    ref = card_reference(s, device, amp)
    ours = figures[f"AMP {amp} channels_last (images/s)"]
    figures.update({REFERENCE: ref, RATIO: ref if isinstance(ref, str) else 100 * ours / ref})
    met = "n/a" if isinstance(ref, str) else "met" if ours >= 0.7 * ref else "MISSED"
    return {"figures": figures, "target": f"reid-nb AMP channels_last >= 70 % of the card's reference: {met}",
            "settings": {"arch": s.arch, "input": f"{s.hw[0]}x{s.hw[1]}", "batch": s.batch, "amp": amp,
                         "iterations": s.iters, "rounds": s.rounds}}


# ---------------------------------------------------------------- 2. features
def bank_placements(s: Sizes, device: torch.device) -> dict:
    """The same random uint8 images as an ImageBank on the GPU, in pinned and in pageable host memory (CPU: host)."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (s.bank, 3, *s.hw), dtype=torch.uint8, device=device)
    host = ImageBank(images.cpu())
    if device.type != "cuda": return {PLACES[2]: host}
    return dict(zip(PLACES, (host.to(device), ImageBank(host.images.pin_memory()), host)))


def extraction_rate(net: torch.nn.Module, bank: ImageBank, device: torch.device, batch: int) -> float:
    """Images/s of extract_features over the whole bank, after a two-batch warm-up."""
    extract_features(net, ImageBank(bank.images[:2 * batch]), device, batch)
    t = time.perf_counter()
    extract_features(net, bank, device, batch)  # returns CPU features: the GPU has finished
    return len(bank) / (time.perf_counter() - t)


def extraction_figures(s: Sizes, device: torch.device) -> dict:
    """Extraction images/s for each place the bank can live; n/a for the GPU-only ones on a CPU."""
    net = build_backbone(s.arch).to(device)
    rates = {where: extraction_rate(net, bank, device, s.extract_batch)
             for where, bank in bank_placements(s, device).items()}
    return {EXTRACTION.format(where): rates.get(where, no_gpu_reason(device)) for where in PLACES}


def knn_features(s: Sizes) -> dict[str, torch.Tensor]:
    """Re-ID-like normalised features on the host: queries, the gallery (the test folder without junk) and queries +
    the whole test folder."""
    pids, cams = train_split(s.queries + s.test_folder, max(2, s.queries // 4), 6)
    x = F.normalize(features(pids, cams, dim=s.dim, n_cams=6))
    return {"queries": x[:s.queries].contiguous(), "gallery": x[s.queries:s.queries + s.gallery].contiguous(),
            "query + test folder": x}


def knn_seconds(x: torch.Tensor, k: int, queries, backend: str, device: torch.device) -> float | str:
    """Best of three knn calls in seconds (features passed from the host, as the library does); n/a when faiss-gpu
    is needed but missing."""
    if backend == "faiss":
        if no_gpu_reason(device): return no_gpu_reason(device)
        if not faiss_state().startswith("GPU"): return f"n/a: faiss-gpu not installed (faiss: {faiss_state()})"
    return min(_times(knn, x, k, queries=queries, backend=backend, device=device)[1])


def knn_figures(s: Sizes, device: torch.device) -> dict:
    """kNN seconds, query -> gallery and self search, torch on the device and faiss-gpu."""
    x = knn_features(s)
    return {knn_name(name, backend, device): knn_seconds(x[db], k, x["queries"] if q else None, backend, device)
            for name, (db, k, q) in knn_searches(s).items() for backend in BACKENDS}


def features_section(s: Sizes, device: torch.device) -> dict:
    """Feature extraction images/s by bank placement and kNN seconds by backend."""
    figures = {**extraction_figures(s, device), **knn_figures(s, device)}
    return {"figures": figures,
            "settings": {"arch": s.arch, "input": f"{s.hw[0]}x{s.hw[1]}", "bank images": s.bank,
                         "extraction batch": s.extract_batch, "feature dim": s.dim, "faiss": faiss_state()}}


# ---------------------------------------------------------------- 3. reproduce --check
def check_command(s: Sizes, device: torch.device) -> list[str]:
    """`reid-nb reproduce --profile P --dataset market1501 --check` with the paper-path test's settings."""
    return [sys.executable, "-c", "import sys; from reid_nb.cli import main; sys.exit(main())",
            "reproduce", "--profile", s.profile, "--dataset", "market1501", "--check",
            *(["--only", *s.only] if s.only else []), "-p", "verify_weights", "false", "-p", "device", device.type,
            *light_params(s.only), *[a for pair in zip(s.check_params[::2], s.check_params[1::2])
                                     for a in ("-p", *pair)]]


def light_params(only: tuple) -> list[str]:
    """The paper-path test's LIGHT -p triples, keeping those for notebooks that run."""
    triples = [LIGHT[i:i + 3] for i in range(0, len(LIGHT), 3)]
    keep = lambda name: ":" not in name or not only or name.split(":")[0] in only
    return [a for t in triples if keep(t[1]) for a in t]


def run_teed(cmd: list[str], env: dict, log: Path) -> tuple[int, str]:
    """Run `cmd` in its own process group, its output to `log` and (indented) to ours; (exit status, output). The
    group is killed if we are interrupted (the time cap)."""
    p = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    lines = []
    try:
        with open(log, "w", encoding="utf-8") as f:
            for line in p.stdout:
                f.write(line)
                lines.append(line)
                print("    " + line, end="", flush=True)
        return p.wait(), "".join(lines)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def layout_counts(root: Path) -> dict:
    """Images per folder of the Market-1501 copy."""
    base = root / "data" / LAYOUTS["market1501"]
    return {f.name: sum(1 for _ in f.glob("*.jpg")) for f in sorted(base.iterdir()) if f.is_dir()}


def estimate_figures(e: dict) -> dict:
    """The check's figures from `check_estimate`."""
    return dict(zip(ESTIMATE, (e["estimate"], e["wall"], e["s_per_iteration"] or "n/a: no training loop ran",
                               1000 * e["s_per_image"] if e["s_per_image"] else "n/a: no extraction ran")))


def check_outcome(status: int, text: str, log: Path) -> dict:
    """ok; or the notebooks that failed (their remaining loops are then missing from the estimate); or, when the
    check printed no scratch folder, RuntimeError."""
    failed = re.findall(r"^FAILED (.+):$", text, re.M)
    if status == 0: return {"status": "ok"}
    if "scratch results (real results untouched)" not in text:
        raise RuntimeError(f"reid-nb reproduce --check exited with {status}; its output: {log}; last lines: "
                           f"{' / '.join(text.splitlines()[-3:])}")
    return {"status": "error", "error": f"notebooks failed: {', '.join(failed) or '?'} (their tracebacks: {log}); "
                                        "the estimate leaves out what they did not run"}


def reproduce_section(s: Sizes, device: torch.device, work: Path, out: Path) -> dict:
    """The capped `reproduce` of every notebook on a Market-1501 copy and its estimate of the full run."""
    root = paper_world(work / "world", ("market1501",), s.ids, s.preset, stand_in=s.profile == "paper",
                       workers=min(8, os.cpu_count() or 1))
    env = {**os.environ, **paper_env(root, s.check_batch), "TMPDIR": str(root / "tmp")}
    t = time.perf_counter()
    status, text = run_teed(check_command(s, device), env, out / CHECK_OUTPUT)
    wall = time.perf_counter() - t
    outcome = check_outcome(status, text, out / CHECK_OUTPUT)
    estimate = check_estimate(scratch_results(text).parent / CHECK_LOG, wall)
    print(format_estimate(estimate))
    return {**outcome, "figures": estimate_figures(estimate),
            "settings": {"profile": s.profile, "world": s.preset, "ids kept": s.ids or "all",
                         "images": layout_counts(root), "batch cap": s.check_batch or "none (the real batches)",
                         "command": " ".join(check_command(s, device)[3:])},
            "note": "training loops are estimated at the profile's lengths; extraction and clustering at the copied "
                    "world's size, not Market-1501's 32,668 images"}


# ---------------------------------------------------------------- the summary
def run_section(name: str, fn, summary: dict, start: float, out: Path):
    """Run one section within the time the cap leaves; record its figures or its error; write the summary."""
    deadline = start + summary["cap_s"]
    print(f"\n== {name}", flush=True)
    t = time.perf_counter()
    try:
        if deadline - time.time() < 1: raise TimeCap("not started: no time left (--max-minutes)")
        with time_limit(deadline - time.time()): section = {"status": "ok", **fn()}
    except Exception as e:
        traceback.print_exc()
        section = {"status": "error", "error": f"{type(e).__name__}: {e}", "figures": {}}
    section["seconds"] = time.perf_counter() - t
    gc.collect()
    if torch.cuda.is_available(): torch.cuda.empty_cache()  # the card's memory back for the check's kernels
    summary["sections"][name], summary["seconds"] = section, time.time() - start
    write_summary(summary, out)


def write_summary(summary: dict, out: Path):
    """gpu-check.json and gpu-check.md in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY_JSON).write_text(json.dumps(summary, indent=1) + "\n")
    (out / SUMMARY_MD).write_text(markdown(summary))


def shown(value) -> str:
    """A figure as the summaries print it: 3 significant digits, or its n/a text."""
    if isinstance(value, str): return value
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def markdown(summary: dict) -> str:
    """The summary as Markdown: the device, one row per figure, each section's error and settings."""
    d = summary["device"]
    lines = [f"# reid-nb GPU check ({summary['mode']})", "",
             f"{d['name']} ({d['device']}), torch {d['torch']}, faiss {d['faiss']}; {summary['started']}, "
             f"{summary['seconds']:.0f} s of at most {summary['cap_s']:.0f} s", "",
             "| section | figure | value |", "|---|---|---|"]
    for name, sec in summary["sections"].items():
        lines += [f"| {name} | {fig} | {shown(v)} |" for fig, v in sec["figures"].items()]
        if sec["status"] != "ok": lines.append(f"| {name} | error | {sec['error']} |")
    for name, sec in summary["sections"].items():
        if sec.get("settings"): lines.append(f"\n{name} ({sec['seconds']:.0f} s): " + ", ".join(
            f"{k} {v}" for k, v in sec["settings"].items()))
        lines += [f"{key}: {sec[key]}" for key in ("target", "note", "kept") if sec.get(key)]
    return "\n".join(lines) + "\n"


def measure_all(s: Sizes, device: torch.device, out: Path, cap_s: float, mode: str, sections: tuple = SECTIONS,
                kept: dict | None = None) -> dict:
    """The `sections` in order, cheapest first, within `cap_s` seconds (`kept`: sections of an earlier summary to
    keep); the summary."""
    start = time.time()
    summary = {"schema": SCHEMA, "mode": mode, "device": device_info(device), "sizes": asdict(s),
               "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cap_s": cap_s, "seconds": 0.0,
               "sections": dict(kept or {})}
    print(f"device: {json.dumps(summary['device'])}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="reid-nb-gpu-check-"))
    run = {"train": lambda: train_section(s, device), "features": lambda: features_section(s, device),
           "reproduce_check": lambda: reproduce_section(s, device, work, out)}
    try:
        for name in (n for n in SECTIONS if n in sections): run_section(name, run[name], summary, start, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the check's ResNet-50 checkpoints: GBs
    summary["sections"] = {name: summary["sections"][name] for name in SECTIONS if name in summary["sections"]}
    write_summary(summary, out)
    return summary


def kept_sections(out: Path, mode: str, device: torch.device, sections: tuple) -> dict:
    """The sections not rerun, from the summary already in `out` when it is of the same mode and device."""
    path = out / SUMMARY_JSON
    if set(sections) == set(SECTIONS) or not path.is_file(): return {}
    old = json.loads(path.read_text())
    if old.get("schema") != SCHEMA or old["mode"] != mode or old["device"]["name"] != device_info(device)["name"]:
        return {}
    return {name: dict(sec, kept=f"from the run of {old['started']}") for name, sec in old["sections"].items()
            if name not in sections}


# ---------------------------------------------------------------- README
README_BEGIN = "<!-- gpu-check: generated by `benchmarks/gpu_check.py --readme SUMMARY`; not edited by hand -->"
README_END = "<!-- /gpu-check -->"
README_WHAT = (
    "`make gpu-check` (`benchmarks/gpu_check.py`: one command, one GPU, no network, under 8 minutes: the sections "
    "stop at `--max-minutes`, default 7.5) prints the device, then measures, cheapest first, each section guarded so "
    "that one failure still leaves the others: (1) reid-nb's training loop (ResNet-50 + BN neck through `sgd_steps`, "
    "256x128, batch 64) in fp32, AMP, channels_last and AMP + channels_last, against the card's own AMP throughput, a"
    " plain torchvision ResNet-50 forward + backward loop in the same process (target: reid-nb reaches >= 70 % of "
    "it); (2) feature extraction with the image bank on the GPU, in pinned host memory and in pageable host memory, "
    "and exact kNN at Market-1501 size (query 3,368 -> gallery 15,913, k = 100; self search over 3,368 + 19,732 "
    "images with junk and distractors, k = 30; 2048-d), torch on the GPU against faiss-gpu; (3) `reid-nb reproduce "
    "--profile paper --dataset market1501 --check` on the 'market-mini' synthetic world copied into Market-1501's "
    "layout (real batch sizes, a random ResNet-50 standing in for the ImageNet weights), whose estimate of the full "
    "reproduce on this GPU it reports (training loops at the profile's lengths; extraction and clustering at the "
    "copied world's size, about 14 k images against Market-1501's 32,668). It writes "
    "`results/gpu-check/gpu-check.json` and `.md`, and `.venv/bin/python benchmarks/gpu_check.py --readme "
    "results/gpu-check/gpu-check.json` writes this paragraph and table from them. `make test` runs its `--dry` mode "
    "on the CPU (tiny sizes; `tests/test_gpu_check.py`).")


def readme_rows(summary: dict) -> list[str]:
    """One table row per figure of a full GPU run: its value, the section's error, or why there is none."""
    train = summary["sections"].get("train", {})
    names = figure_names(FULL, torch.device("cuda"), train.get("settings", {}).get("amp", "bf16"))
    if summary["mode"] != "gpu":
        reason = NO_GPU if summary["device"]["device"] == "cpu" else "n/a: only a --dry run so far"
        return [f"| {sec} | {fig} | {reason} |" for sec, figs in names.items() for fig in figs]
    return [f"| {sec} | {fig} | {readme_value(summary['sections'].get(sec, {}), fig)} |"
            for sec, figs in names.items() for fig in figs]


def readme_value(section: dict, figure: str) -> str:
    """A figure of a GPU run's section: its value (marked when the section did not finish), or why there is none."""
    if figure not in section.get("figures", {}): return "n/a: " + section.get("error", "not run")
    return shown(section["figures"][figure]) + (" (incomplete: see the summary)" if "error" in section else "")


def readme_block(summary: dict) -> str:
    """README's GPU paragraph and figure table, from a summary."""
    d = summary["device"]
    where = (f"Measured on {d['name']} (torch {d['torch']}, CUDA {d.get('cuda')}, faiss {d['faiss']}) on "
             f"{summary['started']}:" if summary["mode"] == "gpu" else
             f"No GPU has been available to this project yet: every figure is \"{NO_GPU}\" until `make gpu-check` "
             "runs on one.")
    wrap = lambda text: textwrap.fill(text, 116, break_long_words=False, break_on_hyphens=False)
    return "\n".join([README_BEGIN, wrap(README_WHAT), "", wrap(where), "", "| section | figure | value |",
                      "|---|---|---|", *readme_rows(summary), README_END])


def rewrite_readme(summary_path: Path, readme: Path = ROOT / "README.md") -> Path:
    """Replace README's GPU paragraph (between the gpu-check markers) with the one generated from `summary_path`."""
    if not summary_path.is_file(): raise BadInputError(f"--readme {summary_path}: no such file (a {SUMMARY_JSON})")
    summary = json.loads(summary_path.read_text())
    if summary.get("schema") != SCHEMA:
        raise BadInputError(f"--readme {summary_path}: not a gpu-check summary (expected schema {SCHEMA})")
    text = readme.read_text()
    span = re.compile(re.escape(README_BEGIN) + ".*?" + re.escape(README_END), re.S)
    if not span.search(text): raise BadInputError(f"{readme}: the gpu-check markers are missing")
    readme.write_text(span.sub(lambda _: readme_block(summary), text))
    return readme


# ---------------------------------------------------------------- command line
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry", action="store_true", help="tiny sizes, any device (the CPU pass `make test` runs)")
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    ap.add_argument("--max-minutes", type=float, default=7.5, help="time cap of the sections (default 7.5: with "
                    "start-up and clean-up, under 8 minutes)")
    ap.add_argument("--sections", nargs="+", default=list(SECTIONS), metavar="NAME",
                    help=f"run only these ({', '.join(SECTIONS)}); the others are kept from the summary in --out")
    ap.add_argument("--check-batch", type=int, metavar="N", help="cap every batch of the reproduce check to N images "
                                                                 "($REID_NB_CHECK_BATCH; default: the real batches)")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "gpu-check", help="where the summary goes")
    ap.add_argument("--readme", type=Path, metavar="SUMMARY",
                    help=f"only rewrite README's GPU paragraph from this {SUMMARY_JSON}")
    return ap.parse_args(argv)


def checked_sizes(args: argparse.Namespace) -> Sizes:
    """The mode's sizes with --check-batch applied; BadInputError naming the flag that is wrong."""
    if not (args.max_minutes > 0 and math.isfinite(args.max_minutes)):
        raise BadInputError(f"--max-minutes {args.max_minutes}: expected a number of minutes above 0")
    unknown = [n for n in args.sections if n not in SECTIONS]
    if unknown: raise BadInputError(f"--sections {' '.join(unknown)}: expected some of {', '.join(SECTIONS)}")
    if args.check_batch is not None and args.check_batch < 1:
        raise BadInputError(f"--check-batch {args.check_batch}: expected an integer >= 1")
    s = DRY if args.dry else FULL
    return s if args.check_batch is None else replace(s, check_batch=args.check_batch)


def checked_device(args: argparse.Namespace) -> torch.device:
    """The device --device names (auto: CUDA when present); a full run needs CUDA."""
    name = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise BadInputError(f"--device {name}: expected auto, cpu or cuda[:N]")
    if name.startswith("cuda") and not torch.cuda.is_available(): raise BadInputError(f"--device {name}: {NO_GPU}")
    if name == "cpu" and not args.dry:
        raise BadInputError(f"--device cpu: {'no GPU available' if not torch.cuda.is_available() else 'chosen'}; "
                            "the full sizes need a GPU (--dry runs the tiny sizes on a CPU)")
    return torch.device(name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.readme: return print(f"rewrote {rewrite_readme(args.readme)}") or 0
        sizes, device = checked_sizes(args), checked_device(args)
    except BadInputError as e:
        print(f"gpu_check: error: {e}", file=sys.stderr)
        return 2
    mode = "dry" if args.dry else "gpu"
    summary = measure_all(sizes, device, args.out, 60 * args.max_minutes, mode, tuple(args.sections),
                          kept_sections(args.out, mode, device, tuple(args.sections)))
    print("\n" + markdown(summary) + f"\nwrote {args.out / SUMMARY_JSON} and {args.out / SUMMARY_MD}")
    return 0 if all(sec["status"] == "ok" for sec in summary["sections"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
