"""Tests of the synthetic world (reid_nb.synth: simulation, reid_nb.render: pixels, reid_nb.world: the world on disk,
its cache and the `synth` dataset) against its own ground truth and independent references."""
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from reid_nb import synth, world
from reid_nb.core import BadInputError
from reid_nb.data import load_dataset, open_dataset, synth_concat_frames
from reid_nb.render import new_canvas, paint_person, render_image
from reid_nb.synth import PRESETS, box_iou, build_world, knobs, mixture_cdf, mixture_pdf, truth_statistics, world_config
from reid_nb.world import load_truth, make_world, travel_components, world_json

ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r"([-\d]+)_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg")
FOLDERS = ("bounding_box_train", "bounding_box_test", "query")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny world rendered with 2 workers, and again with 1 worker."""
    d = tmp_path_factory.mktemp("synth")
    return make_world(d / "w2", "tiny", seed=0, workers=2), make_world(d / "w1", "tiny", seed=0, workers=1)


@pytest.fixture(scope="module")
def truth(tiny):
    return load_truth(tiny[0])


def files_of(root):
    return sorted(f"{d}/{p.name}" for d in FOLDERS for p in (root / d).iterdir())


def lognormal_mixture_cdf(components, t):
    """Independent reference: scipy's log-normal CDFs, weighted."""
    return sum(c["weight"] * stats.lognorm(s=c["sigma"], scale=c["median_s"]).cdf(t) for c in components)


# --- configuration -----------------------------------------------------------------------------------------------

def test_presets_and_overrides():
    for name in PRESETS: world_config(name)
    assert world_config("default") == synth.WorldConfig()
    cfg = world_config("tiny", n_cams="4", difficulty="0.8", seq_minutes="5,9")
    assert (cfg.n_cams, cfg.difficulty, cfg.seq_minutes) == (4, 0.8, (5.0, 9.0))
    duke = world_config("duke-like")
    assert (duke.n_cams, duke.fps, duke.det_step, duke.topology, duke.frac_junk) == (8, 60, 120, "corridor", 0)


@pytest.mark.parametrize("bad, field", [(dict(n_camz=3), "n_camz"), (dict(n_cams=10), "n_cams"),
                                        (dict(difficulty=1.5), "difficulty"), (dict(p_detect=0), "p_detect"),
                                        (dict(seq_minutes=(1,), duration_min=120), "seq_minutes"),
                                        (dict(n_cams="four"), "n_cams"), (dict(n_cams=4.5), "n_cams"),
                                        (dict(seq_minutes="5,x"), "seq_minutes"), (dict(topology=3), "topology"),
                                        (dict(topology="ring"), "topology")])
def test_bad_config_names_the_field(bad, field):
    with pytest.raises(BadInputError, match=field):
        world_config("tiny", **bad)


def test_unknown_field_lists_valid_fields_and_unknown_preset():
    with pytest.raises(BadInputError) as e: world_config("tiny", colour=1)
    assert "colour" in str(e.value) and "n_train_ids" in str(e.value) and "difficulty" in str(e.value)
    with pytest.raises(BadInputError, match="market-mini"): world_config("huge")


def test_difficulty_moves_the_mechanisms():
    lo, hi = (build_world(world_config("tiny", difficulty=d), 0) for d in (0.0, 1.0))
    person = lambda w: w.images["kind"] == "person"
    occ = [(w.images["occluder"][person(w)] != "").mean() for w in (lo, hi)]
    jit = [w.images["jitter"][person(w) & (w.images["split"] != "query")].mean() for w in (lo, hi)]
    grouped = [np.mean([p["group"] >= 0 for p in w.people]) for w in (lo, hi)]
    assert occ[0] < occ[1] and jit[0] < jit[1] and grouped[0] < grouped[1]
    assert knobs(hi.cfg)["photo_k"] == pytest.approx(1.6) and knobs(lo.cfg)["lowres_factor"] == 2


# --- determinism -------------------------------------------------------------------------------------------------

