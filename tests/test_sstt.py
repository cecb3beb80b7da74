"""reid_nb.sstt against brute-force references, hand-built cases and (when the module exists) the synthetic world."""
from types import SimpleNamespace

import numpy as np
import pytest

from reid_nb.core import BadInputError
from reid_nb.sstt import (assume_tracklets, collision_stats, cooccurrence_groups, pick_mode, sstt_sample,
                          tracklet_labels)


def _random_tracks(rng, n_tracks=120, n_cams=3):
    """Per-image arrays for random tracklets: each has 1..5 images at integer times inside one camera."""
    sizes = rng.integers(1, 6, n_tracks); cams = rng.integers(0, n_cams, n_tracks)
    starts = rng.integers(0, 500, n_tracks)
    trk = np.repeat(np.arange(n_tracks) * 3 + 11, sizes)  # arbitrary tracker ids
    t = np.repeat(starts, sizes) + np.concatenate([np.sort(rng.integers(0, 30, s)) for s in sizes])
    return trk, np.repeat(cams, sizes), t.astype(float)


def _sstt_brute(trk, cam, t, period):
    """Loop over cameras, instants and tracklets: the sampled tracker ids, per camera, in label order."""
    out = {}
    for c in np.unique(cam):
        m = cam == c; ids = np.unique(trk[m])
        span = {i: (t[m & (trk == i)].min(), t[m & (trk == i)].max()) for i in ids}
        s0 = min(a for a, _ in span.values()); hi = max(b for _, b in span.values())
        taken = []
        for s in np.arange(s0, hi + period, period):
            for i in ids:
                if i not in taken and span[i][0] <= s <= span[i][1]: taken.append(i)
        out[int(c)] = taken
    return out


def test_sstt_matches_brute_force():
    rng = np.random.default_rng(1)
    trk, cam, t = _random_tracks(rng)
    for period in (3, 17, 40):
        lab = sstt_sample(trk, cam, t, period)
        ref = _sstt_brute(trk, cam, t, period)
        for c, taken in ref.items():
            assert lab.n_per_cam[c] == len(taken)
            for j, tid in enumerate(taken):  # label j of camera c is the j-th tracklet caught
                assert (lab.local[(trk == tid) & (cam == c)] == j).all()
        caught = np.isin(trk, np.concatenate([v for v in ref.values()]))
        assert ((lab.tracklet >= 0) == caught).all()
        assert lab.skipped.get("tracklet touches no instant", 0) == (~caught).sum()


def test_sstt_small_period_takes_every_tracklet():
    trk, cam, t = _random_tracks(np.random.default_rng(2))
    lab = sstt_sample(trk, cam, t, period=1)
    assert (lab.tracklet >= 0).all() and lab.n_tracklets == len(np.unique(trk)) and lab.skipped == {}


def test_sstt_labels_are_grouped_by_camera_and_spans_are_right():
    trk, cam, t = _random_tracks(np.random.default_rng(3))
    lab = sstt_sample(trk, cam, t, period=9)
    assert (np.diff(lab.cam) >= 0).all()
    used = lab.tracklet >= 0
    assert (lab.cam[lab.tracklet[used]] == cam[used]).all()
    assert (lab.tracklet[used] - lab.offsets[cam[used]] == lab.local[used]).all()
    for g in np.unique(lab.tracklet[used]):
        m = lab.tracklet == g
        assert lab.t_start[g] == t[m].min() and lab.t_end[g] == t[m].max() and len(np.unique(trk[m])) == 1


def test_sstt_explicit_start_and_units():
    # one camera, two time lines (sequences): instants restart at each unit's earliest start
    trk = np.array([0, 0, 1, 2]); t = np.array([0., 2, 5, 100]); unit = np.array([0, 0, 0, 1])
    lab = sstt_sample(trk, np.zeros(4, int), t, period=10, unit=unit)
    assert lab.tracklet.tolist() == [0, 0, -1, 1]
    lab = sstt_sample(trk, np.zeros(4, int), t, period=10, unit=unit, start=5)  # instants 5, 15, ... 95, 105
    assert lab.tracklet.tolist() == [-1, -1, 0, -1]


