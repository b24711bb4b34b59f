"""``art:<ClassName>``: any evasion attack of the Adversarial Robustness Toolbox as an igbench attack.

The model is wrapped in ART's ``PyTorchClassifier`` (cross-entropy loss, the data's clip range); the
attack's parameters are the ART class's ``__init__`` keyword arguments, converted from CLI strings. ART is
imported only when an ``art:`` attack is resolved or listed. What particular classes need beyond their
signatures (probability outputs, one sample per call, optional packages) is in
:mod:`igbench.attacks.art_classes`.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import inspect
import logging
import warnings
from contextlib import contextmanager
from typing import Any, Mapping

from ..errors import ParamError, UnknownPluginError, UsageError, did_you_mean
from ..numbers import python_only_number
from ..plugin_calls import DEBUG_ENV, debugging
from . import art_classes
from ..plugin_types import AttackContext, AttackPlugin, AttackProvider, Param
from ..torch_utils import eval_mode, out_of_memory, seeded_global_randomness
from .common import TARGET_CHOICES, choose_targets, target_param, targets_for

# ART attacks that are always targeted (their ``y`` is the target) without a ``targeted`` argument.
ALWAYS_TARGETED = frozenset({"SaliencyMapMethod"})
# Other ART attack families, searched only to explain why a name is not an evasion attack.
OTHER_FAMILIES = (
    ("art.attacks.poisoning", "a poisoning attack"),
    ("art.attacks.extraction", "a model-extraction attack"),
    ("art.attacks.inference.membership_inference", "a membership-inference attack"),
    ("art.attacks.inference.attribute_inference", "an attribute-inference attack"),
    ("art.attacks.inference.model_inversion", "a model-inversion attack"),
    ("art.attacks.inference.reconstruction", "a reconstruction attack"),
)
JSON_TYPES = (bool, int, float, str, type(None))
# Evasion classes for other kinds of model that declare no estimator requirement ART could check.
NOT_IMAGE_CLASSIFIER_ATTACKS = {
    "SNAL": "object detectors", "OverloadPyTorch": "object detectors",
    "OverTheAirFlickeringPyTorch": "video classifiers",
}


def _json_safe(v: Any) -> bool:
    """A default that a result file can record as plain JSON (no objects, no inf/nan)."""
    import math

    return isinstance(v, JSON_TYPES) and not (isinstance(v, float) and not math.isfinite(v))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _quiet_art_logging() -> None:
    logging.getLogger("art").setLevel(logging.WARNING)


@contextmanager
def _quiet():
    """Silence ART's INFO logging and its warnings for the block."""
    _quiet_art_logging()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _evasion_classes() -> dict[str, type]:
    with _quiet():
        import art.attacks.evasion as evasion
        from art.attacks.attack import EvasionAttack
    return {
        name: obj for name, obj in vars(evasion).items()
        if isinstance(obj, type) and issubclass(obj, EvasionAttack) and not name.startswith("_")
    }


def unusable_reason(cls: type) -> str | None:
    """Why the ART class ``cls`` cannot attack igbench's models (a PyTorch image classifier), or None.

    Two kinds never can: classes written for TensorFlow models (``...TensorFlowV2``: they call TensorFlow
    on the estimator, whichever packages are installed), and classes whose declared estimator needs are
    not a classifier's (speech recognizers, object detectors, scikit-learn trees). They used to pass the
    check before training and fail only when the attack ran."""
    if "tensorflow" in f"{cls.__module__}.{cls.__name__}".lower():
        return "is written for TensorFlow models, and igbench's models are PyTorch ones"
    if cls.__name__ in NOT_IMAGE_CLASSIFIER_ATTACKS:
        return f"attacks {NOT_IMAGE_CLASSIFIER_ATTACKS[cls.__name__]}, not image classifiers like igbench's models"
    if (why := art_classes.not_examples_reason(cls.__name__)) is not None:
        return why
    with _quiet():
        from art.estimators.classification import PyTorchClassifier
    missing = []
    for need in getattr(cls, "_estimator_requirements", ()) or ():
        options = need if isinstance(need, tuple) else (need,)
        if not any(isinstance(o, type) and issubclass(PyTorchClassifier, o) for o in options):
            missing.append(" or ".join(getattr(o, "__name__", str(o)) for o in options))
    if missing:
        return (f"needs a model of ART's kind {', '.join(missing)}, and igbench gives ART a PyTorch image "
                f"classifier")
    return None


