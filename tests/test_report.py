"""reid_nb.report against hand-computed cases, the spec's published tables and exact bootstrap distributions."""
import itertools
import re
from collections import Counter
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from reid_nb.core import BadInputError  # noqa: E402
from reid_nb.evaluation import evaluate  # noqa: E402
from reid_nb.report import (METRICS, PUBLISHED, TAGS, _boot_means, _paired, caption, claim, claim_row,  # noqa: E402
                            claims_rows, comparability, figure5_claim, gain, gap_closed, mean_sd, metrics_pct,
                            paper_claims, paper_row, provenance, published, published_gain, reference_dataset,
                            run_setup, save_figure, show_table)

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "docs" / "spec" / "METHODS.md"


# --- metrics -------------------------------------------------------------------------------------------------------
def test_metrics_pct_on_the_hand_example():
    dist = np.array([[0.5, 0.1, 0.05, 0.2, 0.7, 0.3], [0.4, 0.2, 0.1, 0.05, 0.3, 0.6]])
    r = evaluate(dist, np.array([1, 2]), np.array([1, 2, 1, -1, 1, 0]), np.array([0, 1]), np.array([1, 0, 0, 1, 2, 1]))
    m = metrics_pct(r)
    assert list(m) == list(METRICS)
    # A: matches at ranks 3, 4 (AP 5/12, INP 2/4); B: rank 2 (AP 1/2, INP 1/2)
    assert m["R1"] == 0 and m["R5"] == 100 and m["R10"] == 100
    assert m["mAP"] == pytest.approx(100 * (5 / 12 + 1 / 2) / 2) and m["mINP"] == pytest.approx(50)
    with pytest.raises(BadInputError, match="at least 10 ranks"):
        metrics_pct({"cmc": [0.5] * 5, "mAP": 0.1, "mINP": 0.1})


# --- published numbers ---------------------------------------------------------------------------------------------
def _spec_table(heading: str) -> list[list[str]]:
    """Rows (cells) of the first Markdown table after `heading` in docs/spec/METHODS.md."""
    text = SPEC.read_text(encoding="utf-8")
    rows, started = [], False
    for line in text[text.index(heading):].splitlines()[1:]:
        if line.startswith("|"):
            started = True
            rows.append([c.strip().strip("*") for c in line.strip("|").split("|")])
        elif started:
            break
    return rows


def test_calr_records_equal_the_spec_tables():
    people = {r[0]: r for r in _spec_table("**Person re-ID (Market1501")}
    veri = {r[0]: r for r in _spec_table("**VeRi-776 (mAP")}
    cols = {"market1501": 2, "dukemtmc": 6, "msmt17": 10}
    checked = 0
    for rec in (r for r in PUBLISHED if r.paper == "CALR" and r.metric in METRICS):
        offset = ("mAP", "R1", "R5", "R10").index(rec.metric)
        if rec.dataset == "veri":
            name = {"CALR(IBN+GeMPool)": "CALR(IBN+GEM)"}.get(rec.method, rec.method)
            cell = veri[name][2 + offset]
        else:
            cell = people["Baseline (CALR's)" if rec.method == "Baseline" else rec.method][cols[rec.dataset] + offset]
        assert float(cell) == rec.value, rec
        checked += 1
    assert checked == 4 * 4 * 4


def test_uga_records_equal_the_spec_table():
    table = {r[0]: r for r in _spec_table("### 7.2 UGA")}
    names = {"market1501": "Market-1501", "dukemtmc": "DukeMTMC-reID", "msmt17": "MSMT17"}
    for ds, name in names.items():
        assert published("UGA", ds, "UGA") == {"R1": float(table[name][1]), "mAP": float(table[name][2])}
    assert {r.tag for r in PUBLISHED if r.paper == "UGA"} == {"[MEM]"}


def test_stgal_tables_by_hand():
    # the paper's Tables 1-3 (seed document 001), Market then Duke, R1 / mAP
    assert published("STGAL", "market1501", "Baseline A") == {"R1": 30.2, "mAP": 10.1}
    assert published("STGAL", "dukemtmc", "BBP") == {"R1": 67.2, "mAP": 46.1}
    assert published("STGAL", "dukemtmc", "Ours (P_a)") == {"R1": 86.0, "mAP": 68.5}
    same = [published("STGAL", "market1501", m) for m in ("Ours (P_v)", "+STGAL (B)", "IBBS (ours)")]
    assert same[0] == same[1] == same[2] == {"R1": 72.1, "mAP": 48.4}
    assert published("STGAL", "msmt17", "BBP") is None
    assert published_gain("STGAL", "dukemtmc", "+STGAL (B)", "Baseline B") == pytest.approx({"R1": 22.7,
                                                                                           "mAP": 20.5})


