"""The type of every path option and argument of the CLI: ``click.Path`` that refuses an empty value.

``--out ""`` (an unset shell variable) was taken as "not given" by some commands, so the result went to
the default place without a word, and was a traceback in others (``--dry-run``).
"""

from __future__ import annotations

import click


class PathArg(click.Path):
    """``click.Path``, and an empty value is a usage error naming the option."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("is empty; give a path (an unset shell variable?)", param, ctx)
        return super().convert(value, param, ctx)
