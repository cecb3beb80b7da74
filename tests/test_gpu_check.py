"""benchmarks/gpu_check.py (`make gpu-check`) in its --dry mode, as `make test` runs it on a CPU: the summary has every
section and figure, every figure is a positive finite number or says why not ("n/a: <reason>"), a failing section
leaves the others, README's GPU paragraph is the one `--readme` writes, and bad flags are named. The real run needs a
GPU; no figure is compared with another (timings)."""
import importlib.util
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
pytestmark = pytest.mark.slow


def load_script():
    """benchmarks/gpu_check.py as a module (its neighbours bench_train, bench_neighbours importable)."""
    if str(SCRIPT.parent) not in sys.path: sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gc = load_script()


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    """`gpu_check.py --dry` in a subprocess: (summary, Markdown, printed output)."""
    out = tmp_path_factory.mktemp("gpu-check")
    run = subprocess.run([sys.executable, str(SCRIPT), "--dry", "--out", str(out), "--max-minutes", "6"], cwd=ROOT,
                         capture_output=True, text=True, timeout=420)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads((out / gc.SUMMARY_JSON).read_text()), (out / gc.SUMMARY_MD).read_text(), run.stdout


def gpu_only(figure: str) -> bool:
    return any(part in figure for part in gc.GPU_ONLY)


def test_the_summary_has_every_section_and_figure(dry):
    summary, _, out = dry
    assert summary["schema"] == gc.SCHEMA and summary["mode"] == "dry" and out.startswith("device: ")
    assert {"device", "torch", "faiss", "name"} <= set(summary["device"])
    assert list(summary["sections"]) == list(gc.SECTIONS)
    assert all(sec["status"] == "ok" and sec["seconds"] > 0 for sec in summary["sections"].values())
    device = torch.device(summary["device"]["device"])
    names = gc.figure_names(gc.DRY, device, summary["sections"]["train"]["settings"]["amp"])
    assert {name: list(sec["figures"]) for name, sec in summary["sections"].items()} == names
    assert summary["sections"]["reproduce_check"]["settings"]["images"]["query"] > 0


def test_every_figure_is_a_positive_finite_number_or_says_why_not(dry):
    summary, _, _ = dry
    on_gpu = summary["device"]["device"].startswith("cuda")
    for name, sec in summary["sections"].items():
        for figure, value in sec["figures"].items():
            if isinstance(value, str):
                assert value.startswith("n/a: ") and len(value) > 5, (figure, value)
                assert gpu_only(figure), f"{figure}: only a figure that needs a GPU may be n/a on a CPU"
            else:
                assert isinstance(value, float) and math.isfinite(value) and value > 0, (figure, value)
            if gpu_only(figure) and not on_gpu:
                assert value == (gc.NO_GPU if not torch.cuda.is_available() else "n/a: --device cpu"), figure


def test_the_markdown_shows_every_figure(dry):
    summary, md, out = dry
    assert md.startswith("# reid-nb GPU check (dry)") and md in out
    for name, sec in summary["sections"].items():
        for figure, value in sec["figures"].items(): assert f"| {name} | {figure} | {gc.shown(value)} |" in md


def test_readme_gpu_paragraph_is_the_one_readme_writes(dry, tmp_path):
    summary, _, _ = dry
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary))
    readme = Path(shutil.copy(ROOT / "README.md", tmp_path / "README.md"))
    gc.rewrite_readme(path, readme)
    block = gc.readme_block(summary)
    assert block in readme.read_text() and "`make gpu-check`" in block
    if summary["device"]["device"] == "cpu":
        assert readme.read_text() == (ROOT / "README.md").read_text(), "run gpu_check.py --readme on a CPU summary"
        assert block.count(f"| {gc.NO_GPU} |") == sum(map(len, gc.figure_names(gc.FULL, torch.device("cuda"),
                                                                                "bf16").values()))


def test_readme_rows_of_a_gpu_run_show_its_figures_and_errors():
    names = gc.figure_names(gc.FULL, torch.device("cuda"), "fp16")
    summary = {"mode": "gpu", "started": "2026-01-01 00:00 UTC",
               "device": {"device": "cuda", "name": "Some GPU", "torch": "2", "cuda": "12", "faiss": "CPU only"},
               "sections": {"train": {"figures": {f: 1234.5 for f in names["train"]}, "settings": {"amp": "fp16"}},
                            "features": {"figures": {f: 0.25 for f in names["features"]}},
                            "reproduce_check": {"figures": {}, "error": "TimeCap: stopped"}}}
    block = gc.readme_block(summary)
    assert "Measured on Some GPU" in block and "| train | AMP fp16 channels_last (images/s) | 1,234 |" in block
    assert block.count("| 0.25 |") == len(names["features"])
    assert block.count("| n/a: TimeCap: stopped |") == len(names["reproduce_check"])
    summary["sections"]["reproduce_check"] = {"figures": {names["reproduce_check"][0]: 3600.0}, "error": "one failed"}
    assert f"| {names['reproduce_check'][0]} | 3,600 (incomplete: see the summary) |" in gc.readme_block(summary)


def test_a_failing_section_leaves_the_others(tmp_path, monkeypatch):
    def fail(*args): raise RuntimeError("boom")
    monkeypatch.setattr(gc, "train_section", fail)
    monkeypatch.setattr(gc, "features_section", lambda *args: {"figures": {"extraction (images/s)": 1.0}})
    summary = gc.measure_all(gc.DRY, torch.device("cpu"), tmp_path, 120.0, "dry", ("train", "features"))
    assert summary["sections"]["train"]["error"] == "RuntimeError: boom"
    assert summary["sections"]["features"]["status"] == "ok"
    saved = json.loads((tmp_path / gc.SUMMARY_JSON).read_text())
    assert list(saved["sections"]) == ["train", "features"]
    assert "| train | error | RuntimeError: boom |" in (tmp_path / gc.SUMMARY_MD).read_text()


def test_the_time_cap_stops_a_section_and_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(gc, "train_section", lambda *args: time.sleep(30))
    summary = gc.measure_all(gc.DRY, torch.device("cpu"), tmp_path, 2.0, "dry", ("train", "features"))
    assert summary["sections"]["train"]["error"].startswith("TimeCap: ")
    assert summary["sections"]["features"]["error"].startswith("TimeCap: not started")
    assert summary["seconds"] < 20


@pytest.mark.parametrize("args, flag", [(["--dry", "--max-minutes", "0"], "--max-minutes 0"),
                                        (["--dry", "--sections", "train", "nope"], "--sections nope"),
                                        (["--dry", "--check-batch", "0"], "--check-batch 0"),
                                        (["--dry", "--device", "tpu"], "--device tpu"),
                                        (["--readme", "no-such-summary.json"], "--readme no-such-summary.json")])
def test_bad_flags_are_named(args, flag, capsys):
    assert gc.main(args) == 2
    assert flag in capsys.readouterr().err


def test_a_full_run_on_a_cpu_asks_for_dry(capsys):
    if torch.cuda.is_available(): pytest.skip("this machine has a GPU")
    assert gc.main(["--device", "cpu"]) == 2
    assert "--dry" in capsys.readouterr().err
