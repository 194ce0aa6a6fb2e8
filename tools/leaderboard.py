"""Rebuild a sweep's leaderboard: `python tools/leaderboard.py multirun/train/<date>`.

Writes results.md (ranked, each job linked to its folder), results.csv and pareto.png (bbox AP
against predict latency and against parameters) into the sweep folder; works on partial sweeps.
"""

import argparse
import sys

from detect.eval.leaderboard import build_leaderboard
from detect.eval.tables import format_sweep


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweep_dir", help="a Hydra multirun folder (finished or not)")
    args = parser.parse_args()
    try:
        rows = build_leaderboard(args.sweep_dir)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    done = [row for row in rows if row["status"] == "done"]
    if done:
        print(format_sweep(done))
    print(
        f"\n{len(done)} finished, {len(rows) - len(done)} unfinished: {args.sweep_dir}/results.md, results.csv, pareto.png"
    )


if __name__ == "__main__":
    main()
