"""Tests of reid_nb.train: exact resume, checkpoint checks, and the SGD inner loop."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reid_nb.core import BadInputError
from reid_nb.models import BNNeck, build_backbone
from reid_nb.sampling import Augment, ImageBank, identity_batches
from reid_nb.train import epoch_line, load_checkpoint, run_epochs, save_checkpoint, sgd_steps, speed_settings


def make_run(seed: int):
    """A tiny but complete re-ID training: image bank, augmentation, CALR sampler, small net, memory, SGD + StepLR."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(0)
    bank = ImageBank(torch.randint(0, 256, (24, 3, 32, 16), dtype=torch.uint8, generator=g))
    cams, labels = np.arange(24) % 3, np.arange(24) // 4
    model = torch.nn.Sequential(build_backbone("small", widths=(4, 8), pooling="gem"), BNNeck(8))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    state = {"model": model, "opt": opt, "sched": torch.optim.lr_scheduler.StepLR(opt, 2, 0.5),
             "aug": Augment(generator=seed), "rng": np.random.default_rng(seed),
             "labels": labels.copy(), "memory": torch.zeros(6, 8)}

    def epoch_fn(epoch, st):
        with torch.no_grad():  # "relabel": memory = class centroids; labels drift with a random draw
            model.eval(); f = F.normalize(model(bank.batch(np.arange(24))), dim=1)
            st["memory"] = F.normalize(torch.stack([f[st["labels"] == k].mean(0) for k in range(6)]), dim=1)
        model.train()
        step = lambda idx: F.cross_entropy(F.normalize(model(bank.batch(idx, st["aug"])), dim=1) @ st["memory"].T / 0.1,
                                           torch.as_tensor(st["labels"][idx]) + 0 * torch.randint(0, 2, (len(idx),)))
        m = sgd_steps(3, identity_batches(st["labels"], cams, 8, 2, st["rng"], n_batches=3), step, st["opt"])
        st["sched"].step()
        return {**m, "lr": st["opt"].param_groups[0]["lr"], "draw": float(torch.rand(1)), "np": st["rng"].random()}
    return state, epoch_fn


def _weights(state):
    return [t.clone() for t in state["model"].state_dict().values()]


def test_stop_after_epoch_2_and_resume_is_bit_identical(tmp_path):
    ck = tmp_path / "run" / "ckpt.pt"
    sA, fA = make_run(0); hA = run_epochs(4, fA, sA)
    sB, fB = make_run(0)

    def crash(e, st):
        if e == 2: raise KeyboardInterrupt
        return fB(e, st)
    with pytest.raises(KeyboardInterrupt):
        run_epochs(4, crash, sB, ck)
    assert len(torch.load(ck, weights_only=False)["history"]) == 2
    sC, fC = make_run(7)  # a fresh start with other weights, generators and global seed
    torch.manual_seed(99); np.random.seed(5)
    hC = run_epochs(4, fC, sC, ck)
    assert hC == hA and len(hA) == 4 and hA[-1]["lr"] == 0.0125
    assert all(torch.equal(a, b) for a, b in zip(_weights(sA), _weights(sC)))
    assert torch.equal(sA["memory"], sC["memory"])
    for k in ("exp_avg", "momentum_buffer"):
        bufs = [(sA["opt"].state[p].get(k), sC["opt"].state[q].get(k))
                for p, q in zip(sA["model"].parameters(), sC["model"].parameters())]
        assert all(a is None and b is None or torch.equal(a, b) for a, b in bufs)
    assert [p.name for p in ck.parent.iterdir()] == ["ckpt.pt"]  # atomic writes leave no temporary files


def test_two_calls_equal_one_call(tmp_path):
    sA, fA = make_run(1); hA = run_epochs(3, fA, sA)
    sB, fB = make_run(1); run_epochs(1, fB, sB, tmp_path / "c.pt")
    sC, fC = make_run(2); hC = run_epochs(3, fC, sC, tmp_path / "c.pt")
    assert hA == hC and all(torch.equal(a, b) for a, b in zip(_weights(sA), _weights(sC)))


def test_finished_run_returns_history_without_training(tmp_path):
    calls = []
    state = {"x": 0}
    def fn(e, st): calls.append(e); st["x"] += 1; return {"x": st["x"]}
    h = run_epochs(3, fn, state, tmp_path / "c.pt")
    h2 = run_epochs(3, lambda e, st: pytest.fail("trained again"), {"x": 0}, tmp_path / "c.pt")
    assert h == h2 == [{"epoch": 0, "x": 1}, {"epoch": 1, "x": 2}, {"epoch": 2, "x": 3}] and calls == [0, 1, 2]


