"""Numbers as igbench reads them from the command line and writes them back.

Read: a number, or a fraction of two (``8/255``, the usual way to write an eps for 8-bit images).
Written: as short as ``:g`` makes it when that reads back exactly, else every digit, so that a recorded
command, a sweep's model id or ``--defense gradreg[lambda=...]`` names the very value that ran.
"""

from __future__ import annotations


def read_number(text: str) -> float:
    """``"0.1"`` -> 0.1, ``"8/255"`` -> 0.0313...; ValueError (or ZeroDivisionError for ``8/0``) otherwise.
    Python's ``float`` also reads ``1_0`` (10) and non-ASCII digits, which are refused: a typo, not a number."""
    if "_" in text or not text.isascii():
        raise ValueError(f"not a number: {text!r}")
    numerator, slash, denominator = text.partition("/")
    if not slash:
        return float(text)
    return float(numerator) / float(denominator)


def python_only_number(text: str) -> bool:
    """Whether Python's ``float`` reads ``text`` only through a form :func:`read_number` refuses (``1_0``, ``١``)."""
    if "_" not in text and text.isascii():
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True


def exact_number(value: float) -> str:
    """``value`` as short as ``:g`` writes it when that reads back exactly (0.1, 0.25), else in full
    (0.1234567, which ``:g`` rounded to 0.123457: the recorded command then ran another grid)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))
