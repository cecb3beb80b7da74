"""Tests of reid_nb.stgal against hand-made cases, brute-force references and the synthetic world's ground truth."""
import itertools

import numpy as np
import pytest
import torch

from reid_nb.core import BadInputError
from reid_nb.stgal import (STGALConfig, best_buddies, cams_of_vcams, estimate_sigma, fit_travel_time,
                           frame_negatives, fused_rank_dist, group_batches, group_negatives, group_triplet_loss, ibbs,
                           ibbs_loop,
                           matched_pairs, merge_components, merged_images, mine_labels, negative_pool, pair_dist,
                           pt_lookup, same_time_negatives, select_negatives, stgal_config, time_bins, track_images,
                           track_scores, travel_counts, travel_pdf)
from reid_nb.train import sgd_steps


# ---------------------------------------------------------------- references (plain loops, written from the spec)

def random_scores(T, n_cams, rng, density=0.5):
    """An asymmetric score matrix with zero same-camera blocks and some zero cross-camera entries."""
    cams = rng.integers(n_cams, size=T)
    S = rng.random((T, T)) * (rng.random((T, T)) < density)
    S[cams[:, None] == cams[None]] = 0
    return S, cams


# ---------------------------------------------------------------- BBP and IBBS

def test_bbp_hand_made():
    # A and B rank each other first -> a pair; C's favourite is A, but A prefers B -> no pair for C in one pass
    S = np.array([[0, .9, .5], [.8, 0, .1], [.7, .2, 0]])
    assert best_buddies(S).tolist() == [[0, 1]]
    assert ibbs(S, max_iter=1).tolist() == [[0, 1]]
    # after removing (0, 1): column 0's best row is 2, column 2's best is 0 -> (0, 2); then 1-2 remain positive
    assert ibbs(S).tolist() == [[0, 1], [0, 2], [1, 2]]


def test_zero_guard_blocks_tie_pairs():
    S = np.zeros((3, 3)); S[0, 1] = S[1, 0] = 1.0
    assert best_buddies(S).tolist() == [[0, 1]]
    assert ibbs(S).tolist() == [[0, 1]]  # after zeroing, every column is all zeros: argmax ties must not pair


def test_asymmetric_scores_use_column_ranks():
    # column 1's best row is 0 and column 0's best row is 1: a pair, although row 0's own maximum is column 2
    S = np.array([[0, .5, .9], [.6, 0, 0], [.1, .4, 0]])
    assert best_buddies(S).tolist() == [[0, 1]]


@pytest.mark.parametrize("k,scope", [(1, "global"), (1, "camera_pair"), (2, "global"), (2, "camera_pair")])
def test_ibbs_matches_reference(k, scope):
    rng = np.random.default_rng(k)
    for trial in range(4):
        S, cams = random_scores(24, 3, rng)
        c = cams if scope == "camera_pair" else None
        got = [tuple(p) for p in ibbs(S, k, 10, c)]
        assert got == ibbs_loop(S, k, 10, c)


def test_camera_pair_scope_finds_more_than_global():
    rng = np.random.default_rng(5)
    S, cams = random_scores(60, 4, rng)
    assert len(best_buddies(S, cams=cams)) > len(best_buddies(S))
    # every global pair is mutual best over all rows, hence also over its camera's rows
    assert {tuple(p) for p in best_buddies(S)} <= {tuple(p) for p in best_buddies(S, cams=cams)}


def test_ibbs_pairs_are_cross_camera_and_unique():
    rng = np.random.default_rng(1)
    S, cams = random_scores(80, 5, rng, density=0.3)
    for c in (None, cams):
        p = ibbs(S, cams=c)
        assert (cams[p[:, 0]] != cams[p[:, 1]]).all() and (p[:, 0] < p[:, 1]).all()
        assert len({tuple(x) for x in p}) == len(p)


def test_merge_components_is_union_find():
    pairs = np.array([[0, 3], [3, 5], [1, 2], [6, 7], [7, 6]])
    comp = merge_components(pairs, 9)
    parent = list(range(9))

    def find(x):
        while parent[x] != x: x = parent[x]
        return x
    for a, b in pairs: parent[find(a)] = find(b)
    for a, b in itertools.combinations(range(9), 2):
        assert (comp[a] == comp[b]) == (find(a) == find(b))
    imgs = [np.array([10 * t, 10 * t + 1]) for t in range(9)]
    m = merged_images(imgs, comp)
    assert m[0].tolist() == m[5].tolist() == [0, 1, 30, 31, 50, 51] and m[4].tolist() == [40, 41]


# ---------------------------------------------------------------- negatives and sigma

def test_frame_and_group_negatives_brute_force():
    rng = np.random.default_rng(0)
    n = 60; vcam = rng.integers(3, size=n); t = rng.integers(5, size=n) * 25; track = rng.integers(12, size=n)
    ref = {(i, j) for i, j in itertools.combinations(range(n), 2) if vcam[i] == vcam[j] and t[i] == t[j]}
    assert {tuple(p) for p in frame_negatives(vcam, t)} == ref
    groups = [np.array([0, 3, 4]), np.array([5]), np.array([6, 7])]
    ref = {(i, j) for g in groups for i, j in itertools.combinations(range(n), 2)
           if track[i] in g and track[j] in g and track[i] != track[j]}
    assert {tuple(p) for p in group_negatives(groups, track_images(track, 12))} == ref
    both = same_time_negatives(vcam, vcam, t, track, groups)
    assert {tuple(p) for p in both} == ref | {tuple(p) for p in frame_negatives(vcam, t)}


