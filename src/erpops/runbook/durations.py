"""Durations as people write them: ``90``, ``500ms``, ``10s``, ``2m``, ``1h30m``, ``1d``."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: Any) -> float:
    """Seconds from a duration; raises ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"bad duration {value!r}: must not be negative")
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return float(text)
        if text and re.fullmatch(rf"(?:{_PART.pattern})+", text):
            return sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
    raise ValueError(f"bad duration {value!r}: use a number of seconds or e.g. 500ms, 10s, 2m, 1h30m, 1d")


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _duration_or_template(value: Any) -> Any:
    if isinstance(value, str) and "{{" in value:
        return value  # rendered when the step runs (a parameter, an earlier step's output)
    return parse_duration(value)


#: A duration, or a template rendering to one when the step runs (``"{{ params.timeout }}"``).
DurationOrTemplate = Annotated[float | str, BeforeValidator(_duration_or_template)]
