"""`python -m hpcrun.node.farm worker ...` (the zipapp has its own entry)."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
