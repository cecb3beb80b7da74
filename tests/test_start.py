"""reid_nb.start: budgets and settings, the supervised recipe, the cached starting point, floor / ceiling helpers."""
import math

import numpy as np
import pytest
import torch

from reid_nb import start
from reid_nb.core import BadInputError
from reid_nb.models import build_backbone
from reid_nb.data import open_dataset
from reid_nb.start import (Budget, bound_row, dense_identities, closed_gap, net_settings, override_settings,
                           starting_point, warmup_cosine)


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("REID_NB_DATA", str(tmp_path))
    return tmp_path


def test_budget_counts_images():
    assert Budget(epochs=3, iters=7, batch=5).images == 105


def test_override_settings_changes_only_known_names_and_keeps_types():
    base = {"epochs": 10, "lr": 0.03, "widths": (16, 32), "arch": "small"}
    assert override_settings(base, {"lr": 1, "widths": [8, 8]}) == {"epochs": 10, "lr": 1.0, "widths": (8, 8), "arch": "small"}
    assert base["lr"] == 0.03  # the profile's dict is not changed
    with pytest.raises(BadInputError, match=r"unknown setting\(s\) epoch; valid: epochs, lr, widths, arch"):
        override_settings(base, {"epoch": 3})
    with pytest.raises(BadInputError, match=r"settings\['arch'\] = 3: expected a str"):
        override_settings(base, {"arch": 3})
    with pytest.raises(BadInputError, match="expected a int"):
        override_settings(base, {"epochs": 2.5})


def test_dense_identities_skips_junk_and_distractors():
    y, n = dense_identities(np.array([42, -1, 7, 0, 42, 9]))
    assert y.tolist() == [2, -1, 0, -1, 2, 1] and n == 3
    with pytest.raises(BadInputError, match="1 identities"):
        dense_identities(np.array([5, 5, -1]))


def test_warmup_cosine_follows_the_closed_form():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched, seen = warmup_cosine(opt, total=20, warmup=0.25), []
    for _ in range(20):
        seen.append(opt.param_groups[0]["lr"]); opt.step(); sched.step()
    expected = [2.0 * (i + 1) / 5 if i < 5 else 2.0 * 0.5 * (1 + math.cos(math.pi * (i - 5) / 15)) for i in range(20)]
    np.testing.assert_allclose(seen, expected, rtol=1e-12)


def test_gap_closed_and_bound_rows():
    b = {"floor": {"mAP": 10.0, "R1": 20.0}, "ceiling": {"mAP": 60.0, "R1": 80.0}, "ceiling_images": 1000}
    assert closed_gap(35.0, b) == 50.0 and closed_gap(5.0, b) == -10.0 and closed_gap(50.0, b, "R1") == 50.0
    assert closed_gap(35.0, None) == "n/a: bounds=False"
    assert closed_gap(35.0, {**b, "ceiling": {"mAP": 10.0}}).startswith("n/a: no gap")
    assert bound_row(b, "floor") == {"method": "floor", "mAP": 10.0, "R1": 20.0, "note": start.BOUND_NOTES["floor"]}
    assert "(1,000 images seen)" in bound_row(b, "ceiling")["note"]
    assert bound_row(None, "ceiling")["mAP"] == "n/a: bounds=False"


def test_one_weight_file_loads_at_either_last_stride():
    a = build_backbone("small", last_stride=2).state_dict()
    b = build_backbone("small", last_stride=1).state_dict()
    assert list(a) == list(b) and all(a[k].shape == b[k].shape for k in a)


def test_every_cpu_profile_shares_one_network():
    smoke, default = net_settings("smoke"), net_settings("default")
    assert smoke.pop("amp") is None and default.pop("amp") in (None, "bf16") and smoke == default
    assert net_settings("paper")["arch"] == "resnet50"
    with pytest.raises(BadInputError, match="profile='fast'"):
        net_settings("fast")


def test_starting_point_is_cached_and_keyed_by_its_budget(data_root):
    tiny = Budget(epochs=1, iters=3, batch=16, lr=1e-3)
    p = starting_point("smoke", budget=tiny)
    assert p.parent == data_root / "starts" and p.exists() and not p.with_suffix(".ckpt").exists()
    before = p.stat().st_mtime_ns
    assert starting_point("smoke", budget=tiny) == p and p.stat().st_mtime_ns == before  # read, not retrained
    other = starting_point("smoke", budget=Budget(epochs=1, iters=4, batch=16, lr=1e-3))
    assert other != p
    net = net_settings("smoke")
    loaded = start.new_backbone(net, weights=p).state_dict()
    saved = torch.load(p, weights_only=True)
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    assert starting_point("paper") == "imagenet"


def test_open_dataset_world_parameter(tmp_path, data_root):
    with pytest.raises(BadInputError, match=r"world='.*nowhere'.*world.json"):
        open_dataset("synth", profile="default", world=str(tmp_path / "nowhere"))
    ds = open_dataset("synth", profile="default", world="tiny")  # a preset name overrides the profile's world
    assert ds.root.name == "tiny-s0"
    again = open_dataset("synth", profile="smoke", world=str(ds.root))  # a world folder
    assert again.root == ds.root and len(again.train) == len(ds.train)


