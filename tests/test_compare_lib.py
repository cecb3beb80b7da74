"""reid_nb.compare on hand-made rows, scores and labels: each number worked out by hand or by a plain loop."""
import numpy as np
import pytest
import torch

from reid_nb.compare import (Comparison, Inference, ap_over_seeds, calr_on_ibbs, calr_tracklet_key, ceiling_entry,
                             composition_row, composition_seed_rows, ibbs_global_labels, main_row, method_rows,
                             numbers_say, read_handoffs, row_scores, row_sources, seed_rows, trained_row,
                             uga_on_calr_labels, visual_dist)
from reid_nb.data import Records
from reid_nb.runs import Cost, Handoff, Row, save_handoff
from reid_nb.sstt import assume_tracklets


def records(pid, cam):
    n, t = len(pid), np.full(len(pid), np.nan)
    return Records(path=[f"{i}.jpg" for i in range(n)], pid=pid, cam=cam, seq=[-1] * n, frame=[-1] * n,
                   bbox_idx=[-1] * n, vcam=cam, t_frames=t, t_sec=t, tracklet=[-1] * n)


def row(q, g, metric="cosine", cost=Cost()):
    t = lambda x: torch.tensor(x, dtype=torch.float32)
    return Row(t(q), t(g), t(q), metric, cost)


QUERY, GALLERY = records([1, 2], [0, 0]), records([1, 2, 1, 2], [1, 1, 1, 1])
Q, G = [[1, 0], [0, 1]], [[1, 0.1], [0.1, 1], [0.9, 0.5], [-1, 0]]


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_a_row_is_scored_as_its_notebook_ranks_it(metric):
    """By hand, either distance: query 1's matches rank 1 and 2 (AP 1), query 2's rank 1 and 4 (AP (1 + 2/4) / 2)."""
    m = row_scores(row(Q, G, metric), QUERY, GALLERY)
    assert m["mAP"] == pytest.approx(87.5) and m["R1"] == 100.0 and m["mINP"] == pytest.approx(75.0)


def test_visual_dist_is_squared_euclidean_on_unit_vectors_for_cosine_rows():
    q, g = np.array(Q, float), np.array(G, float)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    expect = [[((a - b) ** 2).sum() for b in unit(g)] for a in unit(q)]
    assert np.allclose(visual_dist(row(Q, G)), expect, atol=1e-6)
    assert np.allclose(visual_dist(row(Q, G, "euclidean")), [[((a - b) ** 2).sum() for b in g] for a in q], atol=1e-6)


def metrics(m):
    return dict(R1=m, R5=m, R10=m, mAP=m, mINP=m)


def comparison(bounds=True):
    rows = {"floor": {s: row([[1.0]], [[1.0]]) for s in (0, 1)},
            "CALR": {0: row([[1.0]], [[1.0]], cost=Cost(256, 10.0)), 1: row([[1.0]], [[1.0]], cost=Cost(257, 12.0))},
            "UGA": {0: row([[1.0]], [[1.0]], cost=Cost(100, 5.0)), 1: "n/a: no uga result set for seed 1"},
            "ceiling": {s: "n/a: ceiling weights not kept" for s in (0, 1)}}
    b = {s: {"ceiling": metrics(80.0), "ceiling_images": 640} for s in (0, 1)} if bounds else {0: None, 1: None}
    c = Comparison([0, 1], rows, b, {r: f"{r}: sets" for r in rows})
    c.scores = {"floor": {0: metrics(20.0), 1: metrics(20.0)}, "CALR": {0: metrics(50.0), 1: metrics(60.0)},
                "UGA": {0: metrics(35.0)}, "ceiling": {0: metrics(80.0), 1: metrics(80.0)} if bounds else {}}
    return c


def test_main_row_mean_sd_cost_and_gap_closed_by_hand():
    r = main_row(comparison(), "CALR")
    gaps = [100 * (50 - 20) / 60, 100 * (60 - 20) / 60]  # 50 % and 66.7 %
    assert r["mAP"] == f"55.0 ± {np.std([50, 60], ddof=1):.1f} (2 seeds)" == "55.0 ± 7.1 (2 seeds)"
    expect = f"{np.mean(gaps):.1f} ± {np.std(gaps, ddof=1):.1f} (2 seeds)"
    assert r["gap closed %"] == expect == "58.3 ± 11.8 (2 seeds)"
    assert (r["training images seen"], r["wall time s"]) == (256, "11 ± 1 (2 seeds)")  # mean 256.5 rounds to even
    assert r["note"] == "" and r["result sets"] == "CALR: sets"


