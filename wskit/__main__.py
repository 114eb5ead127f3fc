"""``python -m wskit``: see :mod:`wskit.cli`."""

from .cli import main

raise SystemExit(main())
