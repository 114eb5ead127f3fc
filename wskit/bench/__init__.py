"""Benchmarks: ``python -m wskit bench [fanout|heartbeat]``.

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
    from . import fanout

    return fanout.main(args)
