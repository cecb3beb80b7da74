"""Tests of reid_nb.evaluation against plain per-query loops, hand-computed cases and properties."""
import math

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest
import torch

from reid_nb import evaluation
from reid_nb.core import BadInputError
from reid_nb.evaluation import (cluster_metrics, evaluate, evaluate_features, evaluate_loop, plot_cmc, plot_ranked_list,
                                ranked_list)
from reid_nb.features import pairwise_distance


# ---------------------------------------------------------------- reference: one query at a time, written plainly
def random_case(nq, ng, n_ids, n_cams, seed, decimals=None, dtype=np.float64):
    rng = np.random.default_rng(seed)
    q_pids, q_cams = rng.integers(1, n_ids + 1, nq), rng.integers(0, n_cams, nq)
    g_pids, g_cams = rng.integers(-1, n_ids + 1, ng), rng.integers(0, n_cams, ng)  # -1 junk, 0 distractor
    dist = rng.random((nq, ng)) + 0.6 * (q_pids[:, None] != g_pids[None])  # matches tend to be closer
    if decimals is not None:
        dist = np.round(dist, decimals)  # many ties
    return dist.astype(dtype), q_pids, g_pids, q_cams, g_cams


def assert_same(a, b):
    assert a["n_valid"] == b["n_valid"] and a["n_skipped"] == b["n_skipped"]
    for k in ("mAP", "mINP"):
        assert abs(a[k] - b[k]) < 1e-6, (k, a[k], b[k])
    assert np.abs(np.asarray(a["cmc"]) - np.asarray(b["cmc"])).max() < 1e-6


# ---------------------------------------------------------------- agreement with the reference
@pytest.mark.parametrize("ap_mode", ["standard", "trapezoid"])
@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
@pytest.mark.parametrize("decimals,dtype", [(None, np.float64), (1, np.float64), (None, np.float32), (2, np.float32)])
def test_matches_per_query_loop(ap_mode, ties, decimals, dtype):
    case = random_case(40, 300, 80, 4, seed=7, decimals=decimals, dtype=dtype)
    ref = evaluate_loop(*case, ap_mode=ap_mode, ties=ties, max_rank=30)
    got = evaluate(*case, ap_mode=ap_mode, ties=ties, max_rank=30, chunk=1000)  # several blocks of queries
    assert_same(got, ref)
    assert got["n_skipped"] > 0 and 0 < got["mAP"] < 1


def test_ties_bound_and_without_ties_coincide():
    case = random_case(30, 200, 15, 3, seed=1, decimals=1)
    lo, hi = evaluate(*case, ties="pessimistic"), evaluate(*case, ties="optimistic")
    assert lo["mAP"] < hi["mAP"] and lo["mINP"] <= hi["mINP"]
    plain = random_case(30, 200, 15, 3, seed=1)
    assert_same(evaluate(*plain, ties="pessimistic"), evaluate(*plain, ties="optimistic"))


@pytest.mark.parametrize("dense", [0, 10**9])  # 0: gather only the near wrong images; 10**9: sort whole rows
@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
@pytest.mark.parametrize("sep", [3.0, 0.6, 0.2, 0.0])  # easy to random rankings
def test_both_paths_match_reference_at_every_difficulty(monkeypatch, dense, ties, sep):
    rng = np.random.default_rng(11)
    qp, gp = rng.integers(1, 15, 40), rng.integers(-1, 15, 500)
    qc, gc = rng.integers(0, 3, 40), rng.integers(0, 3, 500)
    dist = np.round(rng.random((40, 500)) + sep * (qp[:, None] != gp[None]), 2).astype(np.float32)  # ties too
    monkeypatch.setattr(evaluation, "_DENSE", dense)
    ref = evaluate_loop(dist, qp, gp, qc, gc, ties=ties)
    assert_same(evaluate(dist, qp, gp, qc, gc, ties=ties, chunk=3000), ref)
    if sep == 3.0:
        assert ref["mAP"] == 1.0
    if sep == 0.0:
        assert ref["mAP"] < 0.2


def test_tensor_blocks_take_the_device_path_with_the_same_ranks():
    # a tensor block (what evaluate_features hands over on a GPU) is masked and sorted by torch, not NumPy
    dist, qp, gp, qc, gc = random_case(30, 200, 12, 3, seed=9, decimals=2, dtype=np.float32)
    gal = evaluation._gallery(gp, gc)
    for ties in ("pessimistic", "optimistic"):
        want = evaluation._match_ranks(dist, qp, qc, gal, ties)
        got = evaluation._match_ranks(torch.from_numpy(dist), qp, qc, gal, ties)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]) and want[0].max() > 10


