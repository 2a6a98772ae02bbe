"""One way to load the templates every generated file comes from.

Each package keeps its templates in its own `templates/` folder (slurm.conf, cluster
configs, job scripts). jinja2 templates (`.j2`) render with StrictUndefined, so a missing
value fails the golden tests instead of leaving a blank in a job script; jinja2 is
imported on first use: `hpcrun --help` never pays for it. Job scripts on a submit's path
(`.in`: the render chunk and its encode) hold nothing but `{{ name }}` slots, filled by
`fill` with values worked out and quoted in Python: importing jinja2 cost every `hpcrun
render` ~35 ms, a sixth of the whole command.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
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


_SLOT = re.compile(r"\{\{ (\w+) \}\}")


@cache
def _slotted(package: str, name: str) -> str:
    return resources.files(package).joinpath("templates", name).read_text(encoding="utf-8")


def fill(package: str, name: str, values: Mapping[str, object]) -> str:
    """`name` (a `{{ slot }}`-only template) from `package`'s templates/ folder with each
    slot replaced by `str(values[slot])`. A slot without a value, or a value without a
    slot, is a ValueError (what StrictUndefined is to the jinja2 ones)."""
    text = _slotted(package, name)
    slots = set(_SLOT.findall(text))
    if slots != set(values):
        missing, unused = sorted(slots - set(values)), sorted(set(values) - slots)
        raise ValueError(f"{name}: slots without a value {missing}, values unused {unused}")
    if "{{" in _SLOT.sub("", text) or "{%" in text:
        raise ValueError(f"{name}: only `{{{{ name }}}}` slots may be used")
    return _SLOT.sub(lambda m: str(values[m.group(1)]), text)


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
