"""The ``igbench`` command: a thin Click layer over the library.

Each command lives in its own module and imports torch/ART only inside its function body, so that
``igbench --help`` stays fast. Every :class:`igbench.errors.IgbenchError` becomes one line,
``Error: <what went wrong and how to fix it>``, with a non-zero exit status.
"""

from __future__ import annotations

import click

from ..errors import IgbenchError


class _OneLineError(click.ClickException):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class IgbenchGroup(click.Group):
    """A group that turns igbench's own errors into one-line messages."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except IgbenchError as exc:
            raise _OneLineError(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise _OneLineError("interrupted; finished work is saved, re-run the same command to resume", 130) from None


@click.group(cls=IgbenchGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="igbench")
def cli() -> None:
    """Adversarial robustness and interpretability benchmark (Ross & Doshi-Velez, AAAI 2018).

    Train models with defenses (input gradient regularization, distillation, adversarial
    training...), attack them (FGSM, TGSM, JSMA, PGD, any ART evasion attack) and score the
    full cross-model transfer grid. Start with `igbench plugins` and `igbench run --help`.
    """


def _add_commands() -> None:
    from . import (cache_cmd, explain_cmd, plugins_cmd, replicate_cmd, results_cmd, run_cmd, sweep_cmd,
                   train_cmd)

    for module in (plugins_cmd, run_cmd, train_cmd, sweep_cmd, results_cmd, explain_cmd, replicate_cmd, cache_cmd):
        for command in module.COMMANDS:
            cli.add_command(command)


_add_commands()


def main() -> None:
    cli(prog_name="igbench")


def echo_plugin_problems() -> None:
    """Warn on stderr about plugins that failed to load (they are left out, the rest work)."""
    from ..registry import get_registry

    for problem in get_registry().problems:
        click.echo(f"igbench: warning: {problem}", err=True)