# ---------------------------------------------------------------- hand-computed
HAND = dict(dist=np.array([[0.5, 0.1, 0.05, 0.2, 0.7, 0.3],
                           [0.4, 0.2, 0.1, 0.05, 0.3, 0.6],
                           [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]]),
            q_pids=np.array([1, 2, 3]), g_pids=np.array([1, 2, 1, -1, 1, 0]),
            q_cams=np.array([0, 1, 0]), g_cams=np.array([1, 0, 0, 1, 2, 1]))


def test_hand_example_both_ap_modes():
    # query A: filtered list wrong, wrong, match, match (ranks 3, 4); query B: wrong, match (rank 2); C: no match
    std = evaluate(**HAND)
    assert math.isclose(std["mAP"], ((1 / 3 + 2 / 4) / 2 + 1 / 2) / 2)
    assert math.isclose(std["mINP"], (2 / 4 + 1 / 2) / 2)
    assert std["cmc"][:4].tolist() == [0.0, 0.5, 1.0, 1.0] and len(std["cmc"]) == 50
    assert (std["n_valid"], std["n_skipped"]) == (2, 1) and np.isnan(std["ap"][2])
    trap = evaluate(**HAND, ap_mode="trapezoid")
    a_trap = ((0 + 1 / 3) / 2 + (1 / 3 + 2 / 4) / 2) / 2  # P_0 of the first match's segment is 0/2
    assert math.isclose(trap["mAP"], (a_trap + (0 + 1 / 2) / 2) / 2)


def test_first_rank_match_trapezoid_uses_p0_equal_one():
    # a single match at rank 1: both AP definitions give 1
    r = evaluate(np.array([[0.1, 0.5]]), [4], [4, 5], [0], [1, 1], ap_mode="trapezoid")
    assert r["mAP"] == 1.0 and r["mINP"] == 1.0 and r["cmc"][0] == 1.0


def test_tie_rules_by_hand():
    dist, qp, gp, qc, gc = np.array([[0.2, 0.2, 0.2, 0.9]]), [5], [5, 7, 5, 8], [0], [1, 1, 2, 1]
    pess, opt = evaluate(dist, qp, gp, qc, gc), evaluate(dist, qp, gp, qc, gc, ties="optimistic")
    assert math.isclose(pess["mAP"], (1 / 2 + 2 / 3) / 2) and pess["cmc"][0] == 0  # wrong image first
    assert opt["mAP"] == 1.0 and opt["cmc"][0] == 1


# ---------------------------------------------------------------- properties
def test_gallery_permutation_changes_nothing():
    dist, qp, gp, qc, gc = random_case(25, 150, 10, 3, seed=3, decimals=1)
    perm = np.random.default_rng(0).permutation(150)
    for ties in ("pessimistic", "optimistic"):
        a, b = evaluate(dist, qp, gp, qc, gc, ties=ties), evaluate(dist[:, perm], qp, gp[perm], qc, gc[perm], ties=ties)
        assert_same(a, b)
        assert np.allclose(a["ap"], b["ap"], equal_nan=True)


def test_score_and_torch_inputs():
    dist, qp, gp, qc, gc = random_case(20, 100, 8, 3, seed=4, decimals=2)
    base = evaluate(dist, qp, gp, qc, gc)
    assert_same(evaluate(-dist, qp, gp, qc, gc, score=True), base)
    assert_same(evaluate(torch.tensor(dist), torch.tensor(qp), gp.tolist(), qc, gc), base)
    assert_same(evaluate((dist * 100).astype(np.int64), qp, gp, qc, gc), base)  # integer distances (ranks) work


def test_skipped_queries_are_counted():
    # q0's only match shares its camera (removed), q1 is junk, q2 has a match, q3's identity is absent
    dist = np.array([[0.1, 0.2, 0.3]] * 4)
    r = evaluate(dist, [1, -1, 2, 9], [1, -1, 2], [0, 0, 0, 0], [0, 1, 1])
    assert (r["n_valid"], r["n_skipped"]) == (1, 3) and r["mAP"] == 0.5  # q2: wrong g0, junk g1, match g2
    with pytest.raises(BadInputError, match="no query"):
        evaluate(dist[:2], [1, -1], [1, -1, 2], [0, 0], [0, 1, 1])