def _make_once(path: str, log: str) -> None:
    """What a cached maker does under `cache_lock`: make the file only if it is missing (and log each making)."""
    import time
    from pathlib import Path
    p = Path(path)
    with start.cache_lock(p):
        if not p.exists():
            with open(log, "a") as f: f.write("made\n")
            time.sleep(0.5)  # long enough for the other processes to be waiting on the lock
            p.write_text("done")


def test_cache_lock_makes_a_file_once_across_processes(tmp_path):
    import multiprocessing as mp
    target, log = tmp_path / "bounds.json", tmp_path / "log.txt"
    procs = [mp.get_context("spawn").Process(target=_make_once, args=(str(target), str(log))) for _ in range(3)]
    for p in procs: p.start()
    for p in procs: p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert log.read_text() == "made\n" and target.read_text() == "done"


def _fake_measure(calls):
    """A stand-in for start._measure_bounds (no training): the floor's mAP is the world's seed, weights are fresh."""
    import json
    def measure(ds, banks, net, budget, start_, path, device, seed, gpus=1):
        calls.append(ds.root)
        world_seed = json.loads((ds.root / "world" / "world.json").read_text())["seed"]
        torch.save({"weights": start.new_backbone(net).state_dict(), "seconds": 0.0}, path.with_suffix(".pt"))
        path.write_text(json.dumps({"floor": {"mAP": float(world_seed)}, "ceiling": {"mAP": 50.0},
                                    "ceiling_images": 1}))
    return measure


def test_floor_and_ceiling_follow_the_world_not_its_folder(data_root, monkeypatch, capsys):
    """Issue 26 case 2: a world rebuilt in the same folder with another seed (seeds 0 and 2 of the tiny world have the
    same number of training images) gets its own floor and ceiling; a reused cache is named in one line."""
    calls = []
    monkeypatch.setattr(start, "_measure_bounds", _fake_measure(calls))
    world = data_root / "target"
    ds0 = open_dataset("synth", profile="smoke", seed=0, root=world)
    assert start.floor_and_ceiling(ds0, {}, "smoke", start="imagenet")["floor"]["mAP"] == 0.0 and len(calls) == 1
    ds2 = open_dataset("synth", profile="smoke", seed=2, root=world)  # rebuilt in place
    assert ds2.root == ds0.root and len(ds2.train) == len(ds0.train)
    assert start.floor_and_ceiling(ds2, {}, "smoke", start="imagenet")["floor"]["mAP"] == 2.0 and len(calls) == 2
    capsys.readouterr()
    assert start.floor_and_ceiling(ds2, {}, "smoke", start="imagenet")["floor"]["mAP"] == 2.0 and len(calls) == 2
    out = capsys.readouterr().out
    assert "reusing floor/ceiling cache" in out and str(data_root / "starts" / "bounds-smoke-") in out
    assert start.cached_bounds(ds2, "smoke", start="imagenet")[0]["floor"]["mAP"] == 2.0


def test_a_start_is_keyed_by_its_source_worlds_configuration(monkeypatch):
    """The source world is rebuilt when its preset's configuration changes: so is the starting point."""
    from reid_nb import synth
    net, budget = net_settings("smoke"), start.START_BUDGETS["smoke"]
    key = start._start_key("smoke", net, budget)
    monkeypatch.setitem(synth.PRESETS, "tiny", {**synth.PRESETS["tiny"], "n_train_ids": 13})
    assert start._start_key("smoke", net, budget) != key


def test_the_precision_is_the_profiles_on_this_cpu_and_keys_the_start(monkeypatch):
    """bf16 autocast only for the default profile on a CPU with bf16 instructions (REID_NB_CPU_BF16=0 keeps fp32); a
    start trained in the other arithmetic is another file."""
    from reid_nb import core
    for has in (True, False):
        monkeypatch.setattr(core, "cpu_bf16", lambda has=has: has)
        assert net_settings("default")["amp"] == ("bf16" if has else None) and net_settings("smoke")["amp"] is None
    monkeypatch.setattr(core, "cpu_bf16", lambda: True)
    key = lambda: start._start_key("default", net_settings("default"), start.START_BUDGETS["default"])
    bf16 = key()
    monkeypatch.setenv(core.CPU_BF16_ENV, "0")
    assert net_settings("default")["amp"] is None and key() != bf16


def test_a_bf16_step_computes_the_fp32_loss_to_bf16_precision():
    """The supervised recipe under bf16 autocast: its first loss is the fp32 one within bf16's rounding, and finite."""
    from reid_nb.sampling import ImageBank
    g = torch.Generator().manual_seed(0)
    pids, cams = np.repeat(np.arange(1, 5), 8), np.tile([0, 1], 16)
    colours = torch.tensor([[200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30]])
    img = (colours[pids - 1][:, :, None, None] + torch.randint(-20, 20, (32, 3, 16, 8), generator=g)).clamp(0, 255)
    bank, budget = ImageBank(img.to(torch.uint8)), Budget(epochs=1, iters=1, batch=16, lr=1e-3)
    loss = {}
    for amp in (None, "bf16"):
        torch.manual_seed(0)
        net = build_backbone("small", widths=(8, 16), depth=1)
        hist = start.train_supervised(net, bank, pids, cams, budget, dict(pad=1, amp=amp), "cpu", 0)
        loss[amp] = hist[0]["loss"]
    assert math.isfinite(loss["bf16"]) and loss["bf16"] == pytest.approx(loss[None], rel=0.03)