def test_same_seed_same_world_whatever_workers(tiny):
    w2, w1 = tiny
    assert files_of(w2) == files_of(w1) and len(files_of(w2)) > 200
    for f in files_of(w2):
        assert np.array_equal(np.asarray(Image.open(w2 / f)), np.asarray(Image.open(w1 / f))), f
    for f in ("world/images.csv", "world/visits.csv", "world/identities.csv", "tracklets.csv", "world/world.json"):
        assert (w2 / f).read_text() == (w1 / f).read_text(), f


def test_pre_jpeg_arrays_repeat_and_depend_on_seed():
    a, b, c = (build_world(world_config("tiny"), s) for s in (3, 3, 4))
    assert list(a.images["file"]) == list(b.images["file"]) != list(c.images["file"])
    for k in (0, 7, len(a.images["file"]) - 1):
        assert np.array_equal(render_image(a, k), render_image(b, k))
    assert not np.array_equal(render_image(a, 0), render_image(c, 0))


# --- layout, names and splits ------------------------------------------------------------------------------------

def test_layout_and_every_name_parses(tiny, truth):
    root = tiny[0]
    assert sorted(p.name for p in root.iterdir()) == sorted([*FOLDERS, "readme.txt", "tracklets.csv", "world"])
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
    im = truth["images"]
    assert files_of(root) == sorted(im["file"])
    for f, pid, cam, seq, frame, box in zip(im["file"], im["pid"], im["cam"], im["seq"], im["frame"], im["bbox"]):
        m = NAME.fullmatch(f.split("/")[1])
        assert m, f
        assert re.match(r"([-\d]+)_c(\d)", f.split("/")[1])  # torchreid's pattern
        assert tuple(map(int, m.groups())) == (pid, cam + 1, seq, frame, box)
    assert all(Image.open(root / f).size == (64, 128) for f in im["file"][:20])


def test_ids_cameras_queries_and_splits(truth):
    im = truth["images"]; pid, cam, split, role = im["pid"], im["cam"], im["split"], im["role"]
    train, test = set(pid[split == "train"]), set(pid[(role == "test")])
    assert not train & test and min(train | test) > 0
    for p in train: assert len(set(cam[pid == p])) >= 2
    q, g = split == "query", split == "gallery"
    for p in test:
        seen = set(cam[(pid == p) & (q | g)])
        assert len(seen) >= 2
        qcams = cam[(pid == p) & q]
        assert sorted(qcams) == sorted(seen)  # exactly one query per (test id, camera)
        for c in qcams: assert ((pid == p) & g & (cam != c)).any()  # a true match in another camera
    for p in set(pid[role == "single"]):
        assert len(set(cam[pid == p])) == 1 and set(split[pid == p]) == {"gallery"}
    assert (im["bbox"][q] == 0).all() and (im["jitter"][q] == 0).all() and (im["bbox"][~q] >= 1).all()
    assert set(split[pid <= 0]) == {"gallery"}


def test_box_index_is_rank_in_camera_frame(truth):
    im = truth["images"]; nq = im["split"] != "query"
    keys = {}
    for c, g, b in zip(im["cam"][nq], im["global_frame"][nq], im["bbox"][nq]): keys.setdefault((c, g), []).append(b)
    for boxes in keys.values(): assert len(set(boxes)) == len(boxes) and max(boxes) <= 2 * len(boxes) + 2


def test_gallery_shares_and_box_ious(truth):
    im = truth["images"]; g = im["split"] == "gallery"
    n = g.sum()
    assert abs((im["pid"][g] == 0).sum() / n - 0.14) < 0.02 and abs((im["pid"][g] == -1).sum() / n - 0.19) < 0.02
    assert ((im["iou"][im["kind"] == "junk"] >= 0.2) & (im["iou"][im["kind"] == "junk"] <= 0.5)).all()
    assert (im["iou"][im["pid"] == 0] < 0.2).all()
    assert (im["iou"][im["kind"] == "person"] > 0.5).all()