def test_sigma_max_and_quantile_on_constructed_distances():
    rng = np.random.default_rng(0)
    d = rng.uniform(50, 500, size=5000); d[:3] = [1.0, 2.0, 3.0]  # three "same person, two boxes" outliers
    s_max, dq_max = estimate_sigma(d, 0.01, "max")
    assert dq_max == 1.0 and np.isclose(s_max, np.exp(-0.01))  # the paper's max is set by the outlier
    s_q, dq_q = estimate_sigma(d, 0.01, "quantile", 0.999)
    assert np.isclose(dq_q, np.percentile(d, 0.1))  # the code: 0.1th percentile of the squared distances
    pv = np.exp(-0.01 * d)
    assert np.isclose(s_q, np.quantile(pv, 0.999), rtol=1e-9)  # = 99.9th percentile of P_v (exp is monotonic)
    with pytest.raises(BadInputError):
        estimate_sigma(np.zeros(0))


def test_matched_pairs_brute_force():
    rng = np.random.default_rng(0)
    f = torch.randn(50, 4); cam = rng.integers(3, size=50); vcam = cam * 2 + rng.integers(2, size=50)
    d = pair_dist(f, f).numpy(); dq = np.quantile(d, 0.2)
    got = {tuple(p) for p in matched_pairs(f, vcam, cam, dq, chunk=7)}
    ref = {(i, j) for i in range(50) for j in range(50) if cam[i] != cam[j] and d[i, j] < dq}
    assert got == ref


# ---------------------------------------------------------------- travel-time histogram and P_t

def test_time_bins_match_digitize():
    rng = np.random.default_rng(0)
    for eps, dmax in [(250, 1_000_001), (600, 1_000_001), (7, 100)]:
        x = np.concatenate([rng.integers(-dmax + 1, dmax, 2000), [-dmax + 1, dmax - 1, 0, eps, -eps]])
        assert (time_bins(x, eps, dmax) == np.digitize(x, np.arange(-dmax, dmax, eps)) - 1).all()
        assert (time_bins([dmax, -dmax, np.nan], eps, dmax) == -1).all()


def test_histogram_brute_force_signed_and_abs():
    rng = np.random.default_rng(1)
    n = 80; cam = rng.integers(3, size=n); vcam = cam * 2 + rng.integers(2, size=n); t = rng.integers(0, 5000, n)
    pairs = rng.integers(n, size=(400, 2)); cv = cams_of_vcams(vcam, cam)
    edges = np.arange(-1_000_001, 1_000_001, 250)
    for absd in (False, True):
        H, n_out = travel_counts(pairs, vcam, t, cv, 250, 1_000_001, absd)
        ref = np.zeros_like(H)
        for i, j in pairs:
            if cam[i] == cam[j]: continue
            dt = abs(t[i] - t[j]) if absd else t[i] - t[j]
            ref[vcam[i], vcam[j], np.digitize(dt, edges) - 1] += 1
        assert (H == ref).all() and n_out == 0


def test_histogram_counts_pairs_outside_range():
    vcam = np.array([0, 1]); cam = np.array([0, 1]); t = np.array([0, 2000])
    H, n_out = travel_counts(np.array([[0, 1], [1, 0]]), vcam, t, cams_of_vcams(vcam, cam), 250, 1000, False)
    assert H.sum() == 0 and n_out == 2


def test_pt_normalisation_source_and_pair():
    rng = np.random.default_rng(2)
    H = rng.integers(0, 5, size=(4, 4, 30)); cv = np.array([0, 0, 1, 2])
    H[cv[:, None] == cv[None]] = 0; H[3] = 0  # source 3 has no matched pair at all
    P = travel_pdf(H, "source")
    assert np.allclose(P[:3].sum(axis=(1, 2)), 1) and P[3].sum() == 0
    assert np.allclose(P[0, 2], H[0, 2] / H[0].sum())
    Q = travel_pdf(H, "pair"); nz = H.sum(2) > 0
    assert np.allclose(Q.sum(2)[nz], 1) and (Q.sum(2)[~nz] == 0).all()
    S = travel_pdf(H, "source", smooth_bins=1.5)
    assert np.allclose(S[:3].sum(axis=(1, 2)), 1, atol=0.05) and (S[cv[:, None] == cv[None]] == 0).all()


def test_bad_inputs():
    with pytest.raises(BadInputError, match="sigma_mode"):
        STGALConfig(sigma_mode="median")
    with pytest.raises(BadInputError, match="fps"):
        stgal_config(None)
    with pytest.raises(BadInputError, match="vcam"):
        cams_of_vcams(np.array([0, 0]), np.array([0, 1]))
    f = torch.zeros(2, 3); v = np.array([0, 1])
    with pytest.raises(BadInputError, match="t_frames"):
        fit_travel_time(f, v, v, np.array([0.0, np.nan]), np.array([0, 1]), [], STGALConfig())


# ---------------------------------------------------------------- P_a, track scores, ranking

def test_track_scores_brute_force():
    rng = np.random.default_rng(3)
    n = 40; cam = rng.integers(3, size=n); vcam = cam.copy(); t = rng.integers(0, 3000, n).astype(float)
    track = np.where(rng.random(n) < 0.1, -1, cam * 10 + rng.integers(4, size=n))
    track = np.unique(track, return_inverse=True)[1] - (track.min() < 0)
    f = torch.randn(n, 8) * 3
    pairs = rng.integers(n, size=(300, 2))
    cfg = STGALConfig(eps=250)
    H, _ = travel_counts(pairs, vcam, t, cams_of_vcams(vcam, cam), cfg.eps, cfg.delta_max, False)
    from reid_nb.stgal import TravelTime
    tt = TravelTime(H, travel_pdf(H), cams_of_vcams(vcam, cam), cfg.eps, cfg.delta_max, False)
    Sa, Sv = track_scores(f, vcam, t, track, tt, chunk=9)
    pv = np.exp(-0.01 * pair_dist(f, f).double().numpy())
    pa = pv * pt_lookup(tt, vcam[:, None], vcam[None], t[:, None], t[None])
    for a in range(track.max() + 1):
        for b in range(track.max() + 1):
            m = np.ix_(track == a, track == b)
            assert np.isclose(Sa[a, b], pa[m].mean(), rtol=1e-4, atol=1e-12)
            assert np.isclose(Sv[a, b], pv[m].mean(), rtol=1e-4)


