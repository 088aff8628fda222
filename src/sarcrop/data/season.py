"""The season window: consecutive fixed-length composite periods (paper: 8 × 20 days)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from sarcrop.errors import ConfigError
from sarcrop.utils.validation import as_date, whole_number


@dataclass(frozen=True)
class Season:
    """``steps`` periods of ``days`` days starting at ``start`` (half-open intervals)."""

    start: dt.date
    steps: int = 8
    days: int = 20

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", as_date(self.start, "season start"))
        for name in ("steps", "days"):
            value = getattr(self, name)
            if not whole_number(value) or value < 1:
                raise ConfigError(f"season {name} must be a whole number >= 1, got {value!r}")
            object.__setattr__(self, name, int(value))

    @classmethod
    def of(cls, value: Season | dt.date | str | Mapping[str, object]) -> Season:
        """A season from a :class:`Season`, its first day (a date or ISO text, 8 × 20 days as
        in the paper) or a mapping of ``start``, ``steps`` and ``days``, or of the names a
        region's YAML and the command line give them: ``season_start``, ``timesteps``."""
        if isinstance(value, Season):
            return value
        if isinstance(value, Mapping):
            names = {"season_start": "start", "timesteps": "steps"}
            given = {names.get(str(key), str(key)): item for key, item in value.items()}
            unknown = set(given) - {"start", "steps", "days"}
            if unknown or "start" not in given or len(given) < len(value):
                raise ConfigError(
                    "a season mapping takes start or season_start (required), steps or "
                    f"timesteps, and days; got {sorted(value)}"
                )
            return cls(**given)  # type: ignore[arg-type]
        return cls(value)  # type: ignore[arg-type]

    @property
    def end(self) -> dt.date:
        """The day after the season (the periods are half-open)."""
        return self.start + dt.timedelta(days=self.steps * self.days)

    @property
    def last_day(self) -> dt.date:
        """The season's last day: what a message or a tag says, as a person counts days."""
        return self.end - dt.timedelta(days=1)

    def periods(self) -> list[tuple[dt.date, dt.date]]:
        """[start, end) of each composite period, in time order."""
        step = dt.timedelta(days=self.days)
        return [(self.start + i * step, self.start + (i + 1) * step) for i in range(self.steps)]

    def period_of(self, when: dt.date | dt.datetime) -> int | None:
        """Index of the period containing ``when``, or None outside the season."""
        day = when.date() if isinstance(when, dt.datetime) else when
        offset = (day - self.start).days
        if offset < 0 or offset >= self.steps * self.days:
            return None
        return offset // self.days

    def step_until(self, until: dt.date) -> int:
        """Number of complete periods that end on or before ``until`` (for in-season runs)."""
        return sum(1 for _, end in self.periods() if end <= until + dt.timedelta(days=1))

    def to_dict(self) -> dict[str, object]:
        return {"start": self.start.isoformat(), "steps": self.steps, "days": self.days}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Season:
        steps, days = data["steps"], data["days"]
        assert isinstance(steps, int | str) and isinstance(days, int | str)
        return cls(dt.date.fromisoformat(str(data["start"])), int(steps), int(days))