def test_every_record_is_well_formed_and_unique():
    keys = Counter((r.paper, r.table, r.dataset, r.method, r.metric) for r in PUBLISHED)
    assert max(keys.values()) == 1
    assert all(r.tag in TAGS and r.dataset in ("market1501", "dukemtmc", "msmt17", "veri") for r in PUBLISHED)
    pct = [r for r in PUBLISHED if r.metric in METRICS]
    assert all(0 < r.value <= 100 for r in pct) and len(PUBLISHED) - len(pct) == 21  # Appendix A: 3 x 7


def test_published_refuses_unknown_names():
    with pytest.raises(BadInputError, match="paper='ICE'"):
        published("ICE", "market1501", "ICE")
    with pytest.raises(BadInputError, match="prints no such row"):
        published("CALR", "market1501", "CALR(IBN-b)")
    assert reference_dataset("synth") == "market1501" and reference_dataset("veri") == "veri"


# --- row scheme ----------------------------------------------------------------------------------------------------
def test_paper_row_hand_case():
    row = paper_row("CALR", {"mAP": 80.0, "R1": 90.0}, published("CALR", "market1501", "CALR"), note="x")
    assert list(row) == ["method", "note", "R1", "R5", "R10", "mAP", "paper R1", "paper R5", "paper R10", "paper mAP",
                         "R1 - paper", "R5 - paper", "R10 - paper", "mAP - paper"]
    assert row["R1 - paper"] == pytest.approx(90.0 - 92.5) and row["mAP - paper"] == pytest.approx(80.0 - 82.8)
    # metrics shown: ours and the paper's, in METRICS order; ours not measured for R5/R10
    assert row["R5"] == "n/a: not measured" and row["paper R5"] == 96.9 and row["R5 - paper"] == "n/a"


def test_paper_row_na_cells_and_seeds():
    row = paper_row("intra only", {"R1": 50.0}, None, "ablation not retrieved")
    assert row == {"method": "intra only", "R1": 50.0, "paper R1": "n/a: ablation not retrieved", "R1 - paper": "n/a"}
    row = paper_row("three seeds", {"R1": [70.0, 72.0, 74.0]}, {"R1": 75.0, "mAP": 60.0}, metrics=("R1",))
    assert row["R1"] == 72.0 and row["R1 sd"] == 2.0 and row["R1 - paper"] == -3.0 and "mAP" not in row
    with pytest.raises(BadInputError, match="reason_if_none"):
        paper_row("x", {"R1": 1.0}, None)
    with pytest.raises(BadInputError, match="ours_reason"):
        paper_row("x", None, {"R1": 1.0})
    with pytest.raises(BadInputError, match="unknown metric"):
        paper_row("x", {"map": 1.0}, None, "none")


def test_gain_is_a_minus_b():
    assert gain({"R1": 5.0, "mAP": 3.0}, {"R1": 2.0, "mAP": 4.0}) == {"R1": 3.0, "mAP": -1.0}
    assert published_gain("CALR", "veri", "CALR", "Baseline") == pytest.approx(
        {"R1": 88.7 - 85.9, "R5": 92.6 - 90.6, "R10": 94.8 - 93.0, "mAP": 42.9 - 38.8})


# --- claim rule ----------------------------------------------------------------------------------------------------
def _exact_boot_distribution(diffs):
    """Exact distribution of the two-level bootstrap mean, by enumerating every draw (plain loops)."""
    dist = Counter()
    S = len(diffs)
    for seeds in itertools.product(range(S), repeat=S):
        per_seed = []
        for s in seeds:
            d = diffs[s]
            per_seed.append([sum(d[i] for i in q) / len(d) for q in itertools.product(range(len(d)), repeat=len(d))])
        for combo in itertools.product(*per_seed):
            p = S ** -S * np.prod([len(diffs[s]) ** -len(diffs[s]) for s in seeds])
            dist[round(sum(combo) / S, 9)] += p
    return dist


@pytest.mark.parametrize("diffs", [[[0.0, 1.0]], [[0.0, 0.0], [1.0, 1.0]], [[1.0], [0.0, 1.0]],
                                   [[0.2, 0.4, 0.9], [0.5, 0.0]]], ids=["one-seed", "two-seeds", "ragged", "mixed"])
def test_bootstrap_matches_the_exact_distribution(diffs):
    exact = _exact_boot_distribution(diffs)
    means = _boot_means([np.array(d) for d in diffs], 40_000, np.random.default_rng(1), cells=5_000)
    seen = Counter(np.round(means, 9))
    assert set(seen) <= set(exact)
    for v, p in exact.items():
        assert abs(seen[v] / len(means) - p) < 0.01, (v, seen[v] / len(means), p)


