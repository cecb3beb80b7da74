"""reid_nb.uga against hand-computed values, brute-force references and autograd; a resumed run equals an
uninterrupted one; a smoke run of the experiment notebook."""
import itertools
from dataclasses import replace
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import reid_nb.uga as uga
from reid_nb.core import BadInputError
from reid_nb.runs import load_handoff
from reid_nb.uga import (CameraHeads, UGAConfig, UGAData, adaptive_lambda, cross_view_graph, cvg_loss,
                         edge_precision, graph_weights, intra_loss, memory_log_probs, node_gradient, result_rows,
                         sweep_points, tracklet_centroids, tracklet_pids, tracklet_rule_rows, uga_config,
                         update_nodes, what_the_numbers_say)


def _unit(*angles_deg):
    a = torch.tensor(angles_deg, dtype=torch.float64) * math.pi / 180
    return torch.stack([a.cos(), a.sin()], 1)


# ---------------------------------------------------------------- the cross-view graph
def test_graph_hand_built_mutual_neighbours_threshold_diagonal():
    # camera 0: 0°, 40°, 120°; camera 1: 5°, 50°, 300°
    M = _unit(0, 40, 120, 5, 50, 300); cam = torch.tensor([0, 0, 0, 1, 1, 1])
    E = cross_view_graph(M, cam, k=1, lam=0.5)
    # K=1: 0°<->5° mutual (cos 5°), 40°<->50° mutual (cos 10°); 120°'s nearest is 50° but 50°'s nearest is 40°;
    # 300°'s nearest in camera 0 is 0°, whose nearest is 5°: not mutual.
    want = torch.eye(6, dtype=torch.float64)
    want[0, 3] = want[3, 0] = math.cos(math.radians(5)); want[1, 4] = want[4, 1] = math.cos(math.radians(10))
    assert torch.allclose(E, want)
    # threshold: λ between cos 10° and cos 5° keeps only the 5° edge; λ is strict (>)
    E = cross_view_graph(M, cam, k=1, lam=math.cos(math.radians(10)))
    assert E[1, 4] == 0 and E[0, 3] > 0
    # same-camera pairs never get an edge, even when identical
    E = cross_view_graph(_unit(0, 0, 90), torch.tensor([0, 0, 1]), k=3, lam=-1.0)
    assert E[0, 1] == 0 and torch.equal(torch.diag(E), torch.ones(3, dtype=torch.float64))


def _graph_brute(M, cam, k, lam):
    T = len(M); S = M @ M.T; E = np.eye(T)
    for a, b in itertools.product(range(T), range(T)):
        if cam[a] == cam[b]: continue
        in_b = [j for j in range(T) if cam[j] == cam[b]]; in_a = [i for i in range(T) if cam[i] == cam[a]]
        knn_a = sorted(in_b, key=lambda j: -S[a, j])[:min(k, len(in_b))]  # a's K nearest in b's camera
        knn_b = sorted(in_a, key=lambda i: -S[b, i])[:min(k, len(in_a))]
        if b in knn_a and a in knn_b and S[a, b] > lam: E[a, b] = S[a, b]
    return E


@pytest.mark.parametrize("k,lam", [(1, 0.0), (3, 0.2), (5, -1.0), (10, 0.5)])
def test_graph_matches_brute_force(k, lam):
    g = torch.Generator().manual_seed(k)
    cam = torch.tensor([0] * 7 + [1] * 4 + [2] * 9 + [3] * 2)
    M = F.normalize(torch.randn(len(cam), 5, generator=g, dtype=torch.float64), dim=1)
    E = cross_view_graph(M, cam, k, lam)
    assert np.allclose(E.numpy(), _graph_brute(M.numpy(), cam.numpy(), k, lam))
    assert torch.equal(E, E.T)


def test_graph_bad_k():
    with pytest.raises(BadInputError, match="k=0"):
        cross_view_graph(_unit(0, 10), torch.tensor([0, 1]), k=0, lam=0.5)


def test_adaptive_lambda_is_quantile_of_same_camera_cosines():
    g = torch.Generator().manual_seed(0)
    M = F.normalize(torch.randn(30, 4, generator=g), dim=1); cam = torch.randint(0, 3, (30,), generator=g)
    S = (M @ M.T).numpy(); c = cam.numpy()
    vals = [S[i, j] for i in range(30) for j in range(i + 1, 30) if c[i] == c[j]]
    for q in (0.5, 0.99, 1.0):
        assert abs(adaptive_lambda(M, cam, q) - np.quantile(vals, q)) < 1e-6
    with pytest.raises(BadInputError, match="two tracklets"):
        adaptive_lambda(M[:2], torch.tensor([0, 1]))


