"""`python -m hpcrun.node.idle check|install ...` (the zipapp has its own entry)."""

import sys

from .cli import main

sys.exit(main())
