"""The seeded socket fuzzer (wskit.testing.fuzz) against both frameworks.

``WSKIT_FUZZ_FRAMES`` sets the number of frames (2,000 by default; the figures
in docs/reliability.md are from 10,000), ``WSKIT_FUZZ_SEED`` the seed.
"""

from __future__ import annotations

import logging
import os

import pytest

from wskit.testing import fuzz

FRAMES = int(os.environ.get("WSKIT_FUZZ_FRAMES", "2000"))
SEED = int(os.environ.get("WSKIT_FUZZ_SEED", "20261128"))


@pytest.mark.timeout(60 + FRAMES // 20)
async def test_fuzzed_frames_never_hurt_the_server(start, framework, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    srv = await start(framework, backplane="fakeredis://fuzz-" + framework)
    report = await fuzz.run(srv, SEED, FRAMES)
    print(f"\n{framework}: {report}")
    assert report.frames == FRAMES
    assert report.closes[1011] == 0
    tracebacks = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert tracebacks == [], [r.getMessage() for r in tracebacks]
    assert report.bystander_messages == -(-FRAMES // 50)
