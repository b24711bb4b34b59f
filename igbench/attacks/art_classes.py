"""What igbench knows about particular ART evasion classes that their signatures do not say.

ART's classes declare the kind of estimator they need (``_estimator_requirements``), which
:func:`~igbench.attacks.art_provider.unusable_reason` reads. Some needs are not declared and showed only
when the attack ran, after every model of a grid had trained:

- classes that return something other than adversarial examples (a patch, a single universal image) or
  that read ``y`` as something other than labels (guide images), or that are for tabular data;
- classes that need the model's outputs to be probabilities (:data:`PROBABILITY_OUTPUTS`): igbench gives
  them the model with a softmax appended, which is what their papers attack;
- classes that take one sample per call (:data:`ONE_SAMPLE`): igbench calls them once per image;
- classes that read any labels as targets (:data:`Y_IS_ALWAYS_TARGETS`): untargeted, they get none;
- classes that import an optional package only when they run (:func:`missing_module`);
- settings that cannot work with igbench's call (:func:`setting_problem`).

Written for adversarial-robustness-toolbox 1.20; a class that is not named here behaves as ART declares.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Mapping

#: Classes whose ``generate`` does not return adversarial examples of the inputs, or whose ``y`` is not the
#: labels: igbench scores examples against labels, so they cannot fill a grid cell.
NOT_EXAMPLES = {
    "AdversarialPatch": "returns an adversarial patch, not adversarial examples of the inputs",
    "AdversarialPatchNumpy": "returns an adversarial patch, not adversarial examples of the inputs",
    "AdversarialPatchPyTorch": "returns an adversarial patch, not adversarial examples of the inputs",
    "FeatureAdversariesNumpy": "reads y as guide images, not labels",
    "FeatureAdversariesPyTorch": "reads y as guide images, not labels",
    "FrameSaliencyAttack": "wraps another ART attack object, which a command-line parameter cannot give",
    "LowProFool": "is for tabular data (it needs a feature-importance vector fitted on a table)",
}

#: Classes that refuse a model whose outputs are not probabilities (``is_probability`` or a [0, 1] check);
#: they query predictions only, so igbench hands them the model followed by a softmax.
PROBABILITY_OUTPUTS = frozenset({"SimBA", "VirtualAdversarialMethod"})

#: Classes whose ``generate`` accepts a single sample ("This attack only accepts a single sample").
ONE_SAMPLE = frozenset({"ShadowAttack"})

#: Classes that read any ``y`` as targets (ShadowAttack sets ``targeted`` when given one): untargeted, they get
#: no ``y`` and attack the model's own predictions, or they would push each image towards its true label.
Y_IS_ALWAYS_TARGETS = frozenset({"ShadowAttack"})

#: Module a class imports inside ``generate``, when its parameters make it do so: ``class: (module, pip
#: package, condition on the resolved parameters or None)``.
RUNTIME_IMPORTS: dict[str, tuple[str, str, Any]] = {
    "AutoAttack": ("multiprocess", "multiprocess", None),
    "GRAPHITEBlackbox": ("cv2", "opencv-python", None),
    "GRAPHITEWhiteboxPyTorch": ("cv2", "opencv-python", None),
    "PixelAttack": ("cma", "cma", lambda params: params.get("es", 1) == 0),
    "ThresholdAttack": ("cma", "cma", lambda params: params.get("es", 0) == 0),
}

#: pip package of a module whose import name is not its package's name
PIP_NAMES = {"cv2": "opencv-python", "sklearn": "scikit-learn", "PIL": "pillow", "yaml": "pyyaml"}


def not_examples_reason(class_name: str) -> str | None:
    """Why ``class_name``'s output cannot be scored as adversarial examples, or None."""
    return NOT_EXAMPLES.get(class_name)


def missing_module(class_name: str, params: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(module, pip package)`` that ``class_name`` will import when it runs with ``params`` and that is
    not installed here, or None."""
    need = RUNTIME_IMPORTS.get(class_name)
    if need is None:
        return None
    module, package, condition = need
    if condition is not None and not condition(params):
        return None
    return None if importlib.util.find_spec(module) is not None else (module, package)


def setting_problem(class_name: str, params: Mapping[str, Any]) -> str | None:
    """A parameter value of ``class_name`` that cannot work in igbench's call, with the fix, or None."""
    if class_name == "SignOPTAttack" and params.get("targeted", True):
        return ("targeted SignOPTAttack needs x_init, an image of each target class, which igbench does not "
                "pass; use --param targeted=false (its default is true)")
    return None


def pip_name(module: str) -> str:
    """The package ``pip install`` takes for ``module`` (``cv2`` is opencv-python)."""
    top = module.split(".")[0]
    return PIP_NAMES.get(top, top)