def test_config_and_state_mismatch_are_refused(tmp_path):
    ck = tmp_path / "c.pt"
    run_epochs(1, lambda e, st: {}, {"a": 1}, ck, config={"lr": 0.1})
    with pytest.raises(BadInputError, match="config hash"):
        run_epochs(2, lambda e, st: {}, {"a": 1}, ck, config={"lr": 0.2})
    with pytest.raises(BadInputError, match="state names differ"):
        run_epochs(2, lambda e, st: {}, {"b": 1}, ck, config={"lr": 0.1})
    assert run_epochs(2, lambda e, st: {"ok": 1}, {"a": 1}, ck, config={"lr": 0.1})[-1] == {"epoch": 1, "ok": 1}
    (tmp_path / "other.pt").write_bytes(b"")
    torch.save({"w": 1}, tmp_path / "other.pt")
    with pytest.raises(BadInputError, match="not a reid-nb training checkpoint"):
        run_epochs(1, lambda e, st: {}, {"a": 1}, tmp_path / "other.pt")


def test_unsupported_state_is_refused_before_training():
    with pytest.raises(BadInputError, match="cannot checkpoint a function"):
        run_epochs(1, lambda e, st: pytest.fail("ran"), {"f": lambda: 1})


def test_state_entries_restored_in_place_or_replaced(tmp_path):
    mem, labels, g = torch.zeros(3), np.zeros(4, int), torch.Generator().manual_seed(3)
    st = {"mem": mem, "labels": labels, "g": g, "grow": torch.zeros(2), "cfg": {"k": [1, 2]}}
    save_checkpoint(tmp_path / "c.pt", st, [])
    expected = torch.rand(2, generator=g)
    mem += 1; labels += 1; st["grow"] = torch.ones(5); st["cfg"] = None
    load_checkpoint(tmp_path / "c.pt", st)
    assert st["mem"] is mem and mem.sum() == 0 and st["labels"] is labels and labels.sum() == 0
    assert torch.equal(torch.rand(2, generator=g), expected)
    assert st["grow"].shape == (2,) and st["cfg"] == {"k": [1, 2]}


def test_sgd_steps_skips_and_counts_non_finite_losses():
    w = torch.nn.Parameter(torch.ones(1)); opt = torch.optim.SGD([w], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0)
    losses = [2.0, float("nan"), 4.0, float("inf")]
    def step(i):
        loss = (w * losses[i]).sum()
        return loss, {"half": loss.detach() / 2}
    with pytest.warns(UserWarning, match="skipped 2 of 4"):
        m = sgd_steps(4, range(4), step, opt, sched)
    assert m == pytest.approx({"loss": (2 + 0.8 * 4) / 2, "half": (1 + 0.8 * 2) / 2, "n_steps": 2, "n_skipped": 2,
                               "n_zero_loss": 0})
    assert torch.allclose(w, torch.tensor([1 - 0.1 * 2 - 0.1 * 4]))  # only the finite steps moved w
    assert sched.last_epoch == 4


def test_sgd_steps_plain_loss_and_running_out():
    w = torch.nn.Parameter(torch.zeros(2)); opt = torch.optim.SGD([w], lr=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = sgd_steps(3, iter([0, 1, 0]), lambda i: ((w - torch.tensor([1.0, 2.0])) ** 2).sum(), opt)
    assert m["n_steps"] == 3 and m["n_skipped"] == 0 and torch.allclose(w, torch.tensor([1.0, 2.0]))
    with pytest.raises(BadInputError, match="ran out after 2 of 5"):
        sgd_steps(5, [0, 1], lambda i: w.sum(), opt)


def test_fp32_path_is_the_plain_loop():
    """amp=None runs exactly zero_grad, forward, backward, step: bit-identical to a hand-written loop."""
    def run(manual):
        torch.manual_seed(0)
        net = build_backbone("small", widths=(4, 8), depth=1)
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        x = torch.randn(6, 3, 16, 8, generator=torch.Generator().manual_seed(1))
        step = lambda i: net(x[i::2]).pow(2).mean()
        if not manual:
            return sgd_steps(4, [0, 1, 0, 1], step, opt)["loss"], [p.detach().clone() for p in net.parameters()]
        losses = []
        for i in [0, 1, 0, 1]:
            opt.zero_grad(set_to_none=True)
            loss = step(i)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        return float(np.mean(losses)), [p.detach().clone() for p in net.parameters()]
    (la, wa), (lb, wb) = run(False), run(True)
    assert la == lb and all(torch.equal(a, b) for a, b in zip(wa, wb))


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_step_decreases_the_loss(amp):
    torch.manual_seed(0)
    net = build_backbone("small", widths=(4, 8), depth=1)
    head = torch.nn.Linear(8, 3)
    opt = torch.optim.SGD([*net.parameters(), *head.parameters()], lr=0.05, momentum=0.9)
    x = torch.randn(12, 3, 16, 8, generator=torch.Generator().manual_seed(1))
    y = torch.arange(12) % 3
    x = x + y[:, None, None, None].float()  # a learnable signal
    step = lambda i: F.cross_entropy(head(net(x)), y)
    with torch.no_grad(): before = float(step(0))
    m = sgd_steps(30, range(30), step, opt, amp=amp)
    with torch.no_grad(): after = float(step(0))
    assert m["n_steps"] == 30 and after < 0.7 * before


def test_bad_amp_mode_is_refused():
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=0.1)
    with pytest.raises(BadInputError, match="amp='half'"):
        sgd_steps(1, [0], lambda i: w.sum(), opt, amp="half")