def test_box_iou_against_rasterised_boxes():
    H, W = 128, 64
    yy, xx = np.mgrid[-200:200, -200:200] + 0.5
    def box(dx, dy, s): return (np.abs(xx - dx) <= s * W / 2) & (np.abs(yy - dy) <= s * H / 2)
    for dx, dy, s in [(0, 0, 1), (10, -7, 1.08), (-30, 0, 1), (40, 20, 0.92), (70, 0, 1)]:
        a, b = box(0, 0, 1), box(dx, dy, s)
        assert box_iou(dx, dy, s, W, H) == pytest.approx((a & b).sum() / (a | b).sum(), abs=0.01)


# --- clock, tracklets and travel times ---------------------------------------------------------------------------

def test_clock_formula(truth):
    im, w = truth["images"], truth["world"]
    seq_len, off = np.array(w["seq_len"]), np.array(w["clock_offset_frames"])
    lhs = (im["seq"] - 1) * seq_len[im["cam"]] + im["frame"]
    assert np.array_equal(lhs, im["global_frame"] + off[im["cam"]] + 1)
    assert np.array_equal(synth_concat_frames(im["cam"], im["seq"], im["frame"], w["seq_len"]), lhs)
    assert (im["frame"] >= 1).all() and (im["frame"] <= seq_len[im["cam"]]).all()
    assert (im["global_frame"] % w["det_step"] == 0).all()
    assert np.allclose(im["t_sec"], im["global_frame"] / w["fps"])
    assert isinstance(w["fps"], int) and w["n_cams"] == len(w["seq_len"]) == len(w["clock_offset_frames"])
    assert len(set(w["seq_len"])) > 1 and im["seq"].max() >= 2  # unequal sequences, several per camera


def test_tracklets_are_visits(tiny, truth):
    root, im, v = tiny[0], truth["images"], truth["visits"]
    tr = load_truth(root)["images"]
    rows = (root / "tracklets.csv").read_text().splitlines()
    assert rows[0] == "file,tracklet"
    listed = dict(r.split(",") for r in rows[1:])
    person = tr["role"] != ""
    assert set(listed) == set(tr["file"][person])
    visit_of = {int(k): i for i, k in enumerate(v["visit"])}
    for f, pid, cam, t in zip(im["file"][person], im["pid"][person], im["cam"][person], im["t_sec"][person]):
        i = visit_of[int(listed[f])]
        assert (v["pid"][i], v["cam"][i]) == (pid, cam) and v["t_enter"][i] - 1e-9 <= t <= v["t_leave"][i] + 1e-9
    ds = load_dataset(root, "synth")
    assert (ds.train.tracklet >= 0).all() and len(np.unique(ds.train.tracklet)) > len(np.unique(ds.train.pid))


def test_mixture_functions_against_scipy():
    comps = [dict(weight=0.6, median_s=4.0, sigma=0.4), dict(weight=0.4, median_s=30.0, sigma=0.7)]
    t = np.array([0.5, 3.0, 4.0, 12.0, 30.0, 200.0])
    assert np.allclose(mixture_cdf(comps, t), lognormal_mixture_cdf(comps, t))
    pdf = sum(c["weight"] * stats.lognorm(s=c["sigma"], scale=c["median_s"]).pdf(t) for c in comps)
    assert np.allclose(mixture_pdf(comps, t), pdf)


@pytest.fixture(scope="module")
def many_walks():
    w = build_world(world_config("default", n_train_ids=1500, n_test_ids=1, n_single_ids=0), 0)
    return w.visits, world_json(w)


