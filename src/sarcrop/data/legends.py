"""Crop-type legends: turn the numeric codes of real label rasters into sarcrop class names.

Real label rasters hold codes, not names: WorldCereal writes 4-digit crop-type codes (1200 =
maize, 9120 = permanent grass, …) decoded by ``wc2eurocrops_map.csv`` (columns ``name``,
``croptype``, ``ewoc_code``, ``landcover``). :func:`labels_from_raster
<sarcrop.data.labels.labels_from_raster>` takes a ``code_map`` (code → class name) and sends
codes missing from it to ``"other"``; this module builds such maps.

- :func:`read_worldcereal_legend` reads the whole legend (code → lower-case name).
- :func:`worldcereal_code_map` gives either the full legend, or — with ``positive`` — the binary
  "crop vs rest" map the paper's masks use (``{1200: "maize", every other code: "other"}``).
- :func:`binary_code_map` is the same binary map for any code list (other legends, LPIS codes).

WorldCereal codes are hierarchical (1000 cereals ⊃ 1100 wheat ⊃ 1110 winter wheat), so a
positive class given as a group includes its sub-classes by default: "wheat" selects 1100, 1110
and 1120. Names are matched case-insensitively; the class names in the map are lower case so
that ``--positive maize`` matches them.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path

from sarcrop.data.labels import UNLABELLED_NAME, class_key
from sarcrop.errors import InputDataError

OTHER = "other"
UNKNOWN = "unknown"  # the legend's name of codes (0, 991, 9700) that say nothing of the crop
_REQUIRED = ("name", "croptype")


def read_worldcereal_legend(csv_path: str | Path) -> dict[int, str]:
    """The WorldCereal legend as ``{croptype code: lower-case name}``.

    Codes listed twice keep their first name. Raises :class:`InputDataError` (naming the file)
    when the file is missing, lacks the ``name``/``croptype`` columns or has a non-integer code.
    """
    path = Path(csv_path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputDataError("legend file not found", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputDataError(f"cannot read legend: {exc}", path) from None
    reader = csv.DictReader(text.splitlines())
    columns = [c.strip().lower() for c in reader.fieldnames or []]
    missing = [c for c in _REQUIRED if c not in columns]
    if missing:
        raise InputDataError(
            f"legend lacks column(s) {', '.join(missing)} (has {', '.join(columns) or 'none'})",
            path,
        )
    legend: dict[int, str] = {}
    for line, row in enumerate(reader, start=2):
        row = {str(k).strip().lower(): (v or "").strip() for k, v in row.items()}
        try:
            code = int(row["croptype"])
        except ValueError:
            raise InputDataError(
                f"line {line}: croptype {row['croptype']!r} is not an integer code", path
            ) from None
        legend.setdefault(code, row["name"].lower())
    if not legend:
        raise InputDataError("legend has no rows", path)
    return legend


def is_subclass(code: int, group: int) -> bool:
    """Whether 4-digit WorldCereal crop-type ``code`` lies under ``group`` (1110 under 1100).

    A group's trailing zeros are its wildcard digits. Codes below 1000 (the land-cover codes
    10..99 that share the column) only match themselves.
    """
    if code == group:
        return True
    if not (1000 <= code <= 9999 and 1000 <= group <= 9999):
        return False
    prefix = str(group).rstrip("0")
    return str(code).startswith(prefix)


def _not_in_legend(wanted: list[str | int], i: int, legend: Mapping[int, str]) -> str:
    """``class 'x' is not in the legend``, with the legend names that hold it, or the quotes
    that keep ``winter cereal`` one name where the shell split it into two."""
    item = wanted[i]
    after = str(wanted[i + 1]) if i + 1 < len(wanted) else ""
    names = {class_key(label): label.lower() for label in legend.values()}
    if class_key(f"{item} {after}") in names:
        return (
            f"class {item!r} is not in the legend; quote a name with spaces: "
            f"--positive {names[class_key(f'{item} {after}')]!r}"
        )
    hints = sorted(label for key, label in names.items() if class_key(item) in key)[:5]
    hint = f"; did you mean {', '.join(map(repr, hints))}?" if hints else ""
    return f"class {item!r} is not in the legend{hint}"


def worldcereal_code_map(
    csv_path: str | Path,
    positive: Iterable[str | int] | None = None,
    *,
    name: str | None = None,
    rest: str = OTHER,
    include_subclasses: bool = True,
) -> dict[int, str]:
    """A code → class-name map for WorldCereal crop-type rasters.

    Without ``positive``: the full legend (every code with its own name). With ``positive``
    (legend names such as ``"maize"`` or codes such as ``1200``): the positive codes → ``name``,
    or by default each to the name it was given (lower case; a code: its legend name), so that
    several positive crops stay apart for ``prepare``'s ``positive`` to find, and every other
    legend code → ``rest``. Either way the codes the legend calls "Unknown" (0, 991, 9700: no
    crop declared) are ``unlabelled``, ignored by training and metrics, not negatives. Unknown
    positive names raise :class:`InputDataError` listing close matches, so a typo cannot
    silently give an all-negative target.
    """
    legend = read_worldcereal_legend(csv_path)
    unknown = {code for code, label in legend.items() if class_key(label) == UNKNOWN}
    if positive is None:
        return {code: UNLABELLED_NAME if code in unknown else name for code, name in legend.items()}
    wanted = list(positive)
    if not wanted:
        raise InputDataError("no positive class given", csv_path)
    by_name: dict[str, list[int]] = {}
    for code, label in legend.items():
        by_name.setdefault(class_key(label), []).append(code)
    named: dict[int, str] = {}  # each positive code → its class name; the first group wins
    for i, item in enumerate(wanted):
        if isinstance(item, int) or str(item).isdigit():
            if int(item) not in legend:
                raise InputDataError(f"code {int(item)} is not in the legend", csv_path)
            group, label = [int(item)], legend[int(item)]
        else:
            group, label = by_name.get(class_key(item), []), str(item).strip().lower()
            if not group:
                raise InputDataError(_not_in_legend(wanted, i, legend), csv_path)
        for code in legend:
            within = any(is_subclass(code, g) if include_subclasses else code == g for g in group)
            if within:
                named.setdefault(code, name or label)
    if rest in named.values():
        raise InputDataError(f"the positive class and the rest are both named {rest!r}")
    binary = {code: rest for code in legend} | named
    return binary | {code: UNLABELLED_NAME for code in unknown - set(named)}


def binary_code_map(
    codes: Iterable[int] | Mapping[int, object],
    positive_codes: Iterable[int],
    *,
    positive: str = "positive",
    rest: str = OTHER,
) -> dict[int, str]:
    """``{code: positive}`` for ``positive_codes``, ``{code: rest}`` for every other code.

    The generic "crop vs rest" map for any legend: pass all codes that occur (or a legend
    mapping) and the codes of the crop of interest. Codes missing from ``codes`` still become
    ``"other"`` in :func:`~sarcrop.data.labels.labels_from_raster`, so ``rest="other"`` keeps
    both paths consistent.
    """
    if positive == rest:
        raise InputDataError(f"the positive class and the rest are both named {positive!r}")
    chosen = {int(c) for c in positive_codes}
    if not chosen:
        raise InputDataError(f"no code selected for the positive class {positive!r}")
    out = {int(code): (positive if int(code) in chosen else rest) for code in codes}
    out.update({code: positive for code in chosen})
    return out
