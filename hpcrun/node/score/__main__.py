"""`python -m hpcrun.node.score inspect|shard|merge ...` (the zipapp has its own entry)."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