def test_travel_times_follow_the_configured_mixtures(many_walks):
    v, wj = many_walks
    moved = v["prev_cam"] >= 0
    assert wj["travel"]["unit"] == "s" and "leaves camera" in wj["travel"]["definition"]
    tested, u = 0, []
    for p in wj["travel"]["pairs"]:
        m = moved & (v["prev_cam"] == p["from"]) & (v["cam"] == p["to"])
        x = v["travel_s"][m]
        u.append(lognormal_mixture_cdf(p["components"], x))
        if len(x) >= 200:
            assert stats.kstest(x, lambda t: lognormal_mixture_cdf(p["components"], t)).pvalue > 1e-4, p
            tested += 1
    assert tested >= 10 and stats.kstest(np.concatenate(u), "uniform").pvalue > 1e-3
    # the test has power: medians off by 10 % do not fit
    off = np.concatenate([lognormal_mixture_cdf([{**c, "median_s": 1.1 * c["median_s"]} for c in p["components"]],
                                                v["travel_s"][moved & (v["prev_cam"] == p["from"]) & (v["cam"] == p["to"])])
                          for p in wj["travel"]["pairs"]])
    assert stats.kstest(off, "uniform").pvalue < 1e-6


def test_transitions_follow_the_matrix(many_walks):
    v, wj = many_walks
    P, C = np.array(wj["transition"]["matrix"]), wj["n_cams"]
    assert P.shape == (C, C + 1) and np.allclose(P.sum(1), 1)
    moved = v["prev_cam"] >= 0
    counts = np.zeros((C, C)); np.add.at(counts, (v["prev_cam"][moved], v["cam"][moved]), 1)
    expected = P[:, :C] / P[:, :C].sum(1, keepdims=True)
    assert np.abs(counts / counts.sum(1, keepdims=True) - expected).max() < 0.03


def test_duke_like_corridor():
    w = build_world(world_config("duke-like", n_train_ids=60, n_test_ids=60, n_single_ids=40), 0)
    wj, im, v = world_json(w), w.images, w.visits
    edges = {(p["from"], p["to"]) for p in wj["travel"]["pairs"]}
    assert edges == {(a, b) for a, b in [(0, 1), (1, 2), (2, 3), (1, 4), (4, 5), (5, 6), (6, 7)]} | \
        {(b, a) for a, b in [(0, 1), (1, 2), (2, 3), (1, 4), (4, 5), (5, 6), (6, 7)]}
    assert all(len(p["components"]) == 1 and 5 <= p["components"][0]["median_s"] <= 33 for p in wj["travel"]["pairs"])
    moved = v["prev_cam"] >= 0
    assert all((a, b) in edges for a, b in zip(v["prev_cam"][moved], v["cam"][moved]))
    later = np.flatnonzero(v["hop"] >= 2)  # people walk on: never straight back to the camera they came from
    assert len(later) > 50 and (v["cam"][later] != v["cam"][later - 2]).all()
    assert (v["ident"][later] == v["ident"][later - 2]).all()
    assert (im["pid"] > 0).all() and wj["fps"] == 60 and (im["global_frame"] % 120 == 0).all()
    per_visit = np.unique(im["visit"], return_counts=True)[1].mean()
    assert per_visit > 4 and len(np.unique(im["pid"][im["role"] == 2])) == 40


# --- rendering ---------------------------------------------------------------------------------------------------

def painted_share(p, view, colour_key):
    c = new_canvas(128, 64); body = paint_person(c, p, view, 0.3, 32, 10, 110)
    pal = np.asarray(c["pal"])
    hit = np.flatnonzero(np.all(np.isclose(pal, p[colour_key]), axis=1))
    return np.isin(c["lab"], hit).sum() / body.sum()


def test_view_dependent_visibility():
    p = synth.make_identity(np.random.default_rng(1))
    p.update(bag="backpack", bag_colour=np.array([1.0, 2, 3]), pattern="logo", top2=np.array([4.0, 5, 6]))
    back, side, front = (painted_share(p, v, "bag_colour") for v in ("back", "right", "front"))
    assert back > side > front > 0
    assert painted_share(p, "front", "top2") > 0 and painted_share(p, "back", "top2") == 0
    p.update(bag="shoulder", bag_side="left")
    assert painted_share(p, "left", "bag_colour") > 0 and painted_share(p, "right", "bag_colour") == 0


def features(root, files, size=(4, 8)):
    return np.stack([np.asarray(Image.open(root / f).resize(size, Image.BILINEAR), float).ravel() for f in files])