# ---------------------------------------------------------------- evaluate_features
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_evaluate_features_equals_evaluate_on_distance(metric):
    rng = np.random.default_rng(5)
    qf, gf = torch.tensor(rng.standard_normal((30, 6))), torch.tensor(rng.standard_normal((120, 6)))
    qp, gp = rng.integers(1, 10, 30), rng.integers(0, 10, 120)
    qc, gc = rng.integers(0, 3, 30), rng.integers(0, 3, 120)
    ref = evaluate_loop(pairwise_distance(qf, gf, metric).numpy(), qp, gp, qc, gc)
    assert_same(evaluate_features(qf, gf, qp, gp, qc, gc, metric=metric, chunk=500), ref)


# ---------------------------------------------------------------- bad input
def test_bad_input():
    d, qp, gp, qc, gc = HAND["dist"], HAND["q_pids"], HAND["g_pids"], HAND["q_cams"], HAND["g_cams"]
    cases = [((d[:, :5], qp, gp, qc, gc), {}, "g_pids"), ((d, qp[:2], gp, qc, gc), {}, "q_pids"),
             ((d, qp, gp, qc, gc[:2]), {}, "g_cams"), ((d[:, :0], qp, gp[:0], qc, gc[:0]), {}, "empty"),
             ((d[:0], qp[:0], gp, qc[:0], gc), {}, "no queries"), ((d[0], qp, gp, qc, gc), {}, "matrix"),
             ((d, qp, gp, qc, gc), {"ap_mode": "interpolated"}, "ap_mode"), ((d, qp, gp, qc, gc), {"ties": "random"}, "ties"),
             ((d, qp + 0.5, gp, qc, gc), {}, "integer")]
    for args, kw, msg in cases:
        with pytest.raises(BadInputError, match=msg):
            evaluate(*args, **kw)
    for bad in (np.nan, np.inf, -np.inf):
        d2 = d.copy()
        d2[1, 3] = bad
        with pytest.raises(BadInputError, match="row 1"):
            evaluate(d2, qp, gp, qc, gc)
    with pytest.raises(BadInputError, match="NaN"):
        evaluate_features(np.full((2, 3), np.nan), np.ones((4, 3)), [1, 2], [1, 1, 2, 2], [0, 0], [1, 1, 1, 1])
    with pytest.raises(BadInputError, match="dims"):
        evaluate_features(np.ones((2, 3)), np.ones((4, 2)), [1, 2], [1, 1, 2, 2], [0, 0], [1, 1, 1, 1])
    with pytest.raises(BadInputError, match="gf"):
        evaluate_features(np.ones((2, 3)), np.ones((0, 3)), [1, 2], [], [0, 0], [])


def test_overflowing_sum_is_not_mistaken_for_nan():
    d = np.full((1, 4), 3e38, dtype=np.float32)
    d[0, 0] = 1.0
    r = evaluate(d, [1], [1, 2, 3, 4], [0], [1, 1, 1, 1])
    assert r["mAP"] == 1.0


# ---------------------------------------------------------------- cluster metrics
def brute_cluster(pred, gt):
    """Pair counting and per-item BCubed, written out over all items."""
    n = len(pred)
    same_p = pred[:, None] == pred[None]
    same_g = gt[:, None] == gt[None]
    off = ~np.eye(n, dtype=bool)
    tp, pp, gg = (same_p & same_g & off).sum(), (same_p & off).sum(), (same_g & off).sum()
    prec, rec = (tp / pp if pp else 1.0), (tp / gg if gg else 1.0)
    bp = np.mean([(same_g[i] & same_p[i]).sum() / same_p[i].sum() for i in range(n)])
    br = np.mean([(same_g[i] & same_p[i]).sum() / same_g[i].sum() for i in range(n)])
    expansion = np.mean([len(set(pred[gt == g])) for g in np.unique(gt)])
    return dict(pairwise_precision=prec, pairwise_recall=rec, bcubed_precision=bp, bcubed_recall=br,
                expansion=expansion)


def test_cluster_metrics_match_brute_force():
    rng = np.random.default_rng(0)
    gt, pred = rng.integers(0, 12, 150), rng.integers(-1, 9, 150)
    got, ref = cluster_metrics(pred, gt), brute_cluster(pred, gt)
    for k, v in ref.items():
        assert abs(got[k] - v) < 1e-12, k
    f = 2 * ref["pairwise_precision"] * ref["pairwise_recall"] / (ref["pairwise_precision"] + ref["pairwise_recall"])
    assert abs(got["pairwise_f"] - f) < 1e-12
    kept = pred != -1
    dropped, ref_d = cluster_metrics(pred, gt, noise="drop"), brute_cluster(pred[kept], gt[kept])
    assert all(abs(dropped[k] - v) < 1e-12 for k, v in ref_d.items())
    assert dropped["n"] == kept.sum() and dropped["n_dropped"] == (~kept).sum()


