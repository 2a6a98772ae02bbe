"""One way to load the jinja2 templates every generated file comes from.

Each package keeps its templates in its own `templates/` folder (slurm.conf, sbatch and
render scripts); all of them render with StrictUndefined, so a missing value fails the
golden tests instead of leaving a blank in a job script. jinja2 is imported on first use:
`hpcrun --help` never pays for it.
"""

from __future__ import annotations

import json
import re
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


@cache
def yaml_environment(package: str) -> jinja2.Environment:
    """For YAML files (cluster configs): block tags leave no blank lines, and the `yaml`
    filter writes one value as a scalar that reads back as the same value."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["yaml"] = yaml_scalar
    return env


def yaml_scalar(value: object) -> str:
    """A YAML scalar that reads back as the same value: plain when safe, else JSON-quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if re.fullmatch(r"[A-Za-z0-9_./@+-]+(:[A-Za-z0-9_./@+-]+)*", text) and not re.fullmatch(
        r"(?i)(true|false|yes|no|on|off|null|~|[-+0-9.eE_:]+)", text
    ):
        return text
    return json.dumps(text)