def test_camera_signature_is_strong_and_identities_learnable(tiny, truth):
    im = truth["images"]; person = im["kind"] == "person"
    x, cam, pid = features(tiny[0], im["file"][person]), im["cam"][person], im["pid"][person]
    fit = pid % 2 == 0  # camera centroids from half of the identities, tested on the other half
    cents = np.stack([x[fit & (cam == c)].mean(0) for c in range(6)])
    pred = ((x[~fit][:, None] - cents[None]) ** 2).sum(-1).argmin(1)
    assert (pred == cam[~fit]).mean() > 0.8
    # identity: cross-camera nearest neighbour on camera-normalised centre crops beats chance by far
    centre = features(tiny[0], im["file"][person], (8, 16)).reshape(-1, 16, 8, 3)[:, 4:12, 2:6].reshape(person.sum(), -1)
    for c in range(6): centre[cam == c] = (centre[cam == c] - centre[cam == c].mean(0)) / (centre[cam == c].std(0) + 1)
    d = ((centre[:, None] - centre[None]) ** 2).sum(-1); d[cam[:, None] == cam[None]] = np.inf
    hits = (pid[d.argmin(1)] == pid).mean()
    assert hits > 5 / len(np.unique(pid))


# --- writing, caching and the command line -----------------------------------------------------------------------