@contextmanager
def _seeded_randomness(ctx: AttackContext, device):
    """The global random numbers (:func:`~igbench.torch_utils.seeded_global_randomness`), seeded from
    ``ctx.generator`` for the duration of one ART call and restored afterwards. ART's random starts and
    queries (PGD's ``num_random_init``, HopSkipJump, SquareAttack, ...) draw from the global generators,
    which igbench never seeded: the same grid cell gave other examples on every run. Without a generator
    nothing is seeded."""
    import torch

    if ctx.generator is None:
        yield
        return
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator, device=ctx.generator.device))
    with seeded_global_randomness(seed, device):
        yield


def _raised_in_a_forward(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while a ``torch.nn.Module`` ran ``forward``: a bug of the model (or of what
    fed it), which ART's parameters cannot fix."""
    import torch

    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "forward" and isinstance(frame.f_locals.get("self"), torch.nn.Module):
            return True
        tb = tb.tb_next
    return False


def _current_cuda_device(device):
    """``torch.cuda.device(device)`` for a CUDA device, else a context that does nothing."""
    import contextlib

    import torch

    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _art_version() -> str:
    from ..environment import package_version

    return package_version("adversarial-robustness-toolbox") or "(version unknown)"


@functools.cache
def _probability_nll() -> type:
    import torch

    class ProbabilityNLL(torch.nn.NLLLoss):
        """Cross-entropy of a model whose outputs are probabilities (ART reduces one-hot labels for an
        ``NLLLoss``), so that ART's loss gradients stay those of the undressed model."""

        def forward(self, probabilities, target):
            return super().forward(torch.log(probabilities.clamp_min(1e-30)), target)

    return ProbabilityNLL


@functools.cache
def _float32_classifier() -> type:
    """ART's ``PyTorchClassifier``, made to hand the model float32 inputs. ART passes some attacks' queries
    on as float64 arrays (HopSkipJump's), which a float32 PyTorch layer refuses ("mat1 and mat2 must have
    the same dtype"). A float32 input passes through untouched, so no other attack's numbers change, and the
    model itself is not wrapped (ART reads a ``Sequential``'s layers for layer-wise attacks). Made once, on
    first use: ART is imported only when an ``art:`` attack runs."""
    import numpy as np
    import torch
    from art.estimators.classification import PyTorchClassifier

    class Float32PyTorchClassifier(PyTorchClassifier):
        def _apply_preprocessing(self, x, y, fit=False, no_grad=True):
            if isinstance(x, np.ndarray) and x.dtype == np.float64:
                x = x.astype(np.float32)
            elif isinstance(x, torch.Tensor) and x.dtype == torch.float64:
                x = x.to(torch.float32)
            return super()._apply_preprocessing(x, y, fit=fit, no_grad=no_grad)

    return Float32PyTorchClassifier


def _pytorch_sibling(name: str, classes: Mapping[str, type]) -> str:
    """``; use art:X`` naming the PyTorch (or framework-free) class of the same attack, if ART has one."""
    for suffix in ("TensorFlowV2", "TensorFlow"):
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            for candidate in (stem + "PyTorch", stem):
                if candidate in classes and unusable_reason(classes[candidate]) is None:
                    return f"; use art:{candidate}"
    return ""


def _parse_literal(text: str) -> Any:
    low = text.strip().lower()
    if low in {"true", "yes", "on"}:
        return True
    if low in {"false", "no", "off"}:
        return False
    if low in {"none", "null"}:
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def coerce_value(name: str, value: Any, default: Any, owner: str) -> Any:
    """Convert ``value`` (often a CLI string) to the type of the ART argument's ``default``.

    bool, int and float defaults convert strictly (a bad value is a :class:`ParamError`); other defaults
    (``None``, strings, ``np.inf``-like floats included above) take ``true``/``false``/``none``, an int, a
    float, or the string itself. ``1_0`` and non-ASCII digits, which Python reads as numbers, are refused
    for every default, as igbench's own parameters refuse them.
    """
    if isinstance(value, str) and python_only_number(value.strip()):
        hint = f" (write it without _, e.g. {value.strip().replace('_', '')})" if "_" in value else ""
        raise ParamError(f"parameter '{name}' of {owner} must be a number in ASCII digits; got {value!r}{hint}")
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        parsed = _parse_literal(str(value))
        if isinstance(parsed, bool):
            return parsed
        raise ParamError(f"parameter '{name}' of {owner} must be true or false; got {value!r}")
    if isinstance(default, int):
        parsed = _parse_literal(value) if isinstance(value, str) else value
        if isinstance(parsed, float) and parsed.is_integer():
            parsed = int(parsed)
        if isinstance(parsed, int) and not isinstance(parsed, bool):
            return parsed
        raise ParamError(f"parameter '{name}' of {owner} must be an integer; got {value!r}")
    if isinstance(default, float):
        parsed = _parse_literal(value) if isinstance(value, str) else value
        if isinstance(parsed, str) and parsed.strip().lower() in {"inf", "+inf", "infinity"}:
            return float("inf")
        if isinstance(parsed, (int, float)) and not isinstance(parsed, bool):
            return float(parsed)
        raise ParamError(f"parameter '{name}' of {owner} must be a number; got {value!r}")
    return _parse_literal(value) if isinstance(value, str) else value


class ArtAttack(AttackPlugin):
    """One ART evasion class, adapted to :class:`AttackPlugin`.

    ``params`` are the class's keyword arguments (ART's defaults), plus ``target`` (next | random |
    least-likely) for attacks that can be targeted. ``verbose`` defaults to false (no ART progress bars).
    """

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.class_name = cls.__name__
        self.name = f"art:{cls.__name__}"
        doc = inspect.getdoc(cls) or ""
        para = " ".join(doc.strip().split("\n\n")[0].split()) or f"ART {cls.__name__}"
        self.summary = para if len(para) <= 100 else para[:97].rsplit(" ", 1)[0] + "..."
        sig = inspect.signature(cls.__init__)
        args = [p for p in sig.parameters.values()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"]
        # the first argument is the estimator (classifier / estimator), supplied by igbench
        self.kwargs: dict[str, Any] = {
            p.name: (None if p.default is inspect.Parameter.empty else p.default) for p in args[1:]
        }
        if "verbose" in self.kwargs:
            self.kwargs["verbose"] = False
        self.can_target = "targeted" in self.kwargs or cls.__name__ in ALWAYS_TARGETED
        params = [
            Param(k, v if _json_safe(v) else repr(v), f"ART {cls.__name__}({k}=...)",
                  type=type(v) if _json_safe(v) and v is not None else str)
            for k, v in self.kwargs.items()
        ]
        if self.can_target and "target" not in self.kwargs:
            params.append(target_param("next"))
        self.params = tuple(params)

    # ------------------------------------------------------------------ parameters
    def resolve_params(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """ART's JSON-friendly defaults overlaid with ``given`` (converted); unknown names are errors."""
        given = dict(given or {})
        known = [p.name for p in self.params]
        out: dict[str, Any] = {k: v for k, v in self.kwargs.items() if _json_safe(v)}
        if self.can_target and "target" not in self.kwargs:
            out["target"] = "next"
        for key, value in given.items():
            if key not in known:
                msg = f"unknown parameter '{key}' for {self.label}; it accepts: {', '.join(known) or 'nothing'}"
                raise ParamError(msg + did_you_mean(key, known))
            if key == "target" and "target" not in self.kwargs:
                if value not in TARGET_CHOICES:
                    raise ParamError(f"parameter 'target' of {self.label} must be one of "
                                     f"{', '.join(TARGET_CHOICES)}; got {value!r}")
                out[key] = value
            else:
                out[key] = coerce_value(key, value, self.kwargs[key], self.label)
        # Only a target other than the default: a grid resolves its resolved parameters again.
        if given.get("target", "next") != "next" and "target" not in self.kwargs and not self.is_targeted(out):
            raise ParamError(f"parameter 'target' of {self.label} has no effect on an untargeted attack (it would be "
                             "recorded, and ignored); add targeted=true, or drop target")
        return out

    def linf_bound(self, params: dict[str, Any]) -> float | None:
        """ART's ``eps`` is an L-inf bound only where the class takes ``norm`` and it is infinity (its default
        for FastGradientMethod and ProjectedGradientDescent); other classes' eps mean other things."""
        if "eps" not in self.kwargs or "norm" not in self.kwargs:
            return None
        norm = params.get("norm", self.kwargs["norm"])
        eps = params.get("eps")
        if str(norm).strip().lower() not in {"inf", "np.inf", "infinity"} or isinstance(eps, bool):
            return None
        return float(eps) if isinstance(eps, (int, float)) else None

    def is_targeted(self, params: dict[str, Any]) -> bool:
        return self.class_name in ALWAYS_TARGETED or bool(params.get("targeted", False))

    def targets(self, model, x, y, params: dict[str, Any], ctx: AttackContext):
        if not self.is_targeted(params):
            return None
        return choose_targets(model, x, y, params.get("target", "next"), ctx)

    # ------------------------------------------------------------------ attack
    def _build(self, model, input_shape: tuple[int, ...], ctx: AttackContext, kwargs: dict[str, Any],
               on_gpu: bool = False):
        """ART's attack object on ``model`` wrapped in a PyTorchClassifier; its constructor's complaints
        about the parameters or the model become one-line igbench errors. Call inside :func:`_quiet`."""
        import torch
        from art.exceptions import EstimatorError

        loss = torch.nn.CrossEntropyLoss()
        if self.class_name in art_classes.PROBABILITY_OUTPUTS:  # it refuses logits; it queries predictions only
            model, loss = torch.nn.Sequential(model, torch.nn.Softmax(dim=1)), _probability_nll()()
        classifier = _float32_classifier()(
            model=model, loss=loss, input_shape=tuple(input_shape),
            nb_classes=int(ctx.num_classes), clip_values=(float(ctx.clip_min), float(ctx.clip_max)),
            device_type="gpu" if on_gpu else "cpu",
        )
        try:
            return self.cls(classifier, **kwargs)
        except EstimatorError as exc:
            raise UsageError(f"{self.name} needs a kind of model igbench does not provide "
                             f"(it got a PyTorch image classifier): {_one_line(exc)}") from None
        except (ValueError, TypeError, AssertionError) as exc:
            raise ParamError(f"{self.name} rejected its parameters {kwargs}: {_one_line(exc)}") from None
        except ImportError as exc:
            missing = getattr(exc, "name", None) or "a package it imports"
            raise UsageError(f"{self.name} needs {missing}, which is not installed here "
                             f"(pip install {missing}): {_one_line(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - any other failure of ART's constructor, as one line
            raise ParamError(f"{self.name} could not be built with parameters {kwargs}: "
                             f"{type(exc).__name__}: {_one_line(exc)}") from None

    def check(self, params: dict[str, Any], input_shape: tuple[int, ...], ctx: AttackContext) -> None:
        """Run ART's constructor (its parameter checks) on a stand-in linear classifier of the same input
        shape and class count, before any model trains."""
        import math

        import torch

        kwargs = {k: v for k, v in params.items() if k in self.kwargs}
        stand_in = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(math.prod(input_shape), int(ctx.num_classes)))
        with _quiet():
            self._build(stand_in.eval(), input_shape, ctx, kwargs)
        if (problem := art_classes.setting_problem(self.class_name, params)) is not None:
            raise ParamError(f"{self.name}: {problem}")
        if (missing := art_classes.missing_module(self.class_name, params)) is not None:
            module, package = missing
            raise UsageError(f"{self.name} imports {module} when it runs, which is not installed here; "
                             f"pip install {package}")

    def perturb(self, model, x, y, params: dict[str, Any], ctx: AttackContext):
        import numpy as np
        import torch

        kwargs = {k: v for k, v in params.items() if k in self.kwargs}
        with eval_mode(model):
            labels = targets_for(self, model, x, y, params, ctx) if self.is_targeted(params) else y
            # ART puts the model on the *current* CUDA device: make it x's, or cuda:N (N > 0) moved the model
            # to cuda:0, away from its inputs
            with _quiet(), _seeded_randomness(ctx, x.device), _current_cuda_device(x.device):
                attack = self._build(model, tuple(x.shape[1:]), ctx, kwargs, on_gpu=x.is_cuda)
                one_hot = np.eye(int(ctx.num_classes), dtype=np.float32)[labels.detach().cpu().numpy()]
                if self.class_name in art_classes.Y_IS_ALWAYS_TARGETS and not self.is_targeted(params):
                    one_hot = None
                inputs = x.detach().cpu().numpy().astype(np.float32)
                try:
                    if self.class_name in art_classes.ONE_SAMPLE:  # ART takes one image per call here
                        out = np.concatenate([attack.generate(x=inputs[i:i + 1],
                                                              y=None if one_hot is None else one_hot[i:i + 1])
                                              for i in range(len(inputs))])
                    else:
                        out = attack.generate(x=inputs, y=one_hot)
                except ImportError as exc:  # a package ART imports only when the attack runs
                    module = getattr(exc, "name", None)
                    if module and importlib.util.find_spec(module.split(".")[0]) is not None:  # installed: too old?
                        raise UsageError(f"{self.name} could not import what it needs from {module} ({_one_line(exc)}); "
                                         f"the installed {module} may not be the version ART {_art_version()} "
                                         f"expects (pip install -U {art_classes.pip_name(module)})") from None
                    module = module or "a package it imports"
                    raise UsageError(f"{self.name} needs {module}, which is not installed here (pip install "
                                     f"{art_classes.pip_name(module)}); the trained models are cached, so the "
                                     f"same command then resumes") from None
                except (ValueError, TypeError, AssertionError) as exc:
                    if _raised_in_a_forward(exc):  # the model's failure, not the parameters': the caller's
                        raise                      # plugin_call names a third-party architecture
                    raise ParamError(f"{self.name} failed with parameters {kwargs}: {_one_line(exc)}; "
                                     f"check them against ART's documentation of {self.class_name}") from exc
                except Exception as exc:  # noqa: BLE001 - any other failure inside ART's own code, as one line
                    if (what := out_of_memory(exc)) is not None:  # in ART's code or in the model's forward alike
                        told = f" ({_one_line(exc)})" if str(exc) else ""
                        raise UsageError(f"{self.name} ran out of {what}{told}; lower its batch_size "
                                         f"(--param batch_size=N) or --n-test") from None
                    if _raised_in_a_forward(exc) or debugging():
                        raise
                    raise UsageError(f"{self.name} failed inside ART {_art_version()}: {type(exc).__name__}: "
                                     f"{_one_line(exc)} (an error in ART's code, not in its parameters: try "
                                     f"another attack or ART version; {DEBUG_ENV}=1 shows the traceback)") from exc
                finally:
                    model.eval()  # ART may toggle modes; eval_mode restores the caller's flags afterwards
        x_adv = torch.as_tensor(np.asarray(out), dtype=x.dtype).reshape(x.shape).to(x.device)
        return x_adv.clamp(ctx.clip_min, ctx.clip_max).detach()


class ArtProvider(AttackProvider):
    """Serves ``art:<ClassName>`` for every class of ``art.attacks.evasion``."""

    name = "art"
    prefix = "art:"
    summary = "any evasion attack of the Adversarial Robustness Toolbox, e.g. art:CarliniL2Method"

    def __init__(self) -> None:
        self._cache: dict[str, ArtAttack] = {}

    def available(self) -> list[str]:
        """The evasion classes that can attack igbench's models (:func:`unusable_reason` leaves out the
        TensorFlow-only, speech, object-detection and scikit-learn ones)."""
        return sorted(name for name, cls in _evasion_classes().items() if unusable_reason(cls) is None)

    def missing_requirement(self, suffix: str) -> str | None:
        missing = art_classes.missing_module(suffix, {})  # the class's defaults decide (PixelAttack's es=1 needs none)
        return None if missing is None else f"pip install {missing[1]}"

    def resolve(self, suffix: str) -> AttackPlugin:
        if suffix in self._cache:
            return self._cache[suffix]
        classes = _evasion_classes()
        cls = classes.get(suffix)
        if cls is None:
            family = _other_family(suffix)
            if family:
                raise UsageError(f"art:{suffix} is not an evasion attack (it is {family}); "
                                 f"use a class of art.attacks.evasion, e.g. art:FastGradientMethod")
            names = sorted(classes)
            lower = {n.lower(): n for n in names}
            hint = [lower[suffix.lower()]] if suffix.lower() in lower else \
                difflib.get_close_matches(suffix, names, n=1, cutoff=0.5)
            msg = f"unknown ART attack 'art:{suffix}'"
            msg += f"; did you mean 'art:{hint[0]}'?" if hint else "; `igbench plugins --kind attack` lists them"
            if suffix.lower() in {"fgsm", "tgsm", "pgd", "jsma"}:  # igbench's own names with ART's prefix
                msg += f" (igbench's native {suffix.lower()} is --attack {suffix.lower()}, without art:)"
            raise UnknownPluginError(msg)
        if (why := unusable_reason(cls)) is not None:
            raise UsageError(f"art:{suffix} {why}{_pytorch_sibling(suffix, classes)}; `igbench plugins --kind "
                             f"attack` lists the ART attacks that can run here")
        attack = ArtAttack(cls)
        attack.source = "adversarial-robustness-toolbox"
        self._cache[suffix] = attack
        return attack


def _other_family(name: str) -> str | None:
    """Which non-evasion ART attack family defines ``name`` (``None`` when none does)."""
    import importlib

    if not name.isidentifier():
        return None
    with _quiet():
        from art.attacks.attack import EvasionAttack

        import art.attacks.evasion as evasion
        obj = getattr(evasion, name, None)
        if obj is not None and not (isinstance(obj, type) and issubclass(obj, EvasionAttack)):
            return "not an attack class"
        for module_name, what in OTHER_FAMILIES:
            try:
                module = importlib.import_module(module_name)
            except Exception:  # noqa: BLE001 - an optional ART family that fails to import is just skipped
                continue
            if isinstance(getattr(module, name, None), type):
                return f"{what} in {module_name}"
    return None