def test_cluster_metrics_hand_and_edges():
    cm = cluster_metrics([0, 0, 1, 1, 1, -1], [7, 7, 7, 8, 8, 9])
    assert math.isclose(cm["pairwise_precision"], 4 / 8) and math.isclose(cm["bcubed_precision"], 7 / 9)
    assert math.isclose(cm["expansion"], 4 / 3)
    single = cluster_metrics([0, 1, 2], [5, 5, 6])  # all singletons: pk = 0 -> precision 1, recall 0
    assert single["pairwise_precision"] == 1.0 and single["pairwise_recall"] == 0.0 and single["pairwise_f"] == 0.0
    perfect = cluster_metrics([3, 3, 1], [0, 0, 2])
    assert all(perfect[k] == 1.0 for k in ("pairwise_f", "bcubed_f", "nmi", "expansion"))
    empty = cluster_metrics([-1, -1], [1, 2], noise="drop")  # every image dropped: NaN scores, n says why
    assert empty["n"] == 0 and empty["n_dropped"] == 2 and math.isnan(empty["pairwise_f"])
    with pytest.raises(BadInputError, match="empty"):
        cluster_metrics([], [])
    with pytest.raises(BadInputError, match="empty"):
        cluster_metrics(np.zeros(0, np.int64), np.zeros(0, np.int64), cams=np.zeros(0, np.int64))
    for kw in (dict(noise="singleton"), dict(cams=[0])):
        with pytest.raises(BadInputError):
            cluster_metrics([0, 1], [0, 1], **kw)
    with pytest.raises(BadInputError, match="gt"):
        cluster_metrics([0, 1], [0])


def test_cluster_metrics_per_camera_weighting():
    pred, gt, cams = np.array([0, 0, 1, 2, 2, 2, 3]), np.array([1, 1, 1, 2, 2, 3, 3]), np.array([0, 0, 0, 1, 1, 1, 1])
    per = [cluster_metrics(pred[cams == c], gt[cams == c]) for c in (0, 1)]
    got = cluster_metrics(pred, gt, cams=cams)
    for k in ("pairwise_precision", "bcubed_recall", "expansion", "nmi"):
        assert math.isclose(got[k], (3 * per[0][k] + 4 * per[1][k]) / 7)


# ---------------------------------------------------------------- figures
def test_ranked_list_follows_protocol():
    dist, qp, gp, qc, gc = random_case(5, 60, 6, 3, seed=9, decimals=1)
    for i in range(5):
        order = ranked_list(dist[i], qp[i], qc[i], gp, gc, k=60)
        removed = (gp == -1) | ((gp == qp[i]) & (gc == qc[i]))
        assert sorted(order.tolist()) == np.flatnonzero(~removed).tolist()
        d, match = dist[i][order], gp[order] == qp[i]
        assert (np.diff(d) >= 0).all() and not (match[:-1] & ~match[1:] & (d[:-1] == d[1:])).any()  # wrong first
    assert ranked_list(-dist[0], qp[0], qc[0], gp, gc, k=7, score=True).tolist() == ranked_list(dist[0], qp[0], qc[0], gp, gc, k=7).tolist()


def test_figures_draw(tmp_path):
    from PIL import Image
    imgs = [np.full((8, 4, 3), 40 * i, np.uint8) for i in range(6)]
    Image.fromarray(imgs[1]).save(tmp_path / "g1.png")
    gallery = [imgs[0], str(tmp_path / "g1.png"), torch.rand(3, 8, 4), *imgs[3:]]
    fig = plot_ranked_list(HAND["dist"][0], 1, 0, HAND["g_pids"], HAND["g_cams"], imgs[0], gallery, k=3, g_times=np.arange(6.0))
    assert len(fig.axes) == 4 and fig.axes[1].get_xlabel().startswith("1 ✗") and "t=1.0s" in fig.axes[1].get_xlabel()
    assert fig.axes[3].get_xlabel().startswith("3 ✓")
    fig2 = plot_cmc({"a": evaluate(**HAND)["cmc"]}, max_rank=10)
    line = fig2.axes[0].lines[0]
    assert line.get_xdata().tolist() == list(range(1, 11)) and line.get_ydata()[2] == 100.0