def test_fused_rank_breaks_ties_by_visual():
    rng = np.random.default_rng(4)
    d = rng.uniform(0, 300, size=(5, 40)); pt = rng.random((5, 40)) * (rng.random((5, 40)) < 0.3)
    pt[0, :3] = 0.2; d[0, :3] = [5.0, 1.0, 3.0]  # equal P_t: the order follows the distance
    r = fused_rank_dist(d, pt)
    for q in range(5):
        key = lambda g: (-(np.exp(-0.01 * d[q, g]) * pt[q, g]), d[q, g])
        order = sorted(range(40), key=key)
        assert [int(x) for x in np.argsort(r[q])] == order
    assert r[0, 1] < r[0, 2] < r[0, 0]


# ---------------------------------------------------------------- hard negatives

def test_negative_pool_brute_force():
    rng = np.random.default_rng(6)
    Sa = rng.random((12, 12)) * (rng.random((12, 12)) < 0.4); comp = np.arange(12); comp[5] = comp[7] = 0
    x = np.log(np.maximum(Sa, np.exp(-40))); med = np.median(x)
    ref = [(a, b) for a in range(12) for b in range(a + 1, 12) if x[a, b] <= med and comp[a] != comp[b]]
    assert [tuple(p) for p in negative_pool(Sa, comp)] == ref
    cams = np.arange(12) % 3
    medc = np.median(x[cams[:, None] != cams[None]])
    ref = [(a, b) for a in range(12) for b in range(a + 1, 12) if x[a, b] <= medc]
    assert [tuple(p) for p in negative_pool(Sa, None, cams, "cross_camera")] == ref


def test_select_negatives_prob_and_topk():
    pool = np.array([[0, 1], [0, 2], [1, 2], [2, 3]])
    Sv = np.zeros((4, 4)); Sv[0, 1], Sv[0, 2], Sv[1, 2], Sv[2, 3] = 0.6, 0.3, 0.1, 0.0
    assert select_negatives(pool, Sv, 2, "topk").tolist() == [[0, 1], [0, 2]]
    counts = np.zeros(3)
    for s in range(3000):
        for p in select_negatives(pool, Sv, 1, "prob", np.random.default_rng(s)):
            counts[[0, 1, 2][[tuple(x) for x in pool[:3]].index(tuple(p))]] += 1
    assert np.allclose(counts / 3000, [0.6, 0.3, 0.1], atol=0.03)
    two = select_negatives(pool, Sv, 2, "prob", np.random.default_rng(0))
    assert len(two) == 2 and len({tuple(p) for p in two}) == 2  # without replacement
    assert len(select_negatives(pool, Sv, 10, "prob")) == 3  # zero-weight pairs cannot be sampled


def test_mine_labels_counts():
    rng = np.random.default_rng(7)
    Sa, cams = random_scores(30, 3, rng, density=0.3); Sv = rng.random((30, 30))
    cfg = STGALConfig(neg_per_bbp=2, neg_select="topk")
    lab = mine_labels(Sa, Sv, cams, [np.array([t]) for t in range(30)], [np.array([0, 1])], cfg)
    assert len(lab.negatives) == min(2 * len(lab.pairs), len(negative_pool(Sa, lab.comp)))
    assert (lab.comp[lab.negatives[:, 0]] != lab.comp[lab.negatives[:, 1]]).all()
    assert len(lab.groups) == 1 + len(lab.negatives)


# ---------------------------------------------------------------- batches and loss

def test_group_batches_follow_groups():
    track = np.repeat(np.arange(6), 3); imgs = track_images(track)
    groups = [np.array([0, 1]), np.array([2, 3, 4]), np.array([5])]
    gen = group_batches(groups, imgs, np.arange(6), 8, np.random.default_rng(0))
    for _ in range(20):
        idx, gid, key = next(gen)
        assert len(idx) == 8 and (track[idx] == key).all()
        assert all(k in groups[g] for g, k in zip(gid, key))


def test_group_triplet_loss_reference():
    torch.manual_seed(0)
    f = torch.randn(10, 4); gid = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 3]); key = torch.tensor([0, 0, 1, 1, 2, 2, 3, 4, 5, 6])
    d = torch.cdist(f.double(), f.double())
    losses, code = [], []
    for a in range(10):
        pos = [p for p in range(10) if p != a and gid[p] == gid[a] and key[p] == key[a]]
        neg = [n for n in range(10) if gid[n] == gid[a] and key[n] != key[a]]
        hp = max([d[a, p].item() for p in pos], default=0.0); hn = min([d[a, n].item() for n in neg], default=1e5)
        code.append(np.log1p(np.exp(hp - hn)))
        if pos and neg: losses.append(np.log1p(np.exp(hp - hn)))
    assert np.isclose(group_triplet_loss(f, gid, key).item(), np.mean(losses), atol=1e-5)
    assert np.isclose(group_triplet_loss(f, gid, key, drop_unpaired=False).item(), np.mean(code), atol=1e-5)
    f.requires_grad_(True); group_triplet_loss(f, gid, key).backward()
    assert torch.isfinite(f.grad).all()