def test_claim_hand_cases():
    b = np.random.default_rng(0).random((2, 50)) * 0.8
    same = claim(b, b.copy())
    assert (same.mean_diff, same.low, same.high, same.verdict) == (0.0, 0.0, 0.0, "inconclusive")
    up = claim(b + 0.1, b)
    assert up.verdict == "reproduced" and up.low == pytest.approx(10) and up.high == pytest.approx(10)
    assert claim(b + 0.1, b, claimed="less").verdict == "contradicted"
    assert claim(b, b + 0.1).verdict == "contradicted" and claim(b, b + 0.1, claimed="less").verdict == "reproduced"
    # one seed, diffs 0 and 1: bootstrap means 0, 50, 100 (points) with 1/4, 1/2, 1/4 -> 95 % interval [0, 100]
    half = claim([np.array([1.0, 1.0])], [np.array([1.0, 0.0])], n_boot=4000)
    assert (half.mean_diff, half.low, half.high, half.verdict) == (50.0, 0.0, 100.0, "inconclusive")
    assert (half.n_seeds, half.n_queries) == (1, 2)


def test_claim_mean_is_the_mean_of_seed_means_and_skips_nan():
    a = [np.array([0.5, np.nan, 1.0]), np.array([0.3])]
    b = [np.array([0.25, np.nan, 0.5]), np.array([0.1])]
    c = claim(a, b)
    assert c.mean_diff == pytest.approx(100 * ((0.25 + 0.5) / 2 + 0.2) / 2) and c.n_queries == 1
    assert [len(d) for d in _paired(a, b)] == [2, 1]


def test_claim_is_seeded_and_refuses_unpaired_input():
    rng = np.random.default_rng(3)
    a, b = rng.random((3, 40)), rng.random((3, 40))
    assert claim(a, b, seed=5) == claim(a, b, seed=5)
    with pytest.raises(BadInputError, match="same seeds"):
        claim(a, b[:2])
    with pytest.raises(BadInputError, match="same queries"):
        claim(a, b[:, :-1])
    a2 = a.copy()
    a2[0, 0] = np.nan
    with pytest.raises(BadInputError, match="skip different queries"):
        claim(a2, b)
    with pytest.raises(BadInputError, match=r"\[0, 1\]"):
        claim(100 * a, b)
    with pytest.raises(BadInputError, match="claimed"):
        claim(a, b, claimed="better")


def test_claim_interval_width_follows_the_standard_error():
    # one seed, n queries with sd s: the bootstrap sd of the mean is ~ s / sqrt(n); 95 % width ~ 2 * 1.96 * s / sqrt(n)
    rng = np.random.default_rng(7)
    b = rng.random(2000) * 0.5
    a = np.clip(b + rng.normal(0.02, 0.1, 2000), 0, 1)
    d = a - b
    c = claim(a, b, n_boot=4000)
    width = 2 * 1.96 * 100 * d.std() / np.sqrt(len(d))
    assert abs((c.high - c.low) - width) < 0.1 * width and c.verdict == "reproduced"


def test_claim_row():
    c = claim(np.array([[0.6, 0.7]]), np.array([[0.5, 0.5]]))
    row = claim_row("A above B", c, "+1.0 mAP")
    assert row["ours: mAP A - B [95 % interval]"] == "+15.0 [+10.0, +20.0]" and row["verdict"] == "reproduced"
    assert claim_row("x", c)["paper"] == "n/a: gain not retrieved"


def test_paper_claims_name_rows_of_their_notebook_and_published_rows():
    claims = paper_claims("sstt")
    assert len(claims) == 10 and {c[2] for c in claims} == {"uga", "stgal", "calr"}
    assert claims[0][3:5] == ("full|sstt|camera_bn", "intra|sstt|camera_bn")
    for paper, _, _, _, _, pub in claims:  # every published pair the claims cite exists in the records
        if pub is not None: assert published_gain(paper, "market1501", *pub) is not None, (paper, pub)


def test_claims_rows_apply_the_rule_or_say_which_rows_are_missing():
    a, b = np.array([[0.6, 0.7], [0.8, 0.4]]), np.array([[0.5, 0.5], [0.5, 0.5]])
    ap = {"uga": {}, "stgal": {}, "calr": {"CALR": a, "Baseline (Cluster-Contrast)": b}}
    rows = claims_rows(paper_claims("assume"), ap, {m: f"{m} sets" for m in ap}, "synth", n_boot=500)
    assert rows[0] == {"method": "UGA", "claim": "the inter-camera stage beats intra-camera learning alone",
                       "verdict": "n/a: rows 'full|assume|camera_bn' / 'intra|assume|camera_bn' not saved by uga"}
    calr = rows[5]
    expect = claim(a, b, n_boot=500, seed=0)
    assert calr["ours: mAP A - B [95 % interval]"] == f"{expect.mean_diff:+.1f} [{expect.low:+.1f}, {expect.high:+.1f}]"
    assert calr["A mAP"] == "62.5 ± 3.5 (2 seeds)" and calr["B mAP"] == "50.0 ± 0.0 (2 seeds)"  # 65, 60: sd 5/√2
    assert calr["result sets"] == "calr sets" and calr["paper"].endswith("(Market-1501)")


