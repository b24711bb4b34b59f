"""The ``igbench`` command: a thin Click layer over the library.

Each command lives in its own module and imports torch/ART only inside its function body, so that
``igbench --help`` stays fast. Every :class:`igbench.errors.IgbenchError` becomes one line,
``Error: <what went wrong and how to fix it>``, with a non-zero exit status; so do Click's usage errors
(a value of the wrong type, a missing argument) and an ``OSError`` (a path that could not be read or
written) that no check before the work caught.
"""

from __future__ import annotations

import click

from ..errors import IgbenchError, UnknownPluginError

#: the commands that train or attack, whose interruption keeps finished work for a re-run to resume
RESUMABLE_COMMANDS = {"run", "train", "sweep", "replicate"}

#: whether this invocation printed the plugin warnings (so an unknown-name error may point at them)
_warned = False


class _OneLineError(click.ClickException):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class IgbenchGroup(click.Group):
    """A group that turns igbench's own errors into one-line messages."""

    def invoke(self, ctx: click.Context):
        global _warned
        _warned = False
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # Click's own (a bad option value, a missing argument): one line too
            raise _OneLineError(one_line_usage_error(exc), exc.exit_code) from None
        except UnknownPluginError as exc:
            raise _OneLineError(str(exc) + load_failure_hint(), exc.exit_code) from None
        except IgbenchError as exc:
            raise _OneLineError(str(exc), exc.exit_code) from None
        except BrokenPipeError:
            raise
        except OSError as exc:  # a path igbench could not read or write that no check before the work caught
            from ..plugin_calls import DEBUG_ENV, debugging

            if debugging():
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            raise _OneLineError(f"{where}{exc.strerror or exc}; check the path and its permissions ({DEBUG_ENV}=1 "
                                "shows the traceback)", 1) from None
        except KeyboardInterrupt:
            if ctx.invoked_subcommand not in RESUMABLE_COMMANDS:
                raise _OneLineError("interrupted; every file igbench writes is written whole or not at all: "
                                    "re-run the command", 130) from None
            raise _OneLineError("interrupted; trained models, finished attack units and the last training snapshot "
                               "(taken every two minutes, and at a single Ctrl-C, not a second one) are kept: re-run "
                               "the same command to resume", 130) from None


@click.group(cls=IgbenchGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="igbench")
def cli() -> None:
    """Adversarial robustness and interpretability benchmark (Ross & Doshi-Velez, AAAI 2018).

    Train models with defenses (input gradient regularization, distillation, adversarial
    training...), attack them (FGSM, TGSM, JSMA, PGD, any ART evasion attack) and score the
    full cross-model transfer grid. Start with `igbench plugins` and `igbench run --help`.
    """


def _add_commands() -> None:
    from . import (cache_cmd, explain_cmd, plugins_cmd, replicate_cmd, results_cmd, run_cmd, study_cmd, sweep_cmd,
                   train_cmd)

    for module in (plugins_cmd, run_cmd, train_cmd, sweep_cmd, results_cmd, explain_cmd, study_cmd, replicate_cmd,
                   cache_cmd):
        for command in module.COMMANDS:
            cli.add_command(command)


_add_commands()


def main() -> None:
    import errno
    import os

    try:
        cli(prog_name="igbench")
    except OSError as exc:
        if exc.errno != errno.EIO:
            raise
        # The terminal went away (a hangup) and even the message saying how igbench stopped cannot be shown.
        # Exit as an interrupted command does: a training saved its snapshot before that message.
        os._exit(130)


def one_line_usage_error(exc: click.UsageError) -> str:
    """Click's usage error as one line: its message, then where the command's options are explained
    (Click itself prints a usage line and a "Try ... for help" line above the message)."""
    message = " ".join(exc.format_message().split())
    ctx = exc.ctx
    path = ctx.command_path if ctx is not None else "igbench"
    return f"{message} (see `{path} --help`)"


def echo_plugin_problems() -> None:
    """Warn on stderr about plugins that failed to load (they are left out, the rest work).

    Every command that looks plugins up calls this first, so that an unknown name whose package is
    broken is explained by the warning above the error."""
    global _warned
    from ..registry import get_registry

    for problem in get_registry().problems:
        click.echo(f"igbench: warning: {problem}", err=True)
    _warned = True


def load_failure_hint() -> str:
    """`` (N plugin package(s) failed to load: see the warnings above)`` for an unknown-name error, when
    this invocation printed those warnings; ``""`` otherwise."""
    from ..registry import loaded_registry

    registry = loaded_registry()
    if not _warned or registry is None:
        return ""
    n = len(registry.load_failures)
    if not n:
        return ""
    return f" ({n} plugin package{'s' if n > 1 else ''} failed to load: see the warnings above)"
