"""The plain classes that plugins register, and their declared parameters.

This module imports nothing heavy: plugin objects are cheap descriptions whose working
methods import torch lazily.
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

from .errors import ParamError, did_you_mean
from .numbers import read_number
from .plugin_calls import is_third_party, plugin_call

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    import torch

    from .data import DataSplits
    from .engine.train import Trainer


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class Param:
    """One declared plugin parameter.

    ``type`` is inferred from ``default`` when omitted (``None`` defaults need an explicit type).
    ``check`` returns an error text (what is wrong and what is allowed) or ``None`` when valid.
    ``recorded_at_default=False`` leaves the parameter out of what a result records while it has its
    default (:meth:`Plugin.recorded_params`): for a parameter added after results were recorded, so
    that those results keep their run ids (``igbench replicate`` reuses them, interrupted grids resume)
    and read the same.
    """

    name: str
    default: Any
    help: str
    type: type | None = None
    choices: tuple | None = None
    check: Callable[[Any], str | None] | None = None
    recorded_at_default: bool = True

    @property
    def value_type(self) -> type:
        if self.type is not None:
            return self.type
        return type(self.default) if self.default is not None else str

    def coerce(self, value: Any, owner: str) -> Any:
        """Convert a CLI string (or a TOML value) to this parameter's type and validate it."""
        t = self.value_type
        try:
            if value is None:
                v = None
            elif t is bool and isinstance(value, str):
                low = value.strip().lower()
                if low not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                    raise ValueError(value)
                v = low in {"1", "true", "yes", "on"}
            elif t in (int, float) and isinstance(value, bool):
                raise ValueError(value)  # int(True) would pass silently as 1
            elif t is int and isinstance(value, str):
                number = read_number(value)  # refuses 1_0, which int() and float() read as 10
                v = int(number) if number.is_integer() else int(value)
            elif t is float and isinstance(value, str):  # 8/255 too, as --eps takes
                v = read_number(value)
            elif t is int and isinstance(value, float):
                if not value.is_integer():  # a TOML 0.3 was cut to 0 without a word
                    raise ValueError(value)
                v = int(value)
            else:
                v = t(value)
        except (TypeError, ValueError, ZeroDivisionError):
            what, hint = t.__name__, ""
            if t is int and _is_fraction(value):
                what = "a whole number"
                if self.type is None:  # for the plugin's author, after what the user can do
                    hint = (f" (its default is {self.default!r}; if the plugin is yours and it takes any number, "
                            f"give its Param a float default such as {float(self.default)!r})")
            if t in (int, float) and isinstance(value, str) and "_" in value:
                hint = f" (write it without _, e.g. {value.replace('_', '')})"
            raise ParamError(
                f"parameter '{self.name}' of {owner} must be {what}, got {value!r}{hint}"
            ) from None
        if t is float and v is not None and not math.isfinite(v):  # lambda=inf trained other models first
            raise ParamError(f"parameter '{self.name}' of {owner} must be a finite number; got {value!r}")
        if self.choices is not None and v not in self.choices:
            raise ParamError(
                f"parameter '{self.name}' of {owner} must be one of {', '.join(map(str, self.choices))}; got {v!r}"
            )
        if self.check is not None and v is not None:
            problem = self.check(v)
            if problem:
                raise ParamError(f"parameter '{self.name}' of {owner} {problem}; got {v!r}")
        return v


