"""One way to load the jinja2 templates every generated file comes from.

Each package keeps its templates in its own `templates/` folder (slurm.conf, sbatch and
render scripts); all of them render with StrictUndefined, so a missing value fails the
golden tests instead of leaving a blank in a job script. jinja2 is imported on first use:
`hpcrun --help` never pays for it.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jinja2


@cache
def environment(package: str) -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def template(package: str, name: str) -> jinja2.Template:
    """`name` from `package`'s templates/ folder."""
    return environment(package).get_template(name)