def test_a_missing_seed_a_missing_ceiling_and_a_read_back_row_say_so():
    c = comparison()
    uga = main_row(c, "UGA")
    assert uga["mAP"] == "35.0 (1 seed)" and uga["gap closed %"] == "25.0 (1 seed)"
    assert uga["note"] == "seeds missing: n/a: no uga result set for seed 1"
    ceiling = main_row(c, "ceiling")
    assert ceiling["training images seen"] == 640 and ceiling["wall time s"].startswith("n/a: ceiling weights not kept")
    no_bounds = comparison(bounds=False)
    assert main_row(no_bounds, "CALR")["gap closed %"] == "n/a: no ceiling"
    assert main_row(no_bounds, "ceiling") == {"method": "ceiling", **{m: "n/a: ceiling weights not kept"
                                                                     for m in ("R1", "R5", "R10", "mAP", "mINP")}}
    assert {r["gap closed %"] for r in seed_rows(no_bounds)} == {"n/a"}
    c.rows["CALR"][0] = row([[1.0]], [[1.0]], cost=Cost(256, 10.0, read_back=True))
    assert main_row(c, "CALR")["wall time s"].startswith("n/a: read back")


def test_seed_rows_give_every_row_on_every_seed_it_has():
    rows = seed_rows(comparison())
    assert [(r["method"], r["seed"]) for r in rows] == [("floor", 0), ("floor", 1), ("CALR", 0), ("CALR", 1),
                                                         ("UGA", 0), ("ceiling", 0), ("ceiling", 1)]
    assert rows[3]["gap closed %"] == pytest.approx(100 * 40 / 60)


def test_ceiling_entry_without_cache_or_weights():
    assert ceiling_entry((None, None), 3, None, {}) == (None, "n/a: no cached ceiling for seed 3 (run a method "
                                                              "notebook with bounds=True)")
    bounds, why = ceiling_entry(({"ceiling": {}}, None), 0, None, {})
    assert bounds == {"ceiling": {}} and why.startswith("n/a: ceiling weights not kept")


def test_handoffs_are_read_per_seed_and_rows_named_as_in_their_notebook(tmp_path):
    save_handoff(Handoff(rows={"CALR": row(Q, G)}), tmp_path, "calr", "w-smoke-s0")
    sets = {"calr": {0: (tmp_path, None), 1: (None, "n/a: no calr result set for seed 1")},
            "uga": {0: (tmp_path, None), 1: (None, "n/a: no uga result set for seed 1")},
            "stgal": {0: (None, "n/a: no stgal"), 1: (None, "n/a: no stgal")}}
    h = read_handoffs(sets, "w-smoke")
    assert isinstance(h["calr", 0], Handoff) and h["calr", 1] == "n/a: no calr result set for seed 1"
    assert h["uga", 0].startswith(f"n/a: {tmp_path.name} holds no handoff-w-smoke-s0.pt")
    rows = method_rows(h, [0, 1])
    assert torch.equal(rows["CALR"][0].gallery, torch.tensor(G, dtype=torch.float32))
    assert rows["Cluster-Contrast"][0] == "n/a: no row 'Baseline (Cluster-Contrast)' in calr's hand-off"
    assert rows["STGAL (stage 2, P_v)"] == {0: "n/a: no stgal", 1: "n/a: no stgal"}
    src = row_sources(sets, {0: "/x/start-s0.pt", 1: "/x/start-s1.pt"})
    assert src["floor"] == "floor: the starting point of each seed, s0 start-s0.pt, s1 start-s1.pt" and src["CALR"] == f"CALR: s0 {tmp_path.name}"


def test_composition_gains_over_the_row_and_over_its_best_part():
    c = comparison()
    m = lambda a, r1: {"mAP": a, "R1": r1, "R5": r1, "R10": r1, "mINP": a}
    c.composed = {"CALR": {s: {"alone": m(50.0 + s, 60.0), "+ space-time fusion": m(55.0 + s, 62.0),
                               "+ k-reciprocal re-ranking": m(52.0 + s, 61.0),
                               "+ re-ranking + fusion": m(58.0 + s, 64.0)} for s in (0, 1)}}
    ds = type("DS", (), {"name": "toy", "has_clock": True})
    both = composition_row(c, "CALR", "+ re-ranking + fusion", ds)
    assert both["mAP gain over the row"] == "8.0 ± 0.0 (2 seeds)"
    assert both["R1 gain over the row"] == "4.0 ± 0.0 (2 seeds)"
    assert both["mAP gain over its best part"] == "3.0 ± 0.0 (2 seeds)" and both["mAP"] == "58.5 ± 0.7 (2 seeds)"
    fusion = composition_row(c, "CALR", "+ space-time fusion", ds)
    assert fusion["mAP gain over its best part"] == "5.0 ± 0.0 (2 seeds)"  # its only part: the row alone
    c.composed["UGA"] = {0: {"alone": m(1.0, 1.0), "+ k-reciprocal re-ranking": m(2.0, 2.0)}}
    ds.has_clock = False
    assert composition_row(c, "UGA", "+ space-time fusion", ds)["mAP"] == ("n/a: toy has no clock (STGAL's fusion "
                                                                           "needs one)")
    assert [r["composition"] for r in composition_seed_rows(c)][:3] == ["CALR + space-time fusion"] + [
        "CALR + k-reciprocal re-ranking", "CALR + re-ranking + fusion"]