def _is_fraction(value: Any) -> bool:
    """Whether ``value`` (a CLI string or a TOML number) is a number with a fractional part."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, bool) and math.isfinite(number) and not number.is_integer()


def non_negative(v) -> str | None:
    return None if v >= 0 else "must be >= 0"


def positive(v) -> str | None:
    return None if v > 0 else "must be > 0"


def in_unit_interval(v) -> str | None:
    """(0, 1]"""
    return None if 0 < v <= 1 else "must be in (0, 1]"


# --------------------------------------------------------------------------- plugins
class Plugin:
    """Base of every registered plugin object.

    Subclasses set ``name`` (unique within the kind), ``summary`` (one line for `igbench plugins`)
    and ``params`` (a tuple of :class:`Param`). The registry fills ``source`` with the providing
    package's name.
    """

    kind: ClassVar[str] = "plugin"
    name: str = ""
    summary: str = ""
    params: tuple[Param, ...] = ()
    source: str = ""

    @property
    def label(self) -> str:
        return f"{self.kind} '{self.name}'"

    def param(self, name: str) -> Param | None:
        for p in self.params:
            if p.name == name:
                return p
        return None

    def resolve_params(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overlaid with ``given``, every value coerced and checked.

        An unknown name is a :class:`ParamError` listing the known names and a close match.
        """
        given = dict(given or {})
        known = [p.name for p in self.params]
        out: dict[str, Any] = {}
        for key in given:
            if key not in known:
                msg = f"unknown parameter '{key}' for {self.label}"
                msg += f"; known: {', '.join(known)}" if known else " (it takes no parameters)"
                raise ParamError(msg + did_you_mean(key, known))
        for p in self.params:
            out[p.name] = p.coerce(given[p.name], self.label) if p.name in given else p.default
        return out

    def default_problem(self) -> str | None:
        """What is wrong with the declared defaults, or ``None``: each default goes through its own
        ``Param``'s type, choices and check, as a value given on the command line would. The registry
        leaves out a plugin with a bad default, which would otherwise be shown and used as is and fail
        later (inside torch, hours into a grid)."""
        for p in self.params:
            try:
                p.coerce(p.default, self.label)
            except ParamError as exc:
                return f"the default of {exc}; change the Param's default (or its check)"
            except Exception as exc:  # noqa: BLE001 - a check that cannot even judge its own default
                return (f"checking the default {p.default!r} of parameter '{p.name}' raised "
                        f"{type(exc).__name__}: {exc}; change the Param's default (or its check)")
        return None

    def recorded_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Resolved ``params`` as a result records them: without the parameters declared
        ``recorded_at_default=False`` that have their default value."""
        quiet = {p.name: p.default for p in self.params if not p.recorded_at_default}
        return {k: v for k, v in params.items() if k not in quiet or v != quiet[k]}

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description, used by `igbench plugins --json`."""
        return {
            "kind": self.kind,
            "name": self.name,
            "summary": self.summary,
            "source": self.source,
            # what `igbench plugins NAME` shows: type and choices too
            "params": {p.name: {"default": p.default, "type": p.value_type.__name__, "help": p.help,
                                **({"choices": list(p.choices)} if p.choices else {})} for p in self.params},
        }

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"<{type(self).__name__} {self.name!r} from {self.source or '?'}>"


class DatasetPlugin(Plugin):
    """A data set. ``load`` returns :class:`igbench.data.DataSplits` (float32, NCHW, inside its
    ``[clip_min, clip_max]``; ``[0, 1]`` for every built-in)."""

    kind: ClassVar[str] = "dataset"

    def load(self, data_dir: "Path | None", params: dict[str, Any]) -> "DataSplits":
        raise NotImplementedError


class ArchitecturePlugin(Plugin):
    """A model architecture. ``build`` returns a fresh ``torch.nn.Module`` that outputs logits.

    ``input_shapes`` lists the (C, H, W) shapes it accepts, or ``None`` for any shape.
    """

    kind: ClassVar[str] = "architecture"
    input_shapes: tuple[tuple[int, int, int], ...] | None = None

    def build(self, input_shape: tuple[int, int, int], num_classes: int, params: dict[str, Any]) -> "torch.nn.Module":
        raise NotImplementedError

    def revision(self, params: dict[str, Any]) -> str | None:
        """A label for a change in what ``build`` makes with these (resolved) ``params``, or ``None``. It joins
        the checkpoint key when not ``None``, so a model whose code changed is trained anew, and models of
        the other parameters keep their keys (a version bump would change every key)."""
        return None


class DefensePlugin(Plugin):
    """A training procedure. ``train(trainer, params)`` returns the trained model.

    ``trainer`` (:class:`igbench.engine.train.Trainer`) owns the data, the architecture, the optimizer
    settings, the seed and the progress bar: ``trainer.new_model()`` and ``trainer.fit(...)``.
    """

    kind: ClassVar[str] = "defense"

    def train(self, trainer: "Trainer", params: dict[str, Any]) -> "torch.nn.Module":
        raise NotImplementedError


class LossDefense(DefensePlugin):
    """A defense that is just a per-batch training loss on the standard training loop."""

    def loss(self, model, x, y, params: dict[str, Any], trainer: "Trainer"):
        """Return ``(loss, logits)`` for one batch: a scalar tensor computed from the model's weights (not
        detached, not a Python float) and ``(batch, num_classes)`` logits, which feed the progress bar's
        accuracy. The training checks both on every step."""
        raise NotImplementedError

    def train(self, trainer: "Trainer", params: dict[str, Any]):
        if getattr(trainer, "defense", None) is None:  # errors about the loss name this defense
            trainer.defense = self
        model = trainer.new_model()
        if not is_third_party(self):
            return trainer.fit(model, lambda m, x, y: self.loss(m, x, y, params, trainer), desc=self.name)

        def loss(m, x, y):
            with plugin_call(self, "loss"):
                return self.loss(m, x, y, params, trainer)

        return trainer.fit(model, loss, desc=self.name)