def test_group_step_counts_valid_batches_and_anchors_against_a_loop():
    from reid_nb.sampling import ImageBank
    from reid_nb.stgal import group_step, multi_track_groups, triplet_anchors
    rng = np.random.default_rng(1)
    for _ in range(30):  # random small batches: the vectorised anchor test equals a plain loop
        gid, key = rng.integers(0, 3, 8), rng.integers(0, 4, 8)
        loop = [any(gid[p] == gid[a] and key[p] == key[a] for p in range(8) if p != a)
                and any(gid[n] == gid[a] and key[n] != key[a] for n in range(8)) for a in range(8)]
        assert triplet_anchors(torch.as_tensor(gid), torch.as_tensor(key)).tolist() == loop
    bank = ImageBank(torch.randint(0, 255, (6, 3, 8, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(96, 4))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, weight_decay=1e-4)
    good = (np.arange(6), np.array([0, 0, 0, 0, 1, 1]), np.array([0, 0, 1, 1, 2, 3]))
    empty = (np.arange(6), np.arange(6), np.arange(6))  # one image per group: no positive, no negative
    step = group_step(bank)
    with pytest.warns(UserWarning, match="only 25% of 4 batches held a valid"):
        m = sgd_steps(4, [good, empty, empty, empty], lambda b: step(net, None, b), opt)
    assert m["valid_batches"] == 0.25 and m["n_zero_loss"] == 3 and m["valid_anchors"] == pytest.approx(4 / 6 / 4)
    assert [len(g) for g in multi_track_groups([np.array([0]), np.array([1, 2]), np.array([3])])] == [2]


def test_group_step_under_bf16_keeps_a_float32_loss():
    from reid_nb.sampling import ImageBank
    from reid_nb.stgal import group_step
    bank = ImageBank(torch.randint(0, 255, (6, 3, 8, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(96, 4))
    batch = (np.arange(6), np.array([0, 0, 0, 0, 1, 1]), np.array([0, 0, 1, 1, 2, 3]))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, m = group_step(bank)(net, None, batch)
    ref, _ = group_step(bank)(net, None, batch)
    assert loss.dtype == torch.float32 and m["valid_batches"] == 1.0
    assert abs(float(loss.detach()) - float(ref.detach())) < 0.05


def test_stgal_config_eps_follows_the_spec_and_pt_variants():
    from reid_nb.stgal import RESAMPLE, pt_variant
    assert [stgal_config(f).eps for f in (25, 59.94, 60)] == [250, 600, 600]  # METHODS.md §1.5, §4.8
    assert pt_variant() == dict(abs_delta=False, pt_norm="source", pt_window=False)  # the spec's default
    assert pt_variant("code", abs_delta=True)["abs_delta"] and pt_variant("paper")["pt_norm"] == "pair"
    assert RESAMPLE == "bilinear"
    with pytest.raises(BadInputError, match="pt_variant='eq4'"):
        pt_variant("eq4")

# ---------------------------------------------------------------- the synthetic world's ground truth, bad input

def test_travel_pdf_from_true_pairs_matches_the_true_mixture():
    """P_t built by travel_counts/travel_pdf from the world's true transitions follows the configured mixtures."""
    from reid_nb.synth import build_world, mixture_cdf, true_components, world_config
    w = build_world(world_config("default", n_train_ids=1500, n_test_ids=10, n_single_ids=0), 3)
    v, fps, C = w.visits, w.cfg.fps, w.cfg.n_cams
    nxt = np.flatnonzero(v["prev_cam"] >= 0); prev = nxt - 1  # a person's visits are consecutive rows
    assert (v["ident"][prev] == v["ident"][nxt]).all() and (v["cam"][prev] == v["prev_cam"][nxt]).all()
    n = len(nxt)  # one "image" entering the next camera (i), one leaving the previous camera (j), in frames
    vcam = np.r_[v["cam"][nxt], v["cam"][prev]]; t = np.r_[v["t_enter"][nxt], v["t_leave"][prev]] * fps
    H, n_out = travel_counts(np.stack([np.arange(n), np.arange(n) + n], 1), vcam, t, np.arange(C), 250, 1_000_001, False)
    P = travel_pdf(H, "pair"); edges_s = (np.arange(H.shape[2] + 1) * 250 - 1_000_001) / fps
    assert n_out == 0 and all(H[c, c].sum() == 0 for c in range(C))  # loiter-and-return: same camera, excluded
    tested = 0
    for (a, b), mix in w.graph["mix"].items():
        m = int(H[b, a].sum())
        if a == b or m < 300: continue
        emp = np.cumsum(P[b, a]); true = mixture_cdf(true_components(mix), edges_s[1:])
        assert np.abs(emp - true).max() < 2.0 / np.sqrt(m), (a, b, m)  # KS bound at the bin edges
        tested += 1
    assert tested >= 10


def test_stgal_refuses_a_dataset_without_clock(fixtures):
    from reid_nb.data import load_dataset
    ds = load_dataset(fixtures / "msmt17_v1", "msmt17")
    with pytest.raises(BadInputError, match="STGAL needs time stamps"):
        ds.require_clock("STGAL")
    with pytest.raises(BadInputError, match="fps"):
        stgal_config(ds.fps)
    tr = ds.train; n = len(tr)
    with pytest.raises(BadInputError, match="t_frames"):
        fit_travel_time(torch.zeros(n, 4), tr.vcam, tr.cam, tr.t_frames, np.arange(n), [], STGALConfig())


@pytest.mark.slow
def test_experiment_notebook_smoke(tmp_path, monkeypatch):
    """The experiment notebook runs end to end on the tiny world and writes every table with the expected rows."""
    import csv
    from pathlib import Path
    from reid_nb.report import VERDICTS
    from reid_nb.runner import run_notebook
    monkeypatch.setenv("REID_NB_RESULTS", str(tmp_path)); monkeypatch.setenv("REID_NB_PROGRESS", "0")
    nb = Path(__file__).resolve().parents[1] / "nbs" / "experiments" / "stgal.ipynb"
    out = run_notebook(nb, profile="smoke").parent / "stgal"  # inside the run's result set
    col = lambda name, c: [r[c] for r in csv.DictReader(open(out / f"{name}-tiny-s0-smoke-s0.csv"))]
    assert col("table1", "method") == ["Ours (P_v)", "Ours (P_a)"]
    assert col("table2", "method") == ["floor", "Baseline A", "+STGAL (A)", "Baseline B", "+STGAL (B)", "ceiling"]
    assert col("table3", "method") == ["BBP", "IBBS (ours)"]
    assert col("table1", "paper R1") == ["72.1", "93.1"] and col("table3", "paper mAP") == ["33.6", "48.4"]  # Market's
    assert len(col("claims", "verdict")) == 4 and set(col("claims", "verdict")) <= set(VERDICTS)
    assert len(col("labels", "labels")) == 3 and len(col("travel", "pair")) >= 10
    assert col("oracle", "rung")[-1] == "ceiling" and len(col("oracle", "rung")) == 7
    assert (out / "travel-tiny-s0-smoke-s0.png").stat().st_size > 0
    rules = ["visual", "product", "product_smoothed", "logistic", "oracle"]  # issue 24: every rule on every model
    assert col("fusion", "rule") == rules * 4 and col("fusion", "model")[::5] == ["Baseline A", "Baseline B",
                                                                                 "+STGAL (B)", "ceiling"]
    assert all(0 <= float(x) <= 100 for x in col("fusion", "code AP"))
    assert col("pt", "model") == ["Baseline A", "Baseline B", "+STGAL (B)", "ceiling"]
    assert col("ibbs", "labels")[:2] == ["IBBS", "BBP"] and len(col("ibbs", "labels")) == 9  # + the capped row
    assert col("ibbs", "features")[-1] == "ceiling" and "[PROPOSED]" in col("ibbs", "labels")[2]
    assert (out / "pt-pair-tiny-s0-smoke-s0.png").stat().st_size > 0
    from reid_nb.runs import load_handoff
    h = load_handoff(out.parent, "stgal", "tiny-s0-smoke-s0")  # the contract claims and compare read
    assert {"Baseline B|P_v", "+STGAL (B)|P_a", "BBP|P_v", "+STGAL (A)|P_v", "Baseline A|P_v"} <= set(h.ap)
    assert set(h.rows) == {"+STGAL (B)", "Baseline B"} and {r.metric for r in h.rows.values()} == {"euclidean"}
    assert h.rows["+STGAL (B)"].cost.images > h.rows["Baseline B"].cost.images == h.costs["stage1"].images > 0
    assert set(h.labels) == {"track", "ibbs_comp"} and h.settings["config"]["arch"] == "small"
    assert not list(out.glob("features-*")) + list(out.glob("compose-*")) + list(out.glob("ap-*"))
    assert all(0 <= float(x) <= 100 for x in col("table2", "R1"))


# ---------------------------------------------------------------- fusion rules and P_t diagnostics (issue 24)

from reid_nb.stgal import (FUSION_RULES, MinedLabels, TravelTime, component_stats, empty_bin_share, fusion_pt,
                           fusion_rank, fusion_rows, logistic_fusion, n_time_bins, oracle_travel_time, pt_divergence,
                           smoothed_travel_time, stage2_batches, streid_sigma_bins, true_pairs, valid_batch_share)
from types import SimpleNamespace


def streid_gauss_smooth2(arr, o):
    """st-ReID's evaluate_st.py gauss_smooth2, transcribed: a banded Gaussian matrix (kernel cut at 3 sigma)."""
    n = len(arr)
    g = 1.0 / (o * np.sqrt(2 * np.pi)) * np.exp(-np.arange(n) ** 2 / (2 * o ** 2))
    M = np.zeros((n, n))
    for i in range(n):
        for k, j in enumerate(range(i, n)):
            if k <= 3 * o: M[i, j] = g[j - i]
    M = M + M.T
    M[np.diag_indices(n)] /= 2
    return M @ arr


@pytest.mark.parametrize("sigma", [2.0, 5.0])
def test_smoothing_matches_streid_code(sigma):
    rng = np.random.default_rng(0)
    H = np.zeros((2, 2, 120)); H[0, 1, 40:80] = rng.integers(0, 6, 40); H[1, 0, 50:60] = rng.integers(1, 4, 10)
    tt = TravelTime(H, travel_pdf(H), np.array([0, 1]), 250, 15_000, False)
    sm = smoothed_travel_time(tt, sigma, "pair")
    for u, v in ((0, 1), (1, 0)):
        ref = streid_gauss_smooth2(H[u, v].copy(), sigma)
        ref = ref / (ref.sum() + 1e-7)  # st-ReID renormalises each pair
        assert np.allclose(sm.pt[u, v], ref, rtol=1e-6, atol=1e-12)
    src = smoothed_travel_time(tt, sigma)  # the code's normalisation: per source camera
    assert np.isclose(src.pt[0].sum(), 1) and np.isclose(src.pt[1].sum(), 1)
    assert np.isclose(streid_sigma_bins(250, 25), 20.0) and np.isclose(streid_sigma_bins(600, 60), 20.0)


def test_logistic_fusion_hand_values():
    sv, st = np.array([0.0, 1.0, 0.2]), np.array([0.0, 0.0, 0.1])
    want = [1 / 2 / 3, 1 / (1 + np.exp(-5)) / 3, 1 / (1 + np.exp(-1)) / (1 + 2 * np.exp(-0.5))]
    assert np.allclose(logistic_fusion(sv, st), want)
    assert (logistic_fusion(sv, st) > 0).all()


def test_product_sinks_every_empty_bin_match_and_default_rule_is_unchanged():
    rng = np.random.default_rng(3)
    d = rng.uniform(0, 50, (6, 30)); pt = rng.random((6, 30)) * (rng.random((6, 30)) < 0.5)
    r = fusion_rank("product", d, pt, 0.05)
    assert np.array_equal(r, fused_rank_dist(d, pt, 0.05))  # the default is the code's rule, untouched
    for q in range(6):
        assert r[q][pt[q] == 0].min() > r[q][pt[q] > 0].max()  # every P_t = 0 image after every P_t > 0 one
    lg = fusion_rank("logistic", d, pt, 0.05)
    assert np.allclose(-lg, logistic_fusion(np.exp(-0.05 * d), pt))
    with pytest.raises(BadInputError, match="rule"):
        fusion_rank("sum", d, pt, 0.05)


def test_true_pairs_brute_force():
    rng = np.random.default_rng(1)
    pid, cam = rng.integers(0, 6, 40), rng.integers(0, 3, 40)
    want = {(i, j) for i in range(40) for j in range(40) if pid[i] == pid[j] > 0 and cam[i] != cam[j]}
    got = true_pairs(pid, cam)
    assert len(got) == len(want) and set(map(tuple, got.tolist())) == want


def test_oracle_travel_time_counts_the_true_pairs():
    rng = np.random.default_rng(2)
    n = 60
    pid, vcam = rng.integers(1, 9, n), rng.integers(0, 4, n); cam = vcam // 2; t = rng.integers(0, 5000, n)
    cv = cams_of_vcams(vcam, cam, 4)
    tt = TravelTime(np.zeros((4, 4, n_time_bins(250, 10_000))), None, cv, 250, 10_000, False)
    o = oracle_travel_time(tt, pid, vcam, cam, t)
    H = np.zeros_like(o.counts)
    for i in range(n):
        for j in range(n):
            if pid[i] == pid[j] and cam[i] != cam[j]: H[vcam[i], vcam[j], (t[i] - t[j] + 10_000) // 250] += 1
    assert np.array_equal(o.counts, H) and np.allclose(o.pt, travel_pdf(H))


def test_pt_divergence_against_scipy():
    from scipy.spatial.distance import jensenshannon
    rng = np.random.default_rng(5)
    p = rng.random((3, 3, 12)) * (rng.random((3, 3, 12)) < 0.5); q = rng.random((3, 3, 12))
    p[2, 1] = 0  # a pair the learnt P_t leaves empty: disjoint
    mass = rng.integers(0, 5, (3, 3)).astype(float); mass[2, 1] = 2
    tv, js, w = [], [], []
    for u, v in itertools.product(range(3), range(3)):
        if mass[u, v] == 0: continue
        a, b = p[u, v], q[u, v] / q[u, v].sum()
        if a.sum() == 0: tv.append(1.0); js.append(1.0)
        else: a = a / a.sum(); tv.append(0.5 * np.abs(a - b).sum()); js.append(jensenshannon(a, b, base=2) ** 2)
        w.append(mass[u, v])
    got = pt_divergence(p, q, mass)
    assert np.isclose(got["tv"], np.average(tv, weights=w)) and np.isclose(got["js"], np.average(js, weights=w))


def test_empty_bin_share_loop():
    rng = np.random.default_rng(6)
    q = SimpleNamespace(pid=rng.integers(1, 5, 12), cam=rng.integers(0, 3, 12))
    g = SimpleNamespace(pid=rng.integers(-1, 5, 40), cam=rng.integers(0, 3, 40))
    pt = rng.random((12, 40)) * (rng.random((12, 40)) < 0.5)
    hits = [pt[i, j] == 0 for i in range(12) for j in range(40) if q.pid[i] == g.pid[j] and q.cam[i] != g.cam[j]]
    assert np.isclose(empty_bin_share(pt, q, g), 100 * np.mean(hits))


def test_component_stats_and_valid_batches_against_loops():
    rng = np.random.default_rng(7)
    comp, pid = rng.integers(0, 4, 20), rng.integers(0, 6, 20)
    s = component_stats(comp, pid)
    sizes = [int((comp == c).sum()) for c in range(comp.max() + 1)]
    big = int(np.argmax(sizes)); members = list(pid[comp == big])
    assert s == dict(components=len(sizes), largest_share=100 * max(sizes) / 20,
                     largest_purity=100 * max(members.count(x) for x in set(members)) / len(members))
    images = [np.array([2 * t, 2 * t + 1]) for t in range(20)]
    groups = [rng.choice(20, 3, replace=False) for _ in range(8)]
    lab = MinedLabels(np.zeros((0, 2), np.int64), comp, merged_images(images, comp), [], groups)
    draws = stage2_batches(lab, 12)(np.random.default_rng(0))
    ok = []
    for _, gid, key in itertools.islice(draws, 50):
        ok.append(any(any(gid[a] == gid[b] and key[a] == key[b] for b in range(12) if b != a) and
                      any(gid[a] == gid[b] and key[a] != key[b] for b in range(12)) for a in range(12)))
    assert valid_batch_share(lab, 12, 50) == 100 * np.mean(ok)


def test_fusion_rows_cover_every_rule_with_the_code_metric():
    rng = np.random.default_rng(8)
    nq, ng = 10, 50
    q = SimpleNamespace(pid=rng.integers(1, 6, nq), cam=np.zeros(nq, int), vcam=np.zeros(nq, int),
                        t_frames=rng.integers(0, 3000, nq))
    g = SimpleNamespace(pid=rng.integers(1, 6, ng), cam=np.ones(ng, int), vcam=np.ones(ng, int),
                        t_frames=rng.integers(0, 3000, ng))
    H = np.zeros((2, 2, n_time_bins(250, 5000))); H[0, 1, 15:25] = rng.integers(0, 4, 10); H[1, 0] = H[0, 1, ::-1]
    tt = TravelTime(H, travel_pdf(H), np.array([0, 1]), 250, 5000, False)
    d = rng.uniform(0, 10, (nq, ng))
    rows = fusion_rows(d, tt, 0.3, q, g, 25.0, oracle_travel_time(tt, np.r_[q.pid, g.pid], np.r_[q.vcam, g.vcam],
                                                                   np.r_[q.cam, g.cam], np.r_[q.t_frames, g.t_frames]))
    assert [r["rule"] for r in rows] == ["visual", *FUSION_RULES]
    pt = fusion_pt(tt, q.vcam, q.t_frames, g.vcam, g.t_frames)
    from reid_nb.evaluation import evaluate
    want = evaluate(fused_rank_dist(d, pt, 0.3), q.pid, g.pid, q.cam, g.cam)
    assert np.isclose(rows[1]["mAP"], 100 * want["mAP"]) and np.isclose(rows[1]["R1"], 100 * want["cmc"][0])
    trap = evaluate(fused_rank_dist(d, pt, 0.3), q.pid, g.pid, q.cam, g.cam, ap_mode="trapezoid")
    assert np.isclose(rows[1]["code AP"], 100 * trap["mAP"])  # a 50-image gallery: the top-1,000 cut changes nothing


def test_capped_components_respect_the_cap_and_the_pair_order():
    rng = np.random.default_rng(9)
    pairs = np.sort(rng.integers(0, 30, (60, 2)), axis=1); pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    free = merge_components(pairs, 30)
    same = lambda a, b: (a[:, None] == a[None]) == (b[:, None] == b[None])
    assert same(merge_components(pairs, 30, max_size=30), free).all()  # a cap above T is the code's union
    for cap in (2, 3, 5):
        comp = merge_components(pairs, 30, max_size=cap)
        assert np.bincount(comp).max() <= cap
        groups = [{t} for t in range(30)]  # replay the joins with sets
        for a, b in pairs:
            ga, gb = next(g for g in groups if a in g), next(g for g in groups if b in g)
            if ga is not gb and len(ga) + len(gb) <= cap: groups.remove(gb); ga |= gb
        want = np.empty(30, int)
        for i, g in enumerate(groups): want[list(g)] = i
        assert same(comp, want).all()


# ---------------------------------------------------------------- the experiment notebook's pieces

from reid_nb.report import settings_table
from reid_nb.stgal import (STGAL_CAPTIONS, STGAL_CLAIMS, STGAL_TABLES, STGALData, alpha_text, global_seconds,
                           histogram_js, js_divergence, oracle_labels, oracle_ladder, our_settings, profile_config,
                           pt_variants, run_config, stgal_reference, table_scores, travel_text, travel_vs_truth)


def test_js_divergence_on_known_distributions():
    p = np.array([[1.0, 0, 0], [0.5, 0.5, 0], [0.25, 0.25, 0.5]])
    q = np.array([[0.0, 1, 0], [0.5, 0.5, 0], [0.5, 0.5, 0]])
    js = js_divergence(p, q)
    # disjoint: 1; identical: 0; (¼, ¼, ½) vs (½, ½, 0): m = (⅜, ⅜, ¼), by hand
    kl = lambda a, m: sum(x * np.log2(x / y) for x, y in zip(a, m) if x > 0)
    m = (p[2] + q[2]) / 2
    assert np.allclose(js, [1.0, 0.0, (kl(p[2], m) + kl(q[2], m)) / 2])
    assert np.allclose(js_divergence(q, p), js)  # symmetric
    assert 0 <= js.min() and js.max() <= 1


def test_histogram_js_ignores_scale_and_flags_empty_histograms():
    rng = np.random.default_rng(0)
    h, t = rng.integers(0, 9, 12).astype(float), rng.random(12)
    assert np.isclose(histogram_js(h, t), histogram_js(3 * h, t / 7))
    assert np.isclose(histogram_js(h, h), 0.0)
    assert np.isnan(histogram_js(np.zeros(4), np.ones(4))) and np.isnan(histogram_js(np.ones(4), np.zeros(4)))


def test_global_seconds_and_travel_vs_truth_by_hand():
    world = {"seq_len": [100, 200], "clock_offset_frames": [10, 0], "fps": 10}
    r = SimpleNamespace(cam=np.array([0, 1, 1]), seq=np.array([2, 1, 2]), frame=np.array([11, 1, 1]))
    assert global_seconds(r, world).tolist() == [10.0, 0.0, 20.0]  # (100 + 10 - 10) / 10, 0, 200 / 10
    t = np.array([0.0, 12, 50, 75, 90, 10])
    cam = np.array([0, 1, 0, 1, 0, 1])
    learnt = np.array([[1, 0], [3, 2], [5, 4]])  # 12 s and 25 s from camera 1 to 2; 5 -> 4 is 80 s backwards
    oracle = np.array([[1, 0], [3, 2], [0, 1]])  # the last one runs from camera 2 to camera 1
    edges = np.arange(0, 31, 10.0)
    rows, curves = travel_vs_truth(learnt, oracle, t, cam, {(0, 1): np.array([0, 1.0, 1.0])}, edges)
    h, o, tr = curves["1->2"]
    assert h.tolist() == [0, 1, 1] and o.tolist() == [0, 1, 1] and rows[0]["matched pairs"] == 2
    assert rows[0]["JS(learnt, truth)"] == 0 and rows[0]["learnt mode s"] == 15.0 == rows[0]["true mode s"]


def test_table_rows_and_claims_name_every_model():
    models = {m for rows in STGAL_TABLES.values() for m, _ in rows.values()}
    assert models == {"Baseline A", "+STGAL (A)", "Baseline B", "+STGAL (B)", "BBP"}
    scores = {m: {"Pv": (float(k), float(k + 1)), "Pa": (k + 0.5, k + 1.5)} for k, m in enumerate(sorted(models))}
    ours = table_scores(scores)
    assert ours["table3"]["IBBS (ours)"] == {"R1": scores["+STGAL (B)"]["Pv"][0], "mAP": scores["+STGAL (B)"]["Pv"][1]}
    assert ours["table1"]["Ours (P_a)"]["mAP"] == scores["+STGAL (B)"]["Pa"][1]
    for _, (a, ka), (b, kb), (ra, rb) in STGAL_CLAIMS:
        assert {a, b} <= models and {ka, kb} <= {"ap_v", "ap_a"}
        assert any(ra in rows for rows in STGAL_TABLES.values()) and any(rb in rows for rows in STGAL_TABLES.values())


def test_oracle_ladder_rungs_and_ceiling():
    scores = {m: {"Pv": (1.0, 2.0), "Pa": (3.0, 4.0)} for m in ("Baseline B", "+STGAL (B)")}
    ladder = oracle_ladder(scores, (5.0, 6.0), {"ceiling": {"R1": 9.0, "mAP": 8.0}})
    assert [r["mAP"] for r in ladder] == [2.0, 2.0, 4.0, 6.0, 8.0]
    scores["oracle positives"] = {"Pv": (7.0, 7.5), "Pa": (7.0, 7.7)}
    ladder = oracle_ladder(scores, (5.0, 6.0), None)
    assert [r["mAP"] for r in ladder][4:] == [7.5, 7.7, "n/a: bounds=False"]


def test_oracle_labels_merge_each_person_across_cameras():
    # tracks 0-4 in cameras 0, 1, 0, 1, 1; persons 7, 7, 8, 8, 7
    data = STGALData(None, np.arange(5), np.array([0, 1, 0, 1, 1]), np.zeros(5), np.arange(5), [], 5)
    mined = MinedLabels(np.zeros((0, 2), int), np.arange(5), [], np.array([[0, 2]]), [np.array([0, 2])])
    lab = oracle_labels(mined, np.array([7, 7, 8, 8, 7]), data)
    assert lab.pairs.tolist() == [[0, 1], [0, 4], [2, 3]]  # 1-4 share camera 1: not a cross-camera pair
    assert len(np.unique(lab.comp)) == 2 and lab.comp[0] == lab.comp[1] == lab.comp[4]
    assert sorted(lab.images[lab.comp[0]].tolist()) == [0, 1, 4]
    assert lab.negatives is mined.negatives and lab.groups is mined.groups


def test_settings_reference_covers_our_settings():
    cfg = profile_config(dict(arch="small", height=64, width=32, batch=32, lr_stage1=0.01, lr_stage2=0.005,
                              iters_stage1=300, iters_stage2=300, chunks=3), 25.0, "market1501")
    ref = stgal_reference("market1501", 25.0)
    rows = settings_table(our_settings(cfg, "the shared start", 100, 10.0), ref, "default")
    assert all(not r["ours"].startswith("n/a") for r in rows)  # every reference setting is one of ours
    assert {r["setting"] for r in rows if r["same"] == "yes"} >= {"eps", "sigma_mode", "ibbs_k", "delta_max"}
    assert stgal_reference("dukemtmc", 59.94)["eps"].value == 600
    assert pt_variants("dukemtmc")["code"]["abs_delta"] and not pt_variants("market1501")["code"]["abs_delta"]
    with pytest.raises(BadInputError, match="pt_variant"): profile_config({}, 25.0, "market1501", "eq4")


def test_run_config_names_its_parent_and_changes_the_checkpoint():
    from reid_nb.core import config_hash
    cfg = stgal_config(25.0, iters_stage1=7, lr_stage2=0.5)
    one, two = run_config("stage1", 1, cfg, seed=0), run_config("stage2", 2, cfg, parent={"x": 1}, seed=0)
    assert (one["n_iters"], two["lr"], two["parent"]) == (7, 0.5, {"x": 1})
    assert config_hash(one) != config_hash(run_config("stage1", 1, cfg, seed=1))


def test_discussion_pieces():
    assert travel_text([]) == ""
    assert "α = 0.01: a median" in alpha_text(0.01, 300.0, {})
    row = {"P_a - P_v R1": 2.0, "P_a - P_v mAP": -1.5}
    assert "almost flat" in alpha_text(0.5, 10.0, row) and "still separates" in alpha_text(0.5, 1000.0, row)
    fields = dict(dataset="synth", profile="smoke", seed=0, n_tracks=5, batch=32)
    assert all("{" not in c.format(**fields) for c in STGAL_CAPTIONS.values())


def test_the_budget_scales_both_stages_of_the_codes_schedule_alike():
    """issue 23, by hand: 96,000 images of batch 32 are 3,000 iterations; the code's 30,001 + 30,000 become 1,500 +
    1,500 (factor 96,000 / (60,001 x 32))."""
    from reid_nb.profiles import check_settings
    from reid_nb.stgal import stgal_budget
    s = stgal_budget(check_settings("stgal", "default", {}), "synth", 25.0, 96_000)
    assert (s.settings["iters_stage1"], s.settings["iters_stage2"], s.images) == (1500, 1500, 96_000)
    assert stgal_budget(check_settings("stgal", "smoke", {}), "synth", 25.0, None, 0.5).settings["iters_stage1"] == 6