# ---------------------------------------------------------------- centroids
def test_centroids_are_normalised_means_of_normalised_features():
    g = torch.Generator().manual_seed(1)
    feat = torch.randn(20, 3, generator=g) * 5; trk = torch.randint(-1, 4, (20,), generator=g)
    trk[:4] = torch.arange(4)
    M = tracklet_centroids(feat, trk, 4)
    for t in range(4):
        ref = F.normalize(feat[trk == t], dim=1).mean(0)
        assert torch.allclose(M[t], ref / ref.norm(), atol=1e-6)
    with pytest.raises(BadInputError, match="no image"):
        tracklet_centroids(feat, trk, 5)


# ---------------------------------------------------------------- losses
def test_cvg_loss_hand_computed():
    # nodes (1,0), (0,1), (0.6,0.8); image (0.8,0.6) of tracklet 0; edges 0-1 (0.5), 0-2 (0.9); τ = 0.5
    M = torch.tensor([[1., 0], [0, 1], [0.6, 0.8]]); f = torch.tensor([[0.8, 0.6]])
    E = torch.tensor([[1., .5, .9], [.5, 1, 0], [.9, 0, 1]])
    z = np.array([0.8, 0.6, 0.96]) / 0.5; logp = z - np.log(np.exp(z).sum())
    w = np.array([1, .5, .9]) / 2.4
    L = cvg_loss(f, torch.tensor([0]), M, graph_weights(E), tau=0.5)
    assert abs(L.item() - (-(w * logp).sum())) < 1e-6
    L = cvg_loss(f, torch.tensor([0]), M, graph_weights(E, "none"), tau=0.5)
    assert abs(L.item() - (-(np.array([1, .5, .9]) * logp).sum())) < 1e-6
    # the seed's per-camera softmax: cameras {0} and {1, 2}; node 0 alone in its camera has log p = 0
    lp = memory_log_probs(f, M, 0.5, torch.tensor([0, 1, 1]))[0].numpy()
    z12 = z[1:] - np.log(np.exp(z[1:]).sum())
    assert np.allclose(lp, [0.0, *z12], atol=1e-6)
    with pytest.raises(BadInputError, match="cvg_weight_norm"):
        graph_weights(E, "col")


@pytest.mark.parametrize("norm,per_camera", [("row", False), ("none", False), ("row", True), ("none", True)])
def test_node_gradient_equals_autograd_and_step_lowers_loss(norm, per_camera):
    g = torch.Generator().manual_seed(3)
    cam = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2]); pc = cam if per_camera else None
    M = F.normalize(torch.randn(8, 6, generator=g, dtype=torch.float64), dim=1)
    f = F.normalize(torch.randn(10, 6, generator=g, dtype=torch.float64), dim=1); a = torch.randint(0, 8, (10,), generator=g)
    W = graph_weights(cross_view_graph(M, cam, 2, -1.0), norm)
    Mg = M.clone().requires_grad_(True); cvg_loss(f, a, Mg, W, 0.1, pc).backward()
    grad = node_gradient(f, a, M, W, 0.1, pc)
    assert torch.allclose(grad, -0.1 * Mg.grad, atol=1e-10)
    before = cvg_loss(f, a, M, W, 0.1, pc).item()
    update_nodes(M, grad, eta=0.02)
    assert torch.allclose(M.norm(dim=1), torch.ones(8, dtype=torch.float64))
    assert cvg_loss(f, a, M, W, 0.1, pc).item() < before


def test_row_normalised_node_gradient_is_w_minus_p():
    """The spec's formula g_b = mean_x (w_ab - p_b) f(x) for the global softmax with row-normalised weights."""
    g = torch.Generator().manual_seed(4)
    M = F.normalize(torch.randn(5, 3, generator=g), dim=1); f = F.normalize(torch.randn(4, 3, generator=g), dim=1)
    a = torch.tensor([0, 2, 2, 4]); W = graph_weights(cross_view_graph(M, torch.tensor([0, 0, 1, 1, 2]), 1, -1.0))
    p = (f @ M.T / 0.05).softmax(1)
    ref = sum((W[a[x]] - p[x])[:, None] * f[x][None] for x in range(4)) / 4
    assert torch.allclose(node_gradient(f, a, M, W, 0.05), ref, atol=1e-5)