def test_sstt_cuts_a_tracklet_at_a_unit_boundary():
    lab = sstt_sample(np.array([4, 4, 4]), np.zeros(3, int), np.array([0., 1, 0]), period=10, unit=np.array([0, 0, 1]))
    assert lab.n_tracklets == 2 and lab.tracklet.tolist() == [0, 0, 1]


def test_sstt_bad_input():
    with pytest.raises(BadInputError, match="two cameras"):
        sstt_sample(np.array([1, 1]), np.array([0, 1]), np.array([0., 1]), 10)
    with pytest.raises(BadInputError, match="NaN"):
        sstt_sample(np.array([1, 1]), np.array([0, 0]), np.array([0., np.nan]), 10)
    with pytest.raises(BadInputError, match="period"):
        sstt_sample(np.array([1]), np.array([0]), np.array([0.]), 0)


def test_assumption_one_label_per_person_and_camera():
    rng = np.random.default_rng(4)
    pid = rng.integers(-1, 30, 500); cam = rng.integers(0, 4, 500)
    lab = assume_tracklets(pid, cam, n_cams=5)
    person = pid > 0
    assert (lab.tracklet[~person] == -1).all()
    assert lab.skipped == {"junk (pid -1)": int((pid == -1).sum()), "distractor (pid 0)": int((pid == 0).sum())}
    for c in range(5):
        assert lab.n_per_cam[c] == len(np.unique(pid[person & (cam == c)]))
    # same (pid, cam) <=> same tracklet
    a, b = np.flatnonzero(person)[:, None], np.flatnonzero(person)[None]
    same_pc = (pid[a] == pid[b]) & (cam[a] == cam[b])
    assert (same_pc == (lab.tracklet[a] == lab.tracklet[b])).all()
    st = collision_stats(lab, pid, cam)
    assert st["n_collisions"] == 0 and st["impure_tracklets"] == 0 and st["coverage"] == 1.0


def test_assumption_gap_split_like_stgal_code():
    """STGAL's create_Market_database: same pid and cam-seq and frame gap < interval -> same track."""
    pid = np.array([3, 3, 3, 3, 8]); vcam = np.array([0, 0, 0, 1, 0]); fr = np.array([10., 109, 210, 5, 12])
    lab = assume_tracklets(pid, vcam, fr, max_gap=100)
    assert lab.tracklet.tolist() == [0, 0, 1, 3, 2]  # 109-10 < 100 joins, 210-109 >= 100 splits
    assert lab.n_per_cam.tolist() == [3, 1]
    with pytest.raises(BadInputError, match="NaN"):
        assume_tracklets(pid, vcam, np.full(5, np.nan), max_gap=100)


def _groups_official(ts, te, unit, period):
    """Transcription of STGAL create_Market_CTM_database.sample_tracks (loop over units, then instants)."""
    out = []
    for u in np.unique(unit):
        t = np.flatnonzero(unit == u)
        lo = int(np.ceil(ts[t].min() / period) * period); hi = int(np.floor(te[t].max() / period) * period)
        for f in range(lo, hi, period):
            sel = t[(ts[t] <= f) & (te[t] >= f)]
            if len(sel): out.append((int(u), f, sorted(sel.tolist())))
    return out


@pytest.mark.parametrize("period", [1, 37, 100])
def test_cooccurrence_groups_match_official_loop(period):
    rng = np.random.default_rng(period)
    ts = rng.integers(0, 5000, 400).astype(float); te = ts + rng.integers(0, 600, 400); unit = rng.integers(0, 6, 400)
    g = cooccurrence_groups(ts, te, unit, period)
    got = [(int(u), int(f), m.tolist()) for u, f, m in zip(g.unit, g.instant, g.members)]
    assert got == _groups_official(ts, te, unit, period)