# ---------------------------------------------------------------- STGAL's cmc.py: trapezoid AP on a truncated ranking
def cmc_py(dist, q_pids, g_pids, q_cams, g_cams, rank_size):
    """STGAL's cmc.py Cmc/Compute_AP transcribed with index lists (np.argsort on distinct distances, as the code)."""
    aps, firsts = [], []
    for k in range(len(dist)):
        good_idx = np.where((q_pids[k] == g_pids) & (q_cams[k] != g_cams))[0]
        junk_idx = np.where((g_pids == -1) | ((q_pids[k] == g_pids) & (q_cams[k] == g_cams)))[0]
        if q_pids[k] == -1 or len(good_idx) == 0: continue  # the code would divide by zero here
        index = np.argsort(dist[k])[:rank_size]
        old_recall, old_precision, ap, intersect, j, good_now, njunk, first = 0, 1.0, 0, 0, 0, 0, 0, None
        for n in range(len(index)):
            flag = 0
            if np.any(good_idx == index[n]):
                first = n - njunk if first is None else first
                flag, good_now = 1, good_now + 1
            if np.any(junk_idx == index[n]):
                njunk += 1
                continue
            intersect += flag
            recall, precision = intersect / len(good_idx), intersect / (j + 1)
            ap += (recall - old_recall) * (old_precision + precision) / 2
            old_recall, old_precision, j = recall, precision, j + 1
            if good_now == len(good_idx): break
        aps.append(ap)
        firsts.append(first)
    return float(np.mean(aps)), firsts


@pytest.mark.parametrize("rank_size", [1, 3, 10, 25, 60, 500])
@pytest.mark.parametrize("seed", [0, 1])
def test_truncated_trapezoid_matches_cmc_py(rank_size, seed):
    dist, qp, gp, qc, gc = random_case(40, 60, 8, 3, seed)  # distinct distances: argsort order is well defined
    want, firsts = cmc_py(dist, qp, gp, qc, gc, rank_size)
    got = evaluate(dist, qp, gp, qc, gc, ap_mode="trapezoid", rank_size=rank_size)
    assert abs(got["mAP"] - want) < 1e-12
    hit1 = np.mean([f == 0 for f in firsts])
    assert abs(got["cmc"][0] - hit1) < 1e-12
    loop = evaluation.evaluate_stgal_loop(dist, qp, gp, qc, gc, rank_size=rank_size)
    assert abs(loop["mAP"] - want) < 1e-12 and loop["n_valid"] == got["n_valid"]


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
@pytest.mark.parametrize("rank_size", [2, 15, 80])
def test_truncation_agrees_with_the_loop_under_ties(ties, rank_size):
    dist, qp, gp, qc, gc = random_case(30, 90, 6, 3, 5, decimals=1)
    a = evaluate(dist, qp, gp, qc, gc, ap_mode="trapezoid", rank_size=rank_size, ties=ties, chunk=500)
    b = evaluation.evaluate_stgal_loop(dist, qp, gp, qc, gc, rank_size=rank_size, ties=ties)
    assert abs(a["mAP"] - b["mAP"]) < 1e-12 and np.abs(a["cmc"] - b["cmc"]).max() < 1e-12


def test_truncation_only_lowers_ap_and_vanishes_beyond_the_gallery():
    dist, qp, gp, qc, gc = random_case(25, 50, 5, 3, 7)
    full = evaluate(dist, qp, gp, qc, gc, ap_mode="trapezoid")
    cut = [evaluate(dist, qp, gp, qc, gc, ap_mode="trapezoid", rank_size=k)["mAP"] for k in (1, 5, 20, 50, 51)]
    assert all(a <= b + 1e-15 for a, b in zip(cut, cut[1:])) and cut[-1] == cut[-2] == full["mAP"]
    std = evaluate(dist, qp, gp, qc, gc, rank_size=50)
    assert std["mAP"] == evaluate(dist, qp, gp, qc, gc)["mAP"]  # the cut applies to the standard AP too
    with pytest.raises(BadInputError, match="rank_size"):
        evaluate(dist, qp, gp, qc, gc, rank_size=-3)


def test_evaluate_features_truncates_like_evaluate():
    g = torch.Generator().manual_seed(3)
    qf, gf = torch.randn(12, 6, generator=g), torch.randn(70, 6, generator=g)
    rng = np.random.default_rng(3)
    qp, gp, qc, gc = rng.integers(1, 5, 12), rng.integers(-1, 5, 70), rng.integers(0, 3, 12), rng.integers(0, 3, 70)
    d = pairwise_distance(qf, gf).numpy()
    for k in (3, 20):
        a = evaluate_features(qf, gf, qp, gp, qc, gc, metric="euclidean", ap_mode="trapezoid", rank_size=k, chunk=140)
        b = evaluation.evaluate_stgal_loop(d, qp, gp, qc, gc, rank_size=k)
        assert abs(a["mAP"] - b["mAP"]) < 1e-6
