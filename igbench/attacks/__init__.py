"""Built-in attacks plugins, registered through the same hook as any third-party plugin.

Native PyTorch attacks: ``fgsm``, ``tgsm``, ``pgd``, ``jsma``; and the ``art:`` provider, which serves
every evasion attack of the Adversarial Robustness Toolbox as ``art:<ClassName>``.
"""

from .. import hookimpl


@hookimpl
def igbench_attacks(register):
    """Register the built-in attacks."""
    from .art_provider import ArtProvider
    from .gradient import FGSM, PGD, TGSM
    from .jsma import JSMA

    for plugin in (FGSM(), TGSM(), PGD(), JSMA(), ArtProvider()):
        register(plugin)
