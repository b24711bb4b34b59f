"""What ``--defense`` and ``--attack`` take: names, comma lists of names, and a defense with its own settings.

``--defense gradreg,advtrain`` is ``--defense gradreg --defense advtrain``. ``--defense
"gradreg[lambda=1000]"`` is a model of its own: the defense ``gradreg`` with ``lambda=1000``, whose id is the
text as written, the form ``igbench sweep`` names its models in, so that one command line can hold one
defense at several settings (``--defense "gradreg[lambda=1000],gradreg[lambda=56234]"``).
"""

from __future__ import annotations

import re
from typing import Iterable

from .errors import UsageError

_WITH_SETTINGS = re.compile(r"^([^\[\]]+)\[(.*)\]$")


def split_list(values: Iterable[str], option: str) -> list[str]:
    """Every comma-separated item of the option's values (commas inside ``[...]`` do not separate)."""
    items: list[str] = []
    for value in values:
        depth, start = 0, 0
        for i, char in enumerate(value + ","):
            if char == "[":
                depth += 1
            elif char == "]":
                depth -= 1
                if depth < 0:
                    raise UsageError(f"{option} {value!r} closes a ']' it never opened")
            elif char == "," and depth == 0:
                item = value[start:i].strip()
                if not item:
                    example = {"--defense": "gradreg,advtrain", "--models": "none,gradreg"}.get(option, "fgsm,pgd")
                    raise UsageError(f"{option} {value!r} has an empty item; write names separated by commas, e.g. "
                                     f"{option} {example}")
                items.append(item)
                start = i + 1
        if depth:
            raise UsageError(f"{option} {value!r} opens a '[' it never closes; write e.g. gradreg[lambda=1000]")
    return items


def parse_defense(item: str) -> tuple[str, dict[str, str]]:
    """``"gradreg[lambda=1000,scaling=paper]"`` -> ``("gradreg", {"lambda": "1000", "scaling": "paper"})``;
    a plain name has no settings. The values stay text: the defense's ``resolve_params`` reads them."""
    match = _WITH_SETTINGS.match(item)
    if match is None:
        if "[" in item or "]" in item:
            raise UsageError(f"--defense {item!r}: write a defense with its settings as NAME[PARAM=VALUE,...], e.g. "
                             f"gradreg[lambda=1000]")
        return item, {}
    name, inside = match.group(1).strip(), match.group(2)
    if "[" in inside or "]" in inside:
        raise UsageError(f"--defense {item!r}: write all its settings inside one [...], separated by commas, e.g. "
                         f"gradreg[lambda=1000,scaling=paper]")
    settings: dict[str, str] = {}
    for part in inside.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise UsageError(f"--defense {item!r}: each setting inside [...] is PARAM=VALUE, e.g. gradreg[lambda=1000]")
        if key in settings:
            raise UsageError(f"--defense {item!r} sets {key} twice")
        settings[key] = value
    return name, settings
