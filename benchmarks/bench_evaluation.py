"""Benchmark: re-ID evaluation at Market-1501 size (3,368 queries x 15,913 gallery images, 2048-d, 6 cameras).

Ours: `evaluate` on a precomputed cosine distance, and `evaluate_features` from the features (distance in blocks).
Reference, in the same process: one query at a time in NumPy (sort the gallery, filter, compute AP/CMC/INP), the
loop of torchreid's eval_market1501 (`per_query_reference` in tests/test_evaluation.py), on the same distance.
Prints time, peak memory, the speed-up, and checks that both agree to 1e-6.
Targets on 2 CPU cores: evaluate <= 1 s, evaluate_features <= 3 s.
Run: flock /tmp/reid-nb-heavy.lock .venv/bin/python benchmarks/bench_evaluation.py
"""
import os

os.environ.setdefault("REID_NB_PROGRESS", "0")
import numpy as np
import torch
import torch.nn.functional as F

from _reid_features import HEADER, features, market_split, measure, row
from reid_nb.evaluation import evaluate, evaluate_features
from test_evaluation import per_query_reference


def main():
    q_pids, g_pids, q_cams, g_cams = market_split()
    x = features(np.concatenate([q_pids, g_pids]), np.concatenate([q_cams, g_cams]))
    qf, gf = x[:len(q_pids)].contiguous(), x[len(q_pids):].contiguous()
    labels = (q_pids, g_pids, q_cams, g_cams)
    print(f"Market-sized synthetic features: {tuple(qf.shape)} queries, {tuple(gf.shape)} gallery, "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    dist, t_dist, _, _ = measure(lambda: (1 - F.normalize(qf) @ F.normalize(gf).T).numpy(), trace=False)
    evaluate(dist[:64], q_pids[:64], g_pids, q_cams[:64], g_cams)  # warm-up
    ours, t_ours, rss_ours, tr_ours = measure(evaluate, dist, *labels)
    feat, t_feat, rss_feat, tr_feat = measure(evaluate_features, qf, gf, *labels, metric="cosine")
    ref, t_ref, rss_ref, _ = measure(per_query_reference, dist, *labels, trace=False)
    for k in ("mAP", "mINP"):
        assert abs(ours[k] - ref[k]) < 1e-6 and abs(feat[k] - ref[k]) < 1e-5, (k, ours[k], feat[k], ref[k])
    assert np.abs(ours["cmc"] - ref["cmc"]).max() < 1e-6 and ours["n_valid"] == ref["n_valid"]
    print(f"metrics: mAP {ours['mAP']:.4f}, rank-1 {ours['cmc'][0]:.4f}, mINP {ours['mINP']:.4f}, "
          f"valid {ours['n_valid']}, skipped {ours['n_skipped']} (reference agrees to 1e-6)\n")
    print(HEADER)
    print(row("evaluate(dist)", t_ours, rss_ours, tr_ours, "<= 1 s"))
    print(row("evaluate_features(qf, gf)", t_feat, rss_feat, tr_feat, "<= 3 s"))
    print(row("reference: per-query NumPy loop on dist", t_ref, rss_ref, 0))
    print(row("(reference input: full distance matrix)", t_dist, (dist.nbytes, 0), 0))
    print(f"\nspeed-up: evaluate {t_ref / t_ours:.1f}x the per-query loop; "
          f"evaluate_features {(t_ref + t_dist) / t_feat:.1f}x (distance matrix + loop)")


if __name__ == "__main__":
    main()