def test_zero_loss_and_empty_batches_are_counted_and_warned():
    w = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([w], lr=0.1, weight_decay=0.1)
    with pytest.warns(UserWarning, match="exactly 0 in all 4 steps"):
        m = sgd_steps(4, range(4), lambda i: (w * 0).sum(), opt)
    assert m["n_zero_loss"] == 4 and torch.allclose(w, torch.full((2,), 0.99 ** 4))  # weight decay alone moved w
    valid = [1, 0, 0, 0]
    with pytest.warns(UserWarning, match="only 25% of 4 batches held a valid"):
        m = sgd_steps(4, range(4), lambda i: ((w * valid[i]).sum(), {"valid_batches": valid[i]}), opt)
    assert m["valid_batches"] == 0.25 and m["n_zero_loss"] == 3


def test_epoch_lines_printed_unless_switched_off(monkeypatch, capsys):
    w = torch.nn.Parameter(torch.ones(1))
    opt = torch.optim.SGD([w], lr=0.1)
    def fn(e, st): return sgd_steps(2, [np.zeros(5), np.zeros(5)], lambda i: (w ** 2).sum(), opt)
    monkeypatch.delenv("REID_NB_LOG", raising=False)
    h = run_epochs(3, fn, {"w": w})
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split(" |")[0] for ln in lines] == [f"epochs: epoch {k}/3" for k in (1, 2, 3)]
    assert all("img/s" in ln and "s/epoch" in ln for ln in lines) and lines[-1].endswith("ETA 0s")
    assert f"loss {h[0]['loss']:.4g}" in lines[0] and "time" not in h[0]  # timings stay out of the history
    monkeypatch.setenv("REID_NB_LOG", "0")
    run_epochs(1, fn, {"w": w})
    assert capsys.readouterr().out == ""
    run_epochs(1, fn, {"w": w}, verbose=True)
    assert "epoch 1/1" in capsys.readouterr().out


def test_epoch_line_by_hand():
    m = {"epoch": 0, "loss": 2.0, "n_skipped": 3, "n_zero_loss": 0, "other": 5.0}
    assert epoch_line("x", 0, 4, m, 2.0, 7300.0) == "x: epoch 1/4 | loss 2 n_skipped 3 | 2.0 s/epoch | ETA 2h01m"


def test_speed_settings_by_device():
    assert speed_settings("cpu") == {"amp": None, "channels_last": True}  # measured: bf16 slower, channels_last faster
    assert speed_settings(torch.device("cuda:1")) == {"amp": "bf16", "channels_last": True}
    assert speed_settings("cuda", "none") == {"amp": None, "channels_last": True}
    assert speed_settings("cuda", "fp16") == {"amp": "fp16", "channels_last": True}
    with pytest.raises(BadInputError, match="amp='half'"):
        speed_settings("cpu", "half")


def test_check_mode_caps_epochs_iterations_and_extraction_and_estimates_the_full_loop(tmp_path, monkeypatch):
    import json
    from reid_nb.core import CHECK_ENV, CHECK_LOG
    from reid_nb.features import extract_features
    monkeypatch.setenv(CHECK_ENV, str(tmp_path))
    w = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([w], lr=0.1)
    steps = []
    def epoch(e, state):
        return sgd_steps(50, iter(range(10**6)), lambda b: steps.append(b) or (w - 1).pow(2).sum(), opt)
    hist = run_epochs(10, epoch, {"w": w})
    assert len(hist) == 1 and steps == [0, 1]  # one epoch of two iterations
    recs = [json.loads(line) for line in (tmp_path / CHECK_LOG).read_text().splitlines()]
    it, ep = recs
    assert (it["kind"], it["planned"], it["done"], it["depth"]) == ("iteration", 50, 2, 1)
    assert (ep["kind"], ep["planned"], ep["done"], ep["depth"]) == ("epoch", 10, 1, 0)
    assert it["estimate"] == pytest.approx(it["seconds"] * 25)
    assert ep["estimate"] == pytest.approx(10 * (ep["seconds"] + it["estimate"] - it["seconds"]))
    bank = torch.arange(10.0)[:, None].repeat(1, 4)  # "images" whose feature is their index
    class Bank:
        def __len__(self): return 10
        def batch(self, idx, device=None): return bank[torch.as_tensor(idx)]
    f = extract_features(torch.nn.Identity(), Bank(), batch_size=3)  # two batches of 3 run, then repeated
    assert f.shape == (10, 4) and f[:, 0].tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3]
    monkeypatch.delenv(CHECK_ENV)
    assert extract_features(torch.nn.Identity(), Bank(), batch_size=3)[:, 0].tolist() == list(range(10))
