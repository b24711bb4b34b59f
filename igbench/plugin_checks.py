"""What the registry checks of a plugin object before it accepts it.

A plugin with a declaration mistake is reported by name and left out, so that it cannot break igbench for
every command (a ``params`` that is one ``Param`` rather than a tuple of them crashed ``igbench plugins``
and every run, whether or not they used it), and so that a mistake found only by using the plugin (a
missing ``perturb``, after every model of a grid had trained) is found when it is installed.
"""

from __future__ import annotations

import re
from typing import Any

from .plugin_types import ArchitecturePlugin, AttackPlugin, DatasetPlugin, DefensePlugin, LossDefense, Param, Plugin

#: A plugin name: letters, digits, ``-``, ``_``, ``+`` (``advtrain+gradreg``) and ``.`` (``cifar10.1``),
#: starting with a letter or digit. ``:`` is an attack provider's prefix, ``,``, ``=`` and brackets split
#: option values (``--defense a,b[x=1]``), ``/`` and spaces end up in file names.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+.\-]*$")
#: A parameter name: what ``--param NAME=VALUE`` can name (no ``.``, ``=``, ``,``, brackets or spaces).
PARAM_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$")

#: The method each kind must define (its base class's only raises NotImplementedError), and its signature.
REQUIRED_METHODS: tuple[tuple[type[Plugin], str, str], ...] = (
    (DatasetPlugin, "load", "load(self, data_dir, params) returning igbench.data.DataSplits"),
    (ArchitecturePlugin, "build", "build(self, input_shape, num_classes, params) returning a torch.nn.Module"),
    (LossDefense, "loss", "loss(self, model, x, y, params, trainer) returning (loss, logits)"),
    (DefensePlugin, "train", "train(self, trainer, params) returning the trained model"),
    (AttackPlugin, "perturb", "perturb(self, model, x, y, params, ctx) returning the adversarial inputs"),
)


#: What a targeted attack without ``targets`` is told to write.
DEFINE_TARGETS = ("define targets(self, model, x, y, params, ctx) returning one target class per input "
                  "(igbench.attacks.common.choose_targets gives next, random and least-likely)")


def defines(obj: Plugin, method: str, base: type[Plugin]) -> bool:
    """Whether ``obj`` has its own ``method`` rather than ``base``'s: on its class, or set on the instance."""
    return method in vars(obj) or getattr(type(obj), method) is not getattr(base, method)


def declaration_problem(obj: Plugin) -> str | None:
    """What is wrong with how ``obj`` declares itself (its name, its ``params``, its required method, its
    parameters' defaults), as one line that says what to change, or None."""
    return (_name_problem(obj) or _params_problem(obj.params) or _missing_method(obj) or _targets_problem(obj)
            or obj.default_problem())


def _name_problem(obj: Plugin) -> str | None:
    """A name that is not plain (the registry has already refused a plugin without a name)."""
    name = obj.name
    if not NAME_PATTERN.match(name):
        return (f"its name {name!r} is not a plain name; use letters, digits, '-', '_', '+' and '.' only "
                f"(e.g. {_suggested_name(name)!r})")
    return None


def _suggested_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_+.\-]+", "-", name).strip("-_+.") or "my-plugin"


def _params_problem(params: Any) -> str | None:
    if isinstance(params, Param):
        return ("its params is one Param, not a tuple of them (parentheses alone make no tuple): write "
                "params = (Param(...),) with the trailing comma")
    if not isinstance(params, (tuple, list)):
        return f"its params must be a tuple of igbench Param objects, got {type(params).__name__}"
    seen: set[str] = set()
    for p in params:
        if not isinstance(p, Param):
            return (f"its params must hold igbench Param objects only, got {p!r} "
                    f"(from igbench.plugin_types import Param)")
        if not isinstance(p.name, str) or not PARAM_NAME_PATTERN.match(p.name):
            return (f"its parameter name {p.name!r} is not a plain name; use letters, digits, '_' and '-' "
                    f"(e.g. 'lambda')")
        if p.name in seen:
            return f"it declares parameter '{p.name}' twice; give each Param its own name"
        seen.add(p.name)
        if p.default is None and p.type is None:
            return (f"parameter '{p.name}' has the default None and no type, so its values would be read as "
                    f"text; give its Param a type (e.g. type=float)")
    return None


def _targets_problem(obj: Plugin) -> str | None:
    """A targeted attack must say its targets: the runner scores success against what ``targets`` returns
    (an attack that chose them inside ``perturb`` was scored as untargeted, and recorded as targeted)."""
    # one whose parameters decide (is_targeted) is checked when a grid runs it targeted (check_attacks)
    if isinstance(obj, AttackPlugin) and obj.targeted and not defines(obj, "targets", AttackPlugin):
        return (f"{type(obj).__name__} is targeted but does not define targets; {DEFINE_TARGETS}, and use "
                f"ctx.extra['targets'] in perturb")
    return None


def _missing_method(obj: Plugin) -> str | None:
    for base, method, signature in REQUIRED_METHODS:
        if base is LossDefense and isinstance(obj, LossDefense) and defines(obj, "train", LossDefense):
            continue  # a loss defense with its own train need not use loss: train is its required method
        if isinstance(obj, base):
            if not defines(obj, method, base):
                return f"{type(obj).__name__} does not define {method}; define {signature}"
            return None
    return None
