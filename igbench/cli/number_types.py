"""The types of the CLI's whole-number and real-number options: Click's, minus Python's extra number forms.

Click reads ``--steps 2_0`` as 20 and ``--seed ١`` (an Arabic-Indic one) as 1, because Python's ``int``
and ``float`` do. A recorded command then names a number no reader recognises, and an underscore is far
more often a typo than a digit separator. Plugin parameters and ``--eps`` refuse both already
(:func:`igbench.numbers.read_number`); these types make every other number option agree.
"""

from __future__ import annotations

import math

import click

from ..numbers import python_only_number


def _python_only_form(value) -> bool:
    """Text Python reads as a number only through ``_`` or non-ASCII digits; other text gets Click's own
    "is not a valid integer" (``ten_k`` is no number with an underscore to drop)."""
    return isinstance(value, str) and python_only_number(value.strip())


def _hint(value: str) -> str:
    return f"; write it without _, e.g. {value.replace('_', '')}" if "_" in value else ""


class _ASCIIWhole:
    def convert(self, value, param, ctx):
        if _python_only_form(value):
            self.fail(f"{value!r} is not a whole number in ASCII digits{_hint(value)}", param, ctx)
        return super().convert(value, param, ctx)


class _ASCIIFiniteReal:
    def convert(self, value, param, ctx):
        if _python_only_form(value):
            self.fail(f"{value!r} is not a number in ASCII digits{_hint(value)}", param, ctx)
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class WholeNumber(_ASCIIWhole, click.types.IntParamType):
    """``click.INT`` that refuses ``2_0`` and non-ASCII digits."""


class WholeNumberRange(_ASCIIWhole, click.IntRange):
    """``click.IntRange`` that refuses ``2_0`` and non-ASCII digits (a plain ``WholeNumber`` has no range: Click
    would print an empty one, ``[x<=None]``, in ``--help``)."""


class RealNumber(_ASCIIFiniteReal, click.types.FloatParamType):
    """``click.FLOAT`` that refuses ``1_0``, non-ASCII digits, ``inf`` and ``nan``."""


WHOLE = WholeNumber()
REAL = RealNumber()