#: ``ctx.extra`` key under which the attack runner hands ``perturb`` its batch's targets
TARGETS_KEY = "targets"


@dataclass
class AttackContext:
    """What an attack needs besides model, inputs and labels.

    ``generator`` is a seeded ``torch.Generator`` on the inputs' device (random targets, random starts).
    """

    clip_min: float
    clip_max: float
    num_classes: int
    generator: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


class AttackPlugin(Plugin):
    """An evasion attack. ``perturb`` returns adversarial inputs within the clip range, same shape.

    An attack whose ``params`` include ``eps`` is swept over the grid's eps values.
    ``targeted`` attacks choose their targets from their own parameters (e.g. ``target=next``) in
    ``targets``; the runner calls it once per batch, scores success against those targets, and hands
    them to ``perturb`` as ``ctx.extra["targets"]`` (``perturb`` uses them when present, so random
    targets are drawn once, and chooses its own otherwise).
    """

    kind: ClassVar[str] = "attack"
    targeted: bool = False
    #: Whether ``eps`` bounds the L-inf size of the perturbation (every built-in attack that takes eps);
    #: igbench then refuses an output that moves any input further. Set False for an eps of another norm.
    eps_is_linf: ClassVar[bool] = True

    @property
    def uses_eps(self) -> bool:
        return self.param("eps") is not None

    def linf_bound(self, params: dict[str, Any]) -> float | None:
        """The largest L-inf move ``perturb`` may make with these (resolved) params, or ``None`` for no bound."""
        eps = params.get("eps") if self.eps_is_linf and self.uses_eps else None
        return float(eps) if isinstance(eps, (int, float)) and not isinstance(eps, bool) else None

    def perturb(self, model, x, y, params: dict[str, Any], ctx: AttackContext):
        """Adversarial versions of ``x``. ``model`` is a frozen inference copy of the trained model (eval
        mode, BatchNorm folded, ``requires_grad`` off on its weights): take gradients with respect to
        ``x`` only (``torch.autograd.grad(loss, x)``), never through ``.grad`` of the weights."""
        raise NotImplementedError

    def is_targeted(self, params: dict[str, Any]) -> bool:
        """Whether the attack with these (resolved) params aims at targets (``targeted``, unless a parameter
        decides it, as ART's ``targeted`` does); results record it per attack."""
        return bool(self.targeted)

    def targets(self, model, x, y, params: dict[str, Any], ctx: AttackContext):
        """Target class of each input (a LongTensor shaped like ``y``), or ``None`` when untargeted."""
        return None

    def check(self, params: dict[str, Any], input_shape: tuple[int, ...], ctx: AttackContext) -> None:
        """Optional pre-flight check of resolved ``params`` for inputs of ``input_shape`` (no batch dim).

        A grid calls it once per attack unit after loading the data and before training any model, so
        that a parameter only the attack itself can judge (a wrapped library's constructor, say) fails in
        seconds rather than after hours of training. Raise :class:`igbench.errors.ParamError` (one line,
        naming the parameter). The default accepts everything ``resolve_params`` accepted.
        """
        return None


class AttackProvider(Plugin):
    """Serves a namespace of attack names, ``<prefix><suffix>`` (e.g. ``art:CarliniL2Method``)."""

    kind: ClassVar[str] = "attack"
    prefix: str = ""

    @property
    def label(self) -> str:
        return f"attack provider '{self.prefix}'"

    def resolve(self, suffix: str) -> AttackPlugin:
        """Return the attack for ``suffix`` or raise :class:`igbench.errors.UnknownPluginError`."""
        raise NotImplementedError

    def available(self) -> list[str]:
        """Names (without prefix) that ``resolve`` accepts; may import heavy libraries."""
        return []

    def missing_requirement(self, suffix: str) -> str | None:
        """What the attack ``suffix`` needs at its default settings that is not installed here (e.g.
        ``"pip install multiprocess"``), for ``igbench plugins`` to say beside its name; None when nothing."""
        return None


PLUGIN_KINDS: dict[str, type[Plugin]] = {
    "dataset": DatasetPlugin,
    "architecture": ArchitecturePlugin,
    "defense": DefensePlugin,
    "attack": AttackPlugin,
}