def test_intra_loss_is_per_camera_softmax():
    torch.manual_seed(0)
    heads = CameraHeads(6, [3, 2, 1]).eval()
    feat = torch.randn(7, 6); cam = torch.tensor([0, 1, 0, 2, 1, 0, 2]); local = torch.tensor([2, 1, 0, 0, 0, 1, 0])
    with torch.no_grad():
        for fc in heads.fcs: fc.weight.normal_()
    ref = 0.0
    for x in range(7):  # each image: softmax over its own camera's tracklets only
        c = int(cam[x]); z = heads.fcs[c](heads.bns[c](feat[x:x + 1]))[0]
        ref += -(z.log_softmax(0)[local[x]]).item()
    assert abs(intra_loss(heads, feat, cam, local).item() - ref / 7) < 1e-5


def test_each_camera_batchnorm_sees_only_its_camera():
    torch.manual_seed(0)
    heads = CameraHeads(5, [2, 2, 2]).train()
    feat = torch.randn(12, 5); cam = torch.tensor([0, 1, 2] * 4); local = torch.tensor([0, 1] * 6)
    feat[cam == 1] += 10.0  # camera 1 is far off: it must not leak into the other cameras' statistics
    intra_loss(heads, feat, cam, local)
    for c in range(3):
        x = feat[cam == c]
        assert torch.allclose(heads.bns[c].running_mean, 0.1 * x.mean(0), atol=1e-6)
        assert torch.allclose(heads.bns[c].running_var, 0.9 + 0.1 * x.var(0, unbiased=True), atol=1e-5)
    with pytest.raises(BadInputError, match="camera 2 has one image"):
        intra_loss(heads, feat[:5], cam[:5], local[:5])


# ---------------------------------------------------------------- diagnostics
def test_edge_precision_brute_force():
    rng = np.random.default_rng(0)
    T = 25; cam = rng.integers(0, 3, T); pid = rng.integers(1, 6, T)
    E = torch.tensor(rng.random((T, T)) * (rng.random((T, T)) < 0.3)); E = torch.maximum(E, E.T); E.fill_diagonal_(1)
    st = edge_precision(E, cam, pid)
    pairs = [(a, b) for a in range(T) for b in range(a + 1, T) if cam[a] != cam[b]]
    edges = [(a, b) for a, b in pairs if E[a, b] > 0]; pos = [(a, b) for a, b in pairs if pid[a] == pid[b]]
    tp = [(a, b) for a, b in edges if pid[a] == pid[b]]
    assert st["edges"] == len(edges) and st["precision"] == len(tp) / len(edges) and st["recall"] == len(tp) / len(pos)


def test_tracklet_pids_majority():
    assert tracklet_pids(np.array([1, 1, 1, 0, -1, 2, 2]), np.array([3, 5, 5, 8, 9, 4, 4]), 3).tolist() == [8, 5, 4]


# ---------------------------------------------------------------- training: resume equals an uninterrupted run
def _tiny_data():
    from reid_nb.sampling import ImageBank
    from reid_nb.sstt import assume_tracklets
    g = torch.Generator().manual_seed(0)
    pid = np.repeat([1, 2, 3, 4], 6); cam = np.tile(np.repeat([0, 1], 3), 4)
    base = torch.randint(0, 255, (4, 3, 1, 1), generator=g)
    img = base[pid - 1] + torch.randint(-25, 25, (24, 3, 16, 8), generator=g) + 30 * torch.tensor(cam)[:, None, None, None]
    lab = assume_tracklets(pid, cam)
    return UGAData(ImageBank(img.clamp(0, 255).to(torch.uint8)), lab, cam, tracklet_pids(lab.tracklet, pid, lab.n_tracklets))


