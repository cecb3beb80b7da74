"""Check a re-ID dataset folder and print a JSON summary of it.

Per split: images, identities, distractor images, cameras, time range, and the files skipped and why. Every image is
decoded unless --no-verify is given. Exit status: 0 when the dataset is usable; 1 with a message naming the file and
the problem when it is not (a missing folder, a malformed name, an unreadable image, ...); 2 for a wrong command line.

Example: .venv/bin/python data_scripts/check_dataset.py ~/data/Market-1501-v15.09.15 --dataset market1501
"""
import argparse
import json
import sys

from reid_nb.core import BadInputError
from reid_nb.data import DATASETS, SPLITS, TIME_MODES, dataset_summary, load_dataset, verify_images


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", help="the dataset folder, or its parent holding the official folder name")
    p.add_argument("--dataset", required=True, choices=list(DATASETS), help="layout of the folder")
    p.add_argument("--market-time-mode", choices=TIME_MODES, default=None,
                   help="Market / synth timeline: 'virtual' (default, STGAL) or 'concat' (st-ReID)")
    p.add_argument("--lenient", action="store_true", help="skip and count malformed names instead of stopping")
    p.add_argument("--no-verify", action="store_true", help="do not decode every image")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    try:
        ds = load_dataset(a.root, a.dataset, market_time_mode=a.market_time_mode, strict=not a.lenient)
        summary = dataset_summary(ds)
        bad = [] if a.no_verify else [x for s in SPLITS for x in verify_images(getattr(ds, s), strict=False)]
    except BadInputError as e:
        print(f"check_dataset: {e}", file=sys.stderr)
        return 1
    summary["unreadable_images"] = [{"file": p, "problem": why} for p, why in bad]
    print(json.dumps(summary, indent=1, allow_nan=False))
    if bad:
        print(f"check_dataset: {len(bad)} unreadable image(s); first: {bad[0][0]}: {bad[0][1]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
