"""Benchmarks: ``python -m wskit bench [fanout|heartbeat|held|cluster|curves]``.

Every figure is measured in one run and compared side by side (ratios), because
these machines are shared and noisy: an absolute number from another day means
little, a ratio from the same minute means something.
"""

from __future__ import annotations

import argparse
import asyncio
import json


def main(args: argparse.Namespace) -> int:
    if args.suite == "heartbeat":
        from . import heartbeat

        trials = 3 if args.quick else 6
        results = asyncio.run(heartbeat.run(trials=trials))
        if args.json:
            print(json.dumps([r.row() for r in results], indent=2))
        else:
            print(heartbeat.table(results))
        return 0 if all(r.within_bound for r in results) else 1
    if args.suite == "held":
        from . import held

        n = args.connections or (500 if args.quick else 2000)
        hold = args.hold or (3.0 if args.quick else 10.0)
        beat = (None, None) if args.default_heartbeat else (0.5, 1.0)
        modes = (True,) if args.deflate else (False, True)  # --deflate: browser-like clients only
        rows = asyncio.run(held.run(n=n, interval=beat[0], timeout=beat[1], hold=hold,
                                    deflate=modes))
        print(json.dumps([vars(r) for r in rows], indent=2) if args.json else held.table(rows))
        return 0 if all(r.closed == 0 and r.post_reached == r.connections for r in rows) else 1
    if args.suite == "cluster":
        from . import cluster

        return cluster.main(args)
    if args.suite == "curves":
        from . import curves

        return curves.main(args)
    from . import fanout

    return fanout.main(args)