def _fresh():
    from reid_nb.models import build_backbone
    torch.manual_seed(0)
    return build_backbone("small", widths=(4, 8), depth=1)


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, monkeypatch):
    data = _tiny_data()
    cfg = UGAConfig(ids_per_cam=2, num_instances=2, stage1_epochs=2, stage2_epochs=2, iters_per_epoch=2, k=1, pad=1)
    bb = _fresh(); heads, h1 = uga.train_stage1(bb, data, cfg, "cpu", ckpt=tmp_path / "a1.pt")
    h2 = uga.train_stage2(bb, heads, data, cfg, "cpu", ckpt=tmp_path / "a2.pt")
    ref = {k: v.clone() for k, v in bb.state_dict().items()}

    real = uga.stage2_epoch
    def crash(state, *a):  # stop the run during its second stage-2 epoch
        if state["sched"].last_epoch == 1: raise KeyboardInterrupt
        return real(state, *a)
    bb2 = _fresh(); heads2, _ = uga.train_stage1(bb2, data, cfg, "cpu", ckpt=tmp_path / "b1.pt")
    monkeypatch.setattr(uga, "stage2_epoch", crash)
    with pytest.raises(KeyboardInterrupt):
        uga.train_stage2(bb2, heads2, data, cfg, "cpu", ckpt=tmp_path / "b2.pt")
    monkeypatch.setattr(uga, "stage2_epoch", real)
    bb3 = _fresh(); heads3, _ = uga.train_stage1(bb3, data, cfg, "cpu", ckpt=tmp_path / "b1.pt")  # restored, 0 epochs
    h2b = uga.train_stage2(bb3, heads3, data, cfg, "cpu", ckpt=tmp_path / "b2.pt")
    assert [h["loss"] for h in h2b] == [h["loss"] for h in h2]
    for k, v in bb3.state_dict().items(): assert torch.equal(v, ref[k]), k



def test_bf16_training_runs_both_stages_with_float32_memory():
    """Mixed precision through both stages (heads, graph loss and node updates under autocast): finite, moving."""
    data = _tiny_data()
    cfg = UGAConfig(ids_per_cam=2, num_instances=2, stage1_epochs=1, stage2_epochs=1, iters_per_epoch=3, k=1, pad=1,
                    amp="bf16")
    bb = _fresh()
    w0 = [p.detach().clone() for p in bb.parameters()]
    heads, h1 = uga.train_stage1(bb, data, cfg, "cpu")
    h2 = uga.train_stage2(bb, heads, data, cfg, "cpu")
    assert np.isfinite(h1[0]["loss"]) and np.isfinite(h2[0]["loss"]) and h2[0]["n_steps"] == 3
    assert any(not torch.equal(a, b) for a, b in zip(w0, bb.parameters()))

def test_stage2_rejects_unknown_options():
    data = _tiny_data()
    with pytest.raises(BadInputError, match="softmax"):
        uga.train_stage2(_fresh(), CameraHeads(8, data.labels.n_per_cam), data, UGAConfig(softmax="camera"), "cpu")


