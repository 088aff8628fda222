"""One-line configuration errors: from unreadable YAML files and pydantic's validation reports;
and the YAML files that ship inside the package."""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import numbers
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from sarcrop.errors import ConfigError


class OneLineErrors(BaseModel):
    """A pydantic model whose constructor, as a notebook calls it (``TrainConfig(epochs=-1)``),
    raises a one-line :class:`ConfigError` naming the field, as a mapping of its fields does
    (:func:`config_error`), instead of pydantic's multi-line report."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise config_error(exc, None, unknown="unknown option", model=type(self)) from None

    # Validation from data (model_validate, a nested model of a config) skips this __init__,
    # as it skips BaseModel's, and keeps pydantic's errors with their place in the config.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]


def config_error(
    exc: ValidationError,
    path: str | Path | None,
    *,
    unknown: str = "unknown key",
    model: type[BaseModel] | None = None,
) -> ConfigError:
    """``<file>: <dotted.key>: <problem> (and N more)`` for the first problem pydantic found,
    an unknown key first: a misspelt key also leaves the key it meant missing, and the
    misspelling is the problem to name (with the key of ``model`` it is closest to). A problem
    found again in the copies a config derives (a region's fold views) counts once."""
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    error = errors[0]
    where = ".".join(str(part) for part in error["loc"])
    message = unknown if error["type"] == "extra_forbidden" else error["msg"]
    message = message.removeprefix("Value error, ")  # pydantic's prefix to a validator's own
    if error["type"] == "extra_forbidden":
        message += _meant(error, errors, model)
    problems = {(e["type"], str(e["loc"][-1]) if e["loc"] else "", e["msg"]) for e in errors}
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return ConfigError(f"{where}: {message}{more}" if where else f"{message}{more}", path)


def _meant(extra: Any, errors: list[Any], model: type[BaseModel] | None) -> str:
    """``, did you mean 'regions'?``: what the model at that place says of such a key (its
    ``misplaced_keys``), else a key there one typo away, else the nearest place below it (or
    anywhere in ``model``) that has the key, else the key there (or a missing key beside it)
    closest to it."""
    parent = tuple(extra["loc"][:-1])
    key = str(extra["loc"][-1])
    here = _model_at(model, parent) if model is not None else None
    said = getattr(here, "misplaced_keys", {})
    if key in said:
        return f", {said[key]}"
    keys = list(here.model_fields) if here is not None else []
    keys = keys or [
        str(e["loc"][-1])
        for e in errors
        if e["type"] == "missing" and e["loc"] and tuple(e["loc"][:-1]) == parent
    ]
    if difflib.get_close_matches(key, keys, n=1, cutoff=0.8):  # a typo of a key there
        return f", {did_you_mean(key, keys)}"
    where = ".".join(str(part) for part in parent)
    place = _place_of(here, key, where) if here is not None else None
    if place is None and model is not None:
        place = "" if parent and key in model.model_fields else _place_of(model, key, "")
    if place is not None:
        return f", it is a key of {place}" if place else ", it is a top-level key"
    hint = did_you_mean(key, keys)
    return f", {hint}" if hint else ""


def _model_at(model: Any, loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model a config holds at ``loc`` inside ``model`` (through nested models, their
    mappings and sequences); None where ``loc`` does not lead to a model."""
    kind = model
    for part in loc:
        kind = _item_type(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            field = kind.model_fields.get(str(part))
            if field is None:
                return None
            kind = field.annotation
        else:  # a mapping's key or a sequence's index: its values' type
            kind = _values_type(kind)
    return _as_model(kind)


def _place_of(model: Any, key: str, where: str) -> str | None:
    """The place (``regions.<name>.tiling``) of the nearest model inside ``model``, itself
    left out, that has a field ``key``; None if none has: a key written at the wrong level
    is named where it goes."""
    queue: list[tuple[Any, str]] = [(model, where)]
    seen: set[type] = set()
    while queue:
        kind, place = queue.pop(0)
        if kind in seen:
            continue
        seen.add(kind)
        for name, field in kind.model_fields.items():
            inner, inner_place = _item_type(field.annotation), f"{place}.{name}".lstrip(".")
            while _as_model(inner) is None and get_origin(inner) in (dict, list, tuple):
                mapping = get_origin(inner) is dict
                inner = _item_type(_values_type(inner))
                inner_place += ".<name>" if mapping else "[i]"
            found = _as_model(inner)
            if found is None:
                continue
            if key in found.model_fields:
                return inner_place
            queue.append((found, inner_place))
    return None


def _as_model(kind: Any) -> type[BaseModel] | None:
    kind = _item_type(kind)
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None


def _values_type(kind: Any) -> Any:
    """The type of a mapping's values or a sequence's items."""
    values = [a for a in get_args(kind) if a is not Ellipsis]
    return values[-1] if values else None


def _item_type(kind: Any) -> Any:
    """``X`` for ``X | None``; anything else as it is."""
    if get_origin(kind) in (Union, UnionType):
        args = [a for a in get_args(kind) if a is not type(None)]
        return args[0] if len(args) == 1 else kind
    return kind


def band_names(bands: str | Sequence[str]) -> list[str]:
    """Band names in upper case from a list, or from one string (``"VH"``, ``"VH,VV"``), which
    would otherwise be read letter by letter; an empty list is a one-line error."""
    items = bands.replace(",", " ").split() if isinstance(bands, str) else list(bands)
    names = [str(name).strip().upper() for name in items if str(name).strip()]
    if not names:
        raise ConfigError("bands: no band given")
    return names


def whole_number(value: object) -> bool:
    """Whether ``value`` is a whole number (a NumPy integer too, not a bool)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def chosen_bands(bands: str | Sequence[str] | None, default: Sequence[str]) -> list[str]:
    """:func:`band_names` of ``bands`` where given (a list, an array or text), else
    ``default``'s (a store's or a checkpoint's bands)."""
    if bands is None or len(bands) == 0:
        return [str(b) for b in default]
    return band_names(bands)


def as_date(value: object, name: str) -> dt.date:
    """A day given as a date or as ``YYYY-MM-DD`` text; anything else is a one-line error
    naming the parameter."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return dt.date.fromisoformat(value)
    raise ConfigError(f"{name} must be a date or YYYY-MM-DD, got {value!r}")


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """``did you mean 'x'?`` for the choice closest to a misspelt ``word``; empty if none is."""
    close = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean {close[0]!r}?" if close else ""


def read_yaml(path: Path, what: str) -> Any:
    """The YAML document in ``path``; a one-line error naming the file if it cannot be read."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} not found", path) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"not a readable YAML file: {' '.join(str(exc).split())}", path) from None


def shipped_yaml(folder: str) -> dict[str, Path]:
    """Name → path of the YAML files in ``folder`` of the installed package (``configs``,
    ``configs/recipes``)."""
    files = resources.files("sarcrop").joinpath(*folder.split("/")).iterdir()
    return {Path(str(p)).stem: Path(str(p)) for p in files if str(p).endswith(".yaml")}