def test_ibbs_components_become_calr_global_labels_on_six_images():
    """Tracks 0 and 2 merged by IBBS into component 0, track 1 alone; images 3 and 5 are in no track."""
    track, comp = np.array([0, 0, 1, -1, 2, -1]), np.array([0, 1, 0])
    assert ibbs_global_labels(track, comp).tolist() == [0, 0, 1, 2, 0, 3]
    assert ibbs_global_labels(np.array([-1, -1]), np.array([], dtype=int)).tolist() == [0, 1]


def test_calr_local_clusters_become_one_uga_tracklet_per_cluster_and_camera():
    local, cam = np.array([0, 0, 1, 0, 0, 1, -1]), np.array([0, 0, 0, 1, 1, 1, 1])
    labels = assume_tracklets(calr_tracklet_key(local, cam), cam, n_cams=2)
    assert labels.n_tracklets == 4 and labels.tracklet[6] == -1
    for i in range(6):  # a plain loop: same tracklet exactly when same (cluster, camera)
        for j in range(6):
            assert (labels.tracklet[i] == labels.tracklet[j]) == ((local[i], cam[i]) == (local[j], cam[j]))


def test_training_compositions_without_a_parent_say_which():
    why = "n/a: no stgal result set for seed 0"
    assert calr_on_ibbs(Handoff(), why, None, {}, "cpu", 0, None) == why
    assert uga_on_calr_labels("n/a: no uga result set for seed 0", why, None, {}, None, "cpu", 0, None) == (
        "n/a: no uga result set for seed 0")


def test_trained_row_gains_over_each_parent_on_the_first_seed():
    c = comparison()
    made = (row(Q, G, cost=Cost(640, 3.4)), "3 tracklets")
    r = trained_row(c, "UGA on CALR", made, ["UGA", "CALR"], QUERY, GALLERY)
    assert r["mAP"] == "87.5 (seed 0)" and r["mAP gain over UGA"] == pytest.approx(52.5)
    assert r["mAP gain over CALR"] == pytest.approx(37.5) and (r["training images seen"], r["wall time s"]) == (640, 3)
    assert r["result sets"] == "UGA: sets; CALR: sets" and r["note"] == "3 tracklets"
    again = trained_row(c, "x", (row(Q, G, cost=Cost(1, 1.0, True)), ""), ["CALR"], QUERY, GALLERY)
    assert again["wall time s"].startswith("n/a: read back")
    assert trained_row(c, "x", "n/a: extras=False", ["CALR"], QUERY, GALLERY) == {"composition": "x",
                                                                                   "mAP": "n/a: extras=False"}


def test_numbers_say_names_the_leader_and_the_compositions():
    c = comparison()
    said = numbers_say(c, [{"composition": "UGA + fusion", "mAP gain over the row": "2.0 (1 seed)"},
                           {"composition": "CALR + fusion", "mAP gain over the row": "-1.0 (1 seed)"}],
                       [{"composition": "UGA on CALR", "mAP": "70.0 (seed 0)", "mAP gain over CALR": 15.0,
                         "mAP gain over UGA": "n/a: none", "note": "3 tracklets"}], "**head**")
    lines = said.splitlines()
    assert lines[:2] == ["**head**", ""]
    assert lines[2] == ("* The method that leads in mean mAP is **CALR** (55.0 %); the others: UGA 35.0 %. "
                        "Floor 20.0 %, ceiling 80.0 %.")
    assert "UGA + fusion (2.0 (1 seed))" in lines[3]
    assert lines[4] == "* Those that do not: CALR + fusion (-1.0 (1 seed))."
    assert lines[5] == ("* UGA on CALR: mAP 70.0 (seed 0), +15.0 over CALR, mAP gain over UGA: n/a: none "
                        "(3 tracklets).")


def test_ap_over_seeds_pairs_rows_present_in_every_seed():
    ap, missing = ap_over_seeds({0: Handoff(ap={"A": np.array([1.0, 0.5]), "B": np.array([0.2, 0.4])}),
                                 1: Handoff(ap={"A": np.array([0.5, 0.0])}), 2: "n/a: no run"})
    assert list(ap) == ["A"] and ap["A"].tolist() == [[1.0, 0.5], [0.5, 0.0]] and missing == {2: "n/a: no run"}


def test_inference_without_a_clock_needs_no_tracks():
    ds = type("DS", (), {"name": "toy", "has_clock": False, "train": None, "fps": None})
    assert Inference(ds, {}, 10.0).tracks is None