# ---------------------------------------------------------------- the experiment notebook, smoke profile
@pytest.mark.slow
def test_experiment_notebook_smoke(tmp_path, monkeypatch):
    import csv
    from reid_nb.core import project_root
    from reid_nb.runner import run_notebook
    monkeypatch.setenv("REID_NB_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("REID_NB_PROGRESS", "0")
    out = run_notebook(project_root() / "nbs" / "experiments" / "uga.ipynb", profile="smoke", output=tmp_path / "run.ipynb")
    assert out.exists()
    res = out.parent / "uga"  # inside the run's result set
    read = lambda name: list(csv.DictReader(open(res / f"{name}-tiny-s0-smoke-s0.csv")))
    rows = read("results")
    assert [(r["method"], r["tracklets"], r["feature"]) for r in rows] == [("floor", "", "pooled"),
        ("intra-camera only (stage 1)", "sstt", "camera_bn"), ("full UGA (stage 1 + 2)", "sstt", "camera_bn"),
        ("intra-camera only (stage 1)", "sstt", "pooled"), ("full UGA (stage 1 + 2)", "sstt", "pooled"),
        ("intra-camera only (stage 1)", "assume", "camera_bn"), ("full UGA (stage 1 + 2)", "assume", "camera_bn"),
        ("UGA, oracle cross-view graph (oracle rung)", "sstt", "camera_bn"), ("ceiling", "", "pooled")]
    for r in rows:
        assert all(0 <= float(r[m]) <= 100 for m in ("R1", "R5", "R10", "mAP", "mINP"))
        assert float(r["R1"]) <= float(r["R5"]) <= float(r["R10"])
    lo, hi = float(rows[0]["mAP"]), float(rows[-1]["mAP"])
    assert abs(float(rows[2]["gap closed %"]) - 100 * (float(rows[2]["mAP"]) - lo) / (hi - lo)) < 1e-6
    assert [r["paper R1"] for r in rows[1:7]] == ["n/a: the paper's ablation was not retrieved", "87.2"] * 3  # Market's
    assert abs(float(rows[2]["mAP - paper"]) - (float(rows[2]["mAP"]) - 70.3)) < 1e-9
    assert [r["main"] for r in rows] == ["", "yes", "yes", "", "", "", "", "", ""]
    labels = read("tracklets")
    assert labels[-1]["rule"] == "assume" and float(labels[-1]["collision_rate"]) == 0.0
    assert sum(r["used"] == "yes" for r in labels) == 1
    assert len(read("graph_sweep")) == 2 * 4 * 6 and len(read("sweep")) == 4  # main, λ 0.7, η 1.0, nodes once
    assert (res / "uga-tiny-s0-smoke-s0.png").stat().st_size > 0
    assert list((res / "checkpoints" / "tiny-s0-smoke-s0").glob("sstt-stage1-*.pt"))
    h = load_handoff(out.parent, "uga", "tiny-s0-smoke-s0")  # what claims and compare read
    assert {"intra|sstt|camera_bn", "full|sstt|camera_bn", "oracle|sstt|camera_bn"} <= set(h.ap)
    assert abs(100 * np.nanmean(h.ap["full|sstt|camera_bn"]) - float(rows[2]["mAP"])) < 1e-6
    assert list(h.rows) == ["full UGA"] and h.rows["full UGA"].metric == "cosine"
    assert h.settings["tracklets"] == "sstt" and h.settings["config"]["feature"] == "camera_bn"
    row, cost = h.rows["full UGA"], h.rows["full UGA"].cost
    assert row.query.shape[1] == row.gallery.shape[1] == row.train.shape[1] and not cost.read_back
    assert cost.images > 0 and cost.images % UGAConfig().ids_per_cam == 0


def test_node_refresh_once_keeps_nodes_between_epochs(monkeypatch):
    """'once': centroids are computed at the first stage-2 epoch only; with η = 0 the nodes never move."""
    data = _tiny_data()
    cfg = UGAConfig(ids_per_cam=2, num_instances=2, stage1_epochs=1, stage2_epochs=3, iters_per_epoch=2, k=1, pad=1,
                    eta=0.0, node_refresh="once")
    calls = []
    real = uga.uga_features
    monkeypatch.setattr(uga, "uga_features", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    bb = _fresh(); heads, _ = uga.train_stage1(bb, data, cfg, "cpu")
    M0 = uga.build_graph(bb, heads, data, cfg, "cpu")[0]
    calls.clear()
    state = uga._stage_state(bb, heads, cfg, 2, 0); state["memory"] = torch.zeros_like(M0)
    for _ in range(3):
        uga.stage2_epoch(state, data, cfg, "cpu")
        if _ == 0: assert torch.allclose(state["memory"], M0, atol=1e-6)  # computed once, from stage-1 weights
    assert len(calls) == 1 and torch.allclose(state["memory"], M0, atol=1e-6)
    cfg2 = replace(cfg, node_refresh="epoch"); calls.clear()
    for _ in range(2): uga.stage2_epoch(state, data, cfg2, "cpu")
    assert len(calls) == 2


# ---------------------------------------------------------------- what the experiment notebook reports
def test_uga_data_batch_size_counts_cameras_with_labelled_images():
    from types import SimpleNamespace
    from reid_nb.sstt import assume_tracklets
    pid, cam = np.array([1, 1, 2, 2, 3]), np.array([0, 1, 0, 1, 2])
    lab = assume_tracklets(pid, cam)
    lab.tracklet[cam == 2] = -1  # camera 2 holds no labelled image
    data = UGAData.from_records(None, lab, SimpleNamespace(pid=pid, cam=cam))
    cfg = UGAConfig(ids_per_cam=2, num_instances=3)
    assert data.batch_size(cfg) == 2 * 2 * 3 and data.n_iters(cfg) == 1  # 4 labelled images: one batch of 12
    assert (data.node_pid == tracklet_pids(lab.tracklet, pid, lab.n_tracklets)).all()


def test_uga_config_takes_the_profile_and_refuses_an_unknown_feature():
    S = dict(arch="small", height=64, width=32, lr=0.02, pad=3, stage1_epochs=3, stage1_decay_at=2, stage2_epochs=2,
             stage2_decay_at=1, iters_per_epoch=None)
    cfg = uga_config(S, k=5, lam=None, feature="camera_bn")
    assert (cfg.head_lr, cfg.lr, cfg.k, cfg.lam, cfg.stage2_epochs) == (0.2, 0.02, 5, None, 2)
    with pytest.raises(BadInputError, match="feature"):
        uga_config(S, feature="colour")


def test_sweep_points_skip_the_main_values_and_shorten_stage2():
    cfg = UGAConfig(k=3, lam=0.5, eta=0.5, node_refresh="once", stage2_epochs=30)
    pts = sweep_points(cfg, 4, ks=(1, 3, 5), lams=(0.5, None), etas=(0.1, 0.5))
    assert [n for n, _ in pts] == ["main", "K1", "K5", "lamNone", "eta0.1", "refresh-epoch"]
    assert all(c.stage2_epochs == c.stage2_decay_at == 4 for _, c in pts)
    assert [c.k for n, c in pts if n.startswith("K")] == [1, 5] and pts[3][1].lam is None


def test_tracklet_rule_rows_without_tracker_ids_measure_the_assumption():
    from types import SimpleNamespace
    recs = SimpleNamespace(pid=np.array([1, 1, 1, 2]), cam=np.array([0, 0, 1, 1]), vcam=np.array([0, 0, 1, 1]),
                           tracklet=np.full(4, -1), t_sec=np.full(4, np.nan))
    rows = tracklet_rule_rows(recs, "assume", 5.0, 2)
    assert len(rows) == 1 and rows[0]["rule"] == "assume" and rows[0]["used"] == "yes"
    assert rows[0]["collision_rate"] == 0.0 and rows[0]["coverage"] == 100.0  # one label per person and camera


def test_result_rows_mark_the_main_setting_but_not_the_oracle():
    m = dict(R1=50.0, R5=60.0, R10=70.0, mAP=30.0, mINP=5.0)
    runs = {("sstt", "camera_bn"): m, ("sstt", "pooled"): m}
    rows = result_rows(runs, runs, m, ("sstt", "camera_bn"), "synth")
    assert [(r["feature"], r["main"]) for r in rows] == [("camera_bn", "yes")] * 2 + [("pooled", "")] * 2 + \
        [("camera_bn", "")]
    assert rows[1]["paper mAP"] == 70.3 and rows[1]["mAP - paper"] == 30.0 - 70.3  # Market's, for reference
    assert rows[0]["paper R1"].startswith("n/a")


def test_what_the_numbers_say_names_only_the_runs_made():
    m = lambda r1, mAP: dict(R1=r1, mAP=mAP)
    hist = [{"precision": 0.5, "recall": 0.25, "edges": 4}, {"precision": 0.75, "recall": 0.5, "edges": 6}]
    label_rows = [{"used": "yes", "collision_rate": 2.0, "coverage": 90.0}]
    inter = {"verdict": "reproduced", "ours: mAP A - B [95 % interval]": "+4.0 [1.0, 7.0]"}
    run = dict(where="w", seconds=3, mode="sstt", feature="pooled", n_tracklets=9, sweep_epochs=1, synth=True)
    key = ("sstt", "pooled")
    say = what_the_numbers_say(run, UGAConfig(), {key: m(10, 20)}, {key: m(12, 24)}, {key: hist}, label_rows, [], inter)
    assert "R1 10.0 → 12.0 (+2.0), mAP 20.0 → 24.0 (+4.0)" in say and "**reproduced**" in say
    assert "edge precision 50.0 % (recall 25.0 %) at the first" in say and "75.0 % (recall 50.0 %, 6 edges)" in say
    assert "other feature" not in say and "assumption instead" not in say and "Sweep" not in say
    assert "synthetic-world numbers" in say
    both = {key: m(12, 24), ("sstt", "camera_bn"): m(1, 2), ("assume", "pooled"): m(3, 4)}
    say = what_the_numbers_say({**run, "synth": False}, UGAConfig(), both, both, {key: hist}, label_rows,
                               [{"K": 1, "lambda": 0.7, "node_refresh": "epoch", "mAP": 9.0, "precision": 1.0,
                                 "recall": 2.0}], inter)
    assert "other feature (`camera_bn`)" in say and "assumption instead" in say and "K = 1, λ = 0.7" in say
    assert "synthetic-world" not in say