def test_figure5_claim_pairs_refined_and_global_precision_per_epoch():
    epoch = lambda g, r: [{"clusters": "global w/o −1", "pairwise_precision": str(g)},
                          {"clusters": "refined", "pairwise_precision": str(r)},
                          {"clusters": "global", "pairwise_precision": "0"}]
    row = figure5_claim([epoch(0.5, 0.7) + epoch(0.6, 0.7), epoch(0.4, 0.5) + epoch(0.5, 0.6)], "calr sets", n_boot=500)
    assert (row["method"], row["seeds"], row["queries"], row["verdict"]) == ("CALR", 2, 2, "reproduced")
    assert row["ours: mAP A - B [95 % interval]"].startswith("+12.5")  # mean of (20, 10) and (10, 10)
    assert figure5_claim([], "calr sets") is None


# --- seeds, gaps ---------------------------------------------------------------------------------------------------
def test_mean_sd_and_gap_closed():
    assert mean_sd([1.0, 2.0, 3.0, 4.0], 2) == "2.50 ± 1.29 (4 seeds)"  # sd = sqrt(5/3)
    assert mean_sd([3.14159], 3) == "3.142 (1 seed)"
    with pytest.raises(BadInputError):
        mean_sd([])
    assert gap_closed(26.2, 10.1, 48.4) == pytest.approx(100 * 16.1 / 38.3)
    assert gap_closed(1.0, 5.0, 3.0).startswith("n/a: no gap")


# --- run set-up, captions, files -----------------------------------------------------------------------------------
def test_run_setup_tags_and_folders(tmp_path):
    s = run_setup("stgal", "synth", "default", 4, "cpu", root=tmp_path)
    assert s.tag == "synth-default-default-s4" and s.out_dir == tmp_path / "stgal"
    assert s.ckpt_dir == tmp_path / "stgal" / "checkpoints" / "synth-default-default-s4"
    assert s.name("table2") == "stgal/table2-synth-default-default-s4" and str(s.device) == "cpu"
    assert run_setup("calr", "veri", "paper", (0, 1), "cpu").describe() == "dataset 'veri', profile 'paper', seeds 0, 1"
    for bad in [dict(method="UGA"), dict(profile="fast"), dict(dataset="cuhk"), dict(seed=[1, 1])]:
        args = dict(method="uga", dataset="market1501", profile="paper", seed=0, device="cpu") | bad
        with pytest.raises(BadInputError):
            run_setup(**args)


def test_captions_say_synthetic_numbers_are_not_comparable(tmp_path):
    s = run_setup("uga", "synth", "smoke", 0, "cpu", root=tmp_path)
    text = caption("UGA results", s, provenance("UGA"))
    where = "(dataset 'synth', world 'tiny', profile 'smoke', seed 0)."
    assert text.startswith(f"UGA results on the synthetic world {where}")
    assert "NOT comparable to Market-1501's" in text and "[MEM]" in text
    assert "NOT comparable" not in comparability("market1501")


def test_show_table_and_save_figure_write_atomically(tmp_path):
    s = run_setup("calr", "synth", "smoke", 0, "cpu", root=tmp_path)
    rows = [paper_row("CALR", {"mAP": 10.0}, published("CALR", "synth", "CALR"), metrics=("mAP",))]
    csv_path, md_path = show_table(rows, s.name("main"), "cap", root=tmp_path)
    assert csv_path.read_text().splitlines() == ["method,mAP,paper mAP,mAP - paper", "CALR,10.0,82.8,-72.8"]
    assert md_path.read_text().startswith("cap\n\n| method | mAP | paper mAP | mAP - paper |")
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    png = save_figure(fig, s.name("fig"), root=tmp_path)
    plt.close(fig)
    assert png == tmp_path / "calr" / "fig-synth-tiny-smoke-s0.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in png.parent.iterdir()) == sorted([png.name, csv_path.name, md_path.name])


def test_spec_copy_has_the_tag_legend():
    text = SPEC.read_text(encoding="utf-8")
    assert all(tag in text[:4000] for tag in TAGS)
    assert re.search(r"^## 7\. Published results", text, re.M)
