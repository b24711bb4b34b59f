"""What ``--defense`` and ``--attack`` take: names, comma lists of names, and a defense with its own settings
or architecture.

``--defense gradreg,advtrain`` is ``--defense gradreg --defense advtrain``. ``--defense
"gradreg[lambda=1000]"`` is a model of its own: the defense ``gradreg`` with ``lambda=1000``, whose id is the
text as written, the form ``igbench sweep`` names its models in, so that one command line can hold one
defense at several settings (``--defense "gradreg[lambda=1000],gradreg[lambda=56234]"``). ``@ARCH`` after
either form trains that model on another architecture than ``--arch``'s (``--defense "none@mlp"``), so
that one grid scores examples transferred between architectures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from .errors import UsageError

_WITH_SETTINGS = re.compile(r"^([^\[\]]+)\[(.*)\]$")


@dataclass(frozen=True)
class DefenseItem:
    """One ``--defense`` item: the defense, the settings written in its ``[...]`` (text: the defense's
    ``resolve_params`` reads them) and the architecture after its ``@`` (None: ``--arch``'s)."""

    name: str
    settings: dict[str, str]
    arch: str | None = None


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


def parse_defense(item: str) -> DefenseItem:
    """``"gradreg[lambda=1000,scaling=paper]@mlp"`` -> ``DefenseItem("gradreg", {"lambda": "1000", "scaling":
    "paper"}, "mlp")``; a plain name has no settings, and no ``@ARCH`` leaves the architecture to ``--arch``."""
    closing = item.rfind("]")  # an @ inside [...] is part of a value (tag=a@b), not the architecture's
    at_index = item.rfind("@")
    text, at, arch = (item[:at_index], "@", item[at_index + 1:]) if at_index > closing else ("", "", item)
    if at:
        text, arch = text.strip(), arch.strip()
        if not text or not arch or "[" in arch or "]" in arch:
            raise UsageError(f"--defense {item!r}: write a defense on another architecture as DEFENSE@ARCH or "
                             f"DEFENSE[PARAM=VALUE,...]@ARCH, e.g. none@mlp or gradreg[lambda=1000]@mlp")
    else:
        text, arch = item, None
    if "@" in text.split("[", 1)[0]:  # gradreg@mlp[lambda=3]: the settings go before the @
        raise UsageError(f"--defense {item!r}: write a defense on another architecture as DEFENSE@ARCH or "
                         f"DEFENSE[PARAM=VALUE,...]@ARCH, e.g. none@mlp or gradreg[lambda=1000]@mlp")
    match = _WITH_SETTINGS.match(text)
    if match is None:
        if "[" in text or "]" in text:
            raise UsageError(f"--defense {item!r}: write a defense with its settings as NAME[PARAM=VALUE,...], e.g. "
                             f"gradreg[lambda=1000]")
        return DefenseItem(text, {}, arch)
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
    return DefenseItem(name, settings, arch)
