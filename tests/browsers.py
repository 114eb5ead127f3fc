"""Debian's headless Chromium, driven by Playwright: what the browser tests share."""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: browser tests are skipped with this reason where no chromium is installed
NEEDS_CHROMIUM = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium: apt-get install chromium "
                       "(Debian's package; .ci/run installs it)"),
]
# The flags this machine needs: no sandbox as root, no background network chatter.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT = 15_000  # ms