def test_make_world_refuses_foreign_folder_and_cleans_up(tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir(); (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(BadInputError, match="no synthetic world wrote, e.g. 'notes.txt'"):
        make_world(tmp_path / "mine", "tiny")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    def boom(*a, **k): raise KeyboardInterrupt
    monkeypatch.setattr(world, "render_world", boom)
    with pytest.raises(KeyboardInterrupt): make_world(tmp_path / "w", "tiny", workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_make_world_keeps_the_users_files_unless_forced(tmp_path, tiny):
    w = Path(shutil.copytree(tiny[0], tmp_path / "w"))
    assert world.foreign_files(w) == []
    (w / "query" / "my_notes.txt").write_text("mine")
    (w / "results").mkdir()
    (w / "results" / "table.csv").write_text("a,b")
    assert world.foreign_files(w) == ["query/my_notes.txt", "results/table.csv"]
    with pytest.raises(BadInputError) as e: make_world(w, "tiny", seed=1, workers=1)
    assert f"out {w}: holds 2 file(s)" in str(e.value) and "query/my_notes.txt" in str(e.value)
    assert "--force" in str(e.value)
    assert (w / "results" / "table.csv").read_text() == "a,b" and load_truth(w)["world"]["seed"] == 0
    make_world(w, "tiny", seed=1, workers=1, force=True)
    assert load_truth(w)["world"]["seed"] == 1 and not (w / "results").exists() and world.foreign_files(w) == []
    make_world(w, "tiny", seed=2, workers=1)  # a folder holding only a world is replaced without force
    assert load_truth(w)["world"]["seed"] == 2


def test_make_world_removes_stale_builds_and_uses_the_umask(tmp_path):
    stale = tmp_path / ".w.tmp-killed"  # what a killed build (old or new version) leaves beside the world
    (stale / "query").mkdir(parents=True)
    (stale / "query" / "0001_c1s1_000001_00.jpg").write_bytes(b"x" * 1000)
    young = tmp_path / ".w.tmp-young"  # too recent to judge: its builder may not have locked it yet
    young.mkdir()
    busy = tmp_path / ".w.tmp-busy"  # a build in progress holds its lock
    busy.mkdir()
    old = time.time() - 2 * world.STALE_AFTER_S
    for d in (stale, busy): os.utime(d, (old, old))
    old_umask = os.umask(0o022)
    try:
        with open(busy / world.BUILD_LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            root = make_world(tmp_path / "w", "tiny", seed=0, workers=1)
    finally: os.umask(old_umask)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".w.tmp-busy", ".w.tmp-young", "w"]
    assert root.stat().st_mode & 0o777 == 0o755 and (root / "query").stat().st_mode & 0o777 == 0o755
    assert (root / "readme.txt").stat().st_mode & 0o777 == 0o644 and not (root / world.BUILD_LOCK).exists()
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in (root / "query").iterdir())


@pytest.mark.parametrize("out, words", [
    ("file.txt/w", ["out", "file.txt is a file, not a folder"]),
    ("file.txt", ["out", "file.txt is a file"]),
])
def test_make_world_names_an_unusable_out(tmp_path, out, words):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(BadInputError) as e: make_world(tmp_path / out, "tiny", workers=1)
    assert all(w in str(e.value) for w in words), str(e.value)
    with pytest.raises(BadInputError, match="seed -3: expected an integer >= 0"): make_world(tmp_path / "w", "tiny", -3)


def test_open_dataset_builds_caches_and_refuses(tmp_path, monkeypatch):
    monkeypatch.setenv("REID_NB_DATA", str(tmp_path))
    ds = open_dataset("synth", "smoke", seed=1)
    root = tmp_path / "synth" / "tiny-s1"
    assert ds.name == "synth" and ds.fps == 25 and ds.n_cams == 6 and len(ds.query) > 0
    stamp = (root / "world" / "world.json").stat().st_mtime_ns
    open_dataset("synth", "smoke", seed=1, market_time_mode="concat")
    assert (root / "world" / "world.json").stat().st_mtime_ns == stamp
    j = json.loads((root / "world" / "world.json").read_text()); j["config_hash"] = "stale"
    (root / "world" / "world.json").write_text(json.dumps(j))
    open_dataset("synth", "smoke", seed=1)
    assert json.loads((root / "world" / "world.json").read_text())["config_hash"] != "stale"  # rebuilt
    with pytest.raises(BadInputError, match="real dataset"): open_dataset("synth", "paper")
    with pytest.raises(BadInputError, match="REID_NB_DATA"): open_dataset("market1501", "paper")
    with pytest.raises(BadInputError, match="cuhk03"): open_dataset("cuhk03")
    with pytest.raises(BadInputError, match="profile"): open_dataset("synth", "fast")


def test_make_synth_script(tmp_path):
    env = {**os.environ, "REID_NB_PROGRESS": "0"}
    cmd = [sys.executable, str(ROOT / "data_scripts" / "make_synth.py"), "--preset", "tiny", "--seed", "2",
           "--out", str(tmp_path / "w"), "--workers", "1", "--set", "n_cams=4", "--set", "difficulty=0.3"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["counts"]["query"] > 0 and load_truth(tmp_path / "w")["world"]["n_cams"] == 4
    assert load_truth(tmp_path / "w")["world"]["config"]["difficulty"] == 0.3
    r = subprocess.run(cmd[:-4] + ["--set", "n_camz=4"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 1 and "n_camz" in r.stderr and "valid fields" in r.stderr


# --- the default world against Market-1501 -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def default_world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("default") / "w", "default", seed=0, workers=2)


@pytest.mark.slow
def test_default_world_statistics_near_market(default_world):
    truth = load_truth(default_world)
    st = {(r["group"], r["statistic"]): r["synthetic"] for r in truth_statistics(truth["images"])}
    assert 5500 <= len(truth["images"]["file"]) <= 7500
    assert 15 <= st[("train", "imgs_per_id")] <= 20 and 15 <= st[("query+gallery", "imgs_per_id")] <= 24
    assert 3.9 <= st[("train", "cams_per_id")] <= 4.7 and 3.9 <= st[("query+gallery", "cams_per_id")] <= 4.8
    assert 3.3 <= st[("train", "imgs_per_id_cam")] <= 4.7 and 2.0 <= st[("all", "imgs_per_visit")] <= 2.8
    assert abs(st[("all", "gallery_share_0000")] - 0.14) < 0.01 and abs(st[("all", "gallery_share_junk")] - 0.19) < 0.01
    assert 3.5 <= st[("all", "queries_per_test_id")] <= 5.0
    ds = load_dataset(default_world, "synth")
    assert len(ds.train) == (truth["images"]["split"] == "train").sum()
    assert len(ds.gallery) == ((truth["images"]["split"] == "gallery") & (truth["images"]["pid"] != -1)).sum()
