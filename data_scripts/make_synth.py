"""Build a synthetic multi-camera re-ID world in the Market-1501 layout, plus its ground truth under world/.

The folder is built next to OUT and renamed into place, so an interrupted run leaves no half world (and the next run
removes what a killed one left). An old world at OUT is replaced, but a folder holding any file that no world wrote
is refused unless --force is given. The same seed gives the same images whatever --workers is. Exit status: 0 on
success; 1 with a message naming the field or folder when the configuration or OUT is unusable; 2 for a wrong
command line; 130 when interrupted.

Example: .venv/bin/python data_scripts/make_synth.py --preset default --seed 0 --out data/synth/default-s0
         .venv/bin/python data_scripts/make_synth.py --preset tiny --out /tmp/w --set n_cams=4 --set difficulty=0.8
"""
import argparse
import json
import sys
import time

from reid_nb.core import BadInputError
from reid_nb.synth import PRESETS, truth_statistics
from reid_nb.world import load_truth, make_world


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="default", choices=list(PRESETS), help="named configuration (default: default)")
    p.add_argument("--seed", type=int, default=0, help="the one seed of the world, >= 0 (default: 0)")
    p.add_argument("--out", required=True, help="folder to write (an old world there is replaced; other files are "
                                                "refused unless --force)")
    p.add_argument("--force", action="store_true", help="replace OUT even when it holds files no world wrote")
    p.add_argument("--workers", type=int, default=2, help="rendering processes (default: 2)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a WorldConfig field, e.g. --set n_cams=4 (repeatable)")
    return p.parse_args(argv)


def overrides(pairs: list[str]) -> dict:
    """FIELD=VALUE strings as a dict; values stay strings (world_config converts them to the field's type)."""
    out = {}
    for pair in pairs:
        field, sep, value = pair.partition("=")
        if not sep or not field: raise BadInputError(f"--set {pair!r}: expected FIELD=VALUE, e.g. --set n_cams=4")
        out[field.strip()] = value.strip()
    return out


def main(argv=None) -> int:
    a = parse_args(argv)
    try:
        t0 = time.time()
        root = make_world(a.out, a.preset, a.seed, a.workers, force=a.force, **overrides(a.set))
        seconds = time.time() - t0
    except BadInputError as e:
        print(f"make_synth: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("make_synth: interrupted (Ctrl-C); nothing was written to --out", file=sys.stderr)
        return 130
    truth = load_truth(root)
    stats = {f"{r['group']}/{r['statistic']}": round(r["synthetic"], 3) for r in truth_statistics(truth["images"])}
    print(json.dumps({"root": str(root), "seconds": round(seconds, 2), "counts": truth["world"]["counts"],
                      "config_hash": truth["world"]["config_hash"], "statistics": stats}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
