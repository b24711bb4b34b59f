"""A sweep: one defense trained once per value of one of its parameters, beside the undefended model.

``igbench sweep`` reads the parameter and its values with :func:`read_sweep` and turns a grid into the
sweep's grid with :func:`sweep_spec`; the grid engine trains and scores it like any other.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

from ..errors import ParamError, UsageError, did_you_mean
from ..grid_values import repeated_values_problem
from ..numbers import exact_number
from .grid import GridSpec

_NUMBER = r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*"
_SPACED = re.compile(rf"^(logspace|linspace)\({_NUMBER},{_NUMBER},\s*(\d+)\s*\)$")
#: more values than this is a typo (logspace(2,5,130)), not a sweep: each value trains a model
MAX_SWEEP_VALUES = 100


def parse_sweep(text: str) -> tuple[str, list]:
    """``lambda=1,10,100``, ``lambda=logspace(2,5,13)`` (numpy's logspace), ``lambda=linspace(0,1,5)`` or
    ``direction=batch,example`` -> ``(name, values)``: floats for the spaced forms, else the texts, which
    :func:`sweep_values` types."""
    name, sep, values = text.partition("=")
    name, values = name.strip(), values.strip()
    if not sep or not name or not values:
        raise UsageError(f"--sweep {text!r} must look like NAME=V1,V2,... or NAME=logspace(START,STOP,NUM)")
    m = _SPACED.match(values)
    if m is None and re.match(r"^\w+\s*\(", values):  # logspace(2,5), linspace(a,b,c), range(3): not values
        raise UsageError(f"--sweep {text!r}: write logspace(START,STOP,NUM) or linspace(START,STOP,NUM), START and "
                         f"STOP numbers and NUM a whole number, e.g. lambda=logspace(2,5,13); or list the values")
    if m:
        kind, start, stop, num = m.group(1), float(m.group(2)), float(m.group(3)), int(m.group(4))
        if not 2 <= num <= MAX_SWEEP_VALUES:
            raise UsageError(f"--sweep {text!r}: {kind} needs NUM from 2 to {MAX_SWEEP_VALUES} (each value trains a "
                             f"model), got {num}")
        points = [start + i * (stop - start) / (num - 1) for i in range(num)]
        if kind == "logspace" and not -300 <= min(points) <= max(points) <= 300:  # 10**309 overflows, 10**-330 is 0
            raise UsageError(f"--sweep {text!r}: logspace's START and STOP are powers of ten, from -300 to 300; "
                             f"e.g. lambda=logspace(2,5,13) is 100 to 100,000")
        return name, [10 ** p for p in points] if kind == "logspace" else points
    listed = [v.strip() for v in values.split(",")]
    if "" in listed:
        raise UsageError(f"--sweep {text!r} has an empty value; use e.g. {name}=1,10,100")
    if len(listed) > MAX_SWEEP_VALUES:
        raise UsageError(f"--sweep {text!r}: {len(listed)} values, more than {MAX_SWEEP_VALUES}; each trains a model")
    return name, listed


def sweep_values(text: str, values: list, param, owner: str) -> list:
    """The swept values in the parameter's own type (``Param.coerce``: its choices and checks apply);
    a value named twice is a UsageError."""
    numeric = param.value_type in (int, float)
    if not numeric and any(isinstance(v, float) for v in values):
        raise UsageError(f"--sweep {text!r}: logspace and linspace need a numeric parameter, and {param.name} takes "
                         f"{param.value_type.__name__} values; list them: {param.name}=A,B")
    try:
        typed = [param.coerce(v, owner) for v in values]
    except ParamError as exc:
        raise UsageError(f"--sweep {text!r}: {exc}") from None
    if problem := repeated_values_problem(typed):
        raise UsageError(f"--sweep {text!r} {problem}; give each value once")
    return typed


def swept_ids(defense: str, name: str, values: list) -> list[str]:
    """``gradreg[lambda=1000]`` per value: numbers as short as they read back exactly (``exact_number``: a
    logspace value keeps every digit, 56234.13251903491, so that ``run --defense`` with the id trains the
    same model); booleans ``true``/``false``; text as is."""
    def label(v) -> str:
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, (int, float)):
            return exact_number(float(v))
        return str(v)

    return [f"{defense}[{name}={label(v)}]" for v in values]


def read_sweep(defense: str, sweep_text: str, param_texts: Sequence[str] = ()) -> tuple[str, list]:
    """``(parameter name, typed values)`` of ``--sweep`` for ``defense``; a ``PLUGIN.NAME`` form, a parameter the
    defense lacks, and a ``--param`` that sets the swept parameter too are one-line errors."""
    from ..param_options import parse_param_option
    from ..registry import get_registry

    name, values = parse_sweep(sweep_text)
    if name.startswith(f"{defense}."):  # --param's PLUGIN.NAME form: the plugin is the swept defense
        name = name[len(defense) + 1:]
    clashing = [text for text in param_texts if parse_param_option(text)[:2] in ((None, name), (defense, name))]
    if clashing:
        raise UsageError(f"--param {clashing[0]} and --sweep {sweep_text} both set {defense}'s {name}; "
                         f"drop the --param (the sweep sets it)")
    plugin = get_registry().get("defense", defense)
    if plugin.param(name) is None:
        known = [p.name for p in plugin.params]
        raise UsageError(f"defense '{defense}' has no parameter '{name}'{did_you_mean(name, known)}; it takes: "
                         f"{', '.join(known) or 'nothing'}")
    return name, sweep_values(sweep_text, values, plugin.param(name), f"defense '{defense}'")


def sweep_spec(spec: GridSpec, defense: str, name: str, values: list) -> GridSpec:
    """``spec`` (whose models include ``defense``) as a sweep: its reference model, then ``defense`` once per
    value, scored white-box only. A grid file lends its run settings and the swept defense's parameters,
    not its other models."""
    from ..registry import get_registry

    plugin = get_registry().get("defense", defense)
    base = next(m for m in spec.models if m.id == defense)
    swept = [dataclasses.replace(base, id=model_id, defense_params={**base.defense_params, name: v})
             for model_id, v in zip(swept_ids(defense, name, values), values)]
    for m in swept:
        plugin.resolve_params(m.defense_params)
    spec.models = [m for m in spec.models if m.is_reference][:1] + swept
    spec.transfer = False
    spec.validate()
    return spec