def test_cooccurrence_groups_members_are_negatives_of_each_other():
    """A group never holds two tracks of one person when tracks are (pid, vcam) units: checked on the assumption."""
    rng = np.random.default_rng(5)
    pid = rng.integers(1, 40, 600); vcam = rng.integers(0, 5, 600); fr = rng.integers(0, 3000, 600).astype(float)
    lab = assume_tracklets(pid, vcam, fr)
    g = cooccurrence_groups(lab.t_start, lab.t_end, lab.cam, 100)
    track_pid = np.zeros(lab.n_tracklets, int); track_pid[lab.tracklet] = pid
    assert g.members and all(len(np.unique(track_pid[m])) == len(m) for m in g.members)


def test_collision_stats_hand_case():
    pid = np.array([7, 7, 7, 9, 9, 7, 5, 5]); cam = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    trk = np.array([1, 1, 2, 3, 3, 4, 6, 6]); t = np.array([0., 1, 50, 0, 2, 7, 9, 9])
    lab = sstt_sample(trk, cam, t, period=10)  # cam 1 instants: 7, 17 -> track 6 (t=9) missed
    st = collision_stats(lab, pid, cam)
    assert st == dict(n_tracklets=4, n_person_cams=3, n_collisions=1, collision_rate=1 / 3, extra_labels=1,
                      impure_tracklets=0, coverage=6 / 8)
    merged = sstt_sample(np.array([1, 1, 1, 1, 1, 4, 6, 6]), cam, t, period=10)  # one track holds 7 and 9
    assert collision_stats(merged, pid, cam)["impure_tracklets"] == 1


def test_tracklet_labels_on_records():
    rec = SimpleNamespace(pid=np.array([2, 2, 3, 2]), cam=np.array([0, 0, 0, 1]), vcam=np.array([0, 0, 0, 1]),
                          t_sec=np.array([0., 22, 0, 1]), tracklet=np.array([0, 1, 2, 3]))
    lab = tracklet_labels(rec, period_s=5)  # sstt: tracker ids 0 and 1 are two visits of person 2; 1 is missed
    assert lab.n_per_cam.tolist() == [2, 1] and collision_stats(lab, rec.pid, rec.cam)["n_collisions"] == 0
    lab = tracklet_labels(rec, mode="sstt", period_s=1)
    assert lab.n_per_cam.tolist() == [3, 1] and collision_stats(lab, rec.pid, rec.cam)["n_collisions"] == 1
    lab = tracklet_labels(rec, mode="assume")
    assert lab.n_per_cam.tolist() == [2, 1]
    rec.tracklet = np.full(4, -1)
    assert pick_mode(rec) == "assume"
    with pytest.raises(BadInputError, match="mode"):
        pick_mode(rec, "video")


def test_collision_rate_on_the_synthetic_world(tmp_path):
    """SSTT on the tiny world's visits: labels are pure, and a larger gap P never raises coverage."""
    data = pytest.importorskip("reid_nb.data")
    ds = data.open_dataset("synth", profile="smoke", seed=0, root=tmp_path / "w")
    tr = ds.train
    if not (np.asarray(tr.tracklet) >= 0).any(): pytest.skip("the synthetic world wrote no tracklets")
    prev = None
    for p in (1.0, 5.0, 20.0):
        lab = tracklet_labels(tr, mode="sstt", period_s=p, n_cams=ds.n_cams)
        st = collision_stats(lab, tr.pid, tr.cam)
        assert st["impure_tracklets"] == 0  # a visit is one person
        assert st["n_tracklets"] == st["n_person_cams"] + st["extra_labels"]
        if prev is not None: assert st["coverage"] <= prev + 1e-12
        prev = st["coverage"]
    st = collision_stats(tracklet_labels(tr, mode="assume", n_cams=ds.n_cams), tr.pid, tr.cam)
    assert st["n_collisions"] == 0 and st["coverage"] == 1.0
