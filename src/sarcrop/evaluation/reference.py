"""Reference classes for a sample's points from a label raster: its values read as they are,
as one crop against the rest (``positive_codes``), or by name (a legend, a code map, or the
raster's own ``CLASS_<i>`` tags) matched to the map's classes."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio

from sarcrop.data.labels import OTHER, UNLABELLED, UNLABELLED_NAME, class_key, class_tags
from sarcrop.errors import InputDataError
from sarcrop.evaluation.rasters import MapClasses, map_classes, open_raster, values_at
from sarcrop.evaluation.sampling import Sample
from sarcrop.options import ReferenceOptions, as_options


def sample_map_classes(sample: Sample) -> MapClasses | None:
    """The classes of the map a sample was drawn from: kept in its design, else read from the
    map where it still is (a sample of an older sarcrop); None when neither says."""
    design = sample.design
    if "class_names" in design:
        positive = design.get("positive", "")
        names = tuple(json.loads(design["class_names"]))
        return MapClasses(names, tuple(p for p in positive.split(",") if p))
    map_path = design.get("map")
    if map_path and Path(map_path).is_file():
        with open_raster(map_path) as ds:
            return map_classes(ds, map_path)
    return None


def check_one_crop_labels(
    labels: ReferenceOptions | None, map_path: str | Path, classes: MapClasses | None = None
) -> None:
    """Refuse ``positive_codes`` (labels read as one crop, 1, against the rest, 0) for a
    crop-type map, whose class 0 and 1 are two of its crops: every accuracy and area would be
    of other classes than they say. ``classes``: the map's, where known (else read)."""
    if labels is None or labels.positive_codes is None:
        return
    if classes is None:
        with open_raster(map_path) as ds:
            classes = map_classes(ds, map_path)
    names = classes.names
    if names:
        raise InputDataError(
            f"--positive-codes reads the labels as one crop against the rest (1 and 0), and "
            f"this crop-type map has {len(names)} classes ({', '.join(names)}): name the "
            "label codes with --legend (WorldCereal) or --code-map to match them to its "
            "classes, give labels of its class numbers, or map one crop (predict --positive)",
            map_path,
        )


def check_reference_classes(
    referenced: Iterable[int], classes: MapClasses, source: str | Path, held: Iterable[int] = ()
) -> None:
    """Refuse reference classes a map of ``classes`` cannot hold: crop codes (WorldCereal's
    1200 for maize) read as map classes would make every accuracy and area meaningless.
    ``held``: the classes the map holds, which number them where its tags do not (a map from
    elsewhere, without ``CLASS_NAMES`` or ``POSITIVE``: 0 up to the largest it holds)."""
    count = classes.count
    plain = not (classes.names or classes.positive)
    if plain:
        count = max(count, max((int(c) + 1 for c in held), default=0))
    stray = sorted({int(c) for c in referenced} - set(range(count)) - {UNLABELLED})
    if stray:
        shown = ", ".join(map(str, stray[:6])) + (", …" if len(stray) > 6 else "")
        if classes.names:
            hint = (
                "name its codes with --legend (a WorldCereal legend CSV) or --code-map (a JSON "
                "object of code: class name) to match them to the map's classes by name"
            )
        elif plain and count > 2:
            hint = "give labels of the map's class numbers (its tags name no classes)"
        else:
            hint = "give the map's crop with --positive-codes (e.g. 1200, WorldCereal maize)"
        raise InputDataError(
            f"reference classes {shown} are not classes of the map (0 to {count - 1}, and -1 "
            f"for no class); for a raster of crop codes {hint}",
            source,
        )


@dataclass
class LabelReader:
    """Label raster values → reference classes of a map (int64, -1 = unlabelled), built by
    :func:`label_reader`. Values are read as they are, as one crop (``positive``) against the
    rest, or by name (``names``: value → class name; ``rest``: the name of values not listed,
    None where they are refused), matched to the map's ``classes`` by name."""

    path: str | Path
    nodata: float | None
    positive: tuple[int, ...] | None = None
    names: dict[int, str] | None = None
    rest: str | None = None
    classes: MapClasses = field(default_factory=MapClasses)
    folded: set[str] = field(default_factory=set)
    """Label classes met that the crop-type map has not, counted as its ``other``."""
    _matched: dict[int, int] = field(default_factory=dict)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        data = np.asarray(values, dtype=np.float64)
        missing = ~np.isfinite(data)
        if self.nodata is not None:
            missing |= data == self.nodata
        codes = np.rint(np.nan_to_num(data)).astype(np.int64)
        if self.names is None:
            out = codes if self.positive is None else np.isin(codes, self.positive)
        else:
            found, inverse = np.unique(codes[~missing], return_inverse=True)
            table = np.array([self._match(v) for v in found.tolist()], dtype=np.int64)
            out = np.zeros(codes.shape, dtype=np.int64)
            out[~missing] = table[inverse.ravel()]
        out = out.astype(np.int64)
        out[missing] = UNLABELLED
        return out

    def _match(self, value: int) -> int:
        if value in self._matched:
            return self._matched[value]
        assert self.names is not None
        name = self.names.get(value, self.rest)
        if name is None:
            raise InputDataError(
                f"label value {value} has no class name (its CLASS_<i> tags name "
                f"{', '.join(self.names.values())})",
                self.path,
            )
        matched = _map_class(name, self.classes)
        if matched == NO_MATCH:
            raise InputDataError(
                f"label class {name!r} is not a class of the map ({', '.join(self.classes.names)}"
                "), which has no 'other' class to count it in: give a --code-map naming each "
                "code as one of its classes (or 'unlabelled')",
                self.path,
            )
        names = self.classes.names
        if names and matched >= 0 and class_key(name) != class_key(names[matched]):
            self.folded.add(name)  # the map's other
        self._matched[value] = matched
        return matched

    def warn_folded(self, stacklevel: int = 3) -> None:
        """Say which label classes the map has not and were counted as its ``other``."""
        if self.folded:
            import warnings

            names = ", ".join(map(repr, sorted(self.folded)[:12]))
            more = f" and {len(self.folded) - 12} more" if len(self.folded) > 12 else ""
            are = "classes" if len(self.folded) > 1 else "class"
            warnings.warn(
                f"{self.path}: label {are} {names}{more} not in the map's classes "
                f"({', '.join(self.classes.names)}): counted as its 'other'",
                stacklevel=stacklevel,
            )


def label_reader(
    ds: rasterio.io.DatasetReader,
    reference: ReferenceOptions,
    classes: MapClasses | None,
    path: str | Path,
    map_path: str | Path | None = None,
) -> LabelReader:
    """How the values of the label raster open as ``ds`` (at ``path``) become reference
    classes of a map of ``classes`` (None: not known), as ``reference`` says: see
    :class:`~sarcrop.options.ReferenceOptions`. Options that cannot be read so are refused
    here, before a value is read; a label class that matches none of a crop-type map's (one
    without ``other``) when it is met."""
    band = reference.label_band
    if band > ds.count:
        raise InputDataError(f"no band {band} ({ds.count} bands)", path)
    nodata = ds.nodatavals[band - 1]
    check_one_crop_labels(reference, map_path or path, classes or MapClasses())
    named = _value_names(ds, reference, classes, map_path or path)
    if named is not None:
        assert classes is not None  # names are only matched to a map's known classes
        return LabelReader(path, nodata, names=named[0], rest=named[1], classes=classes)
    positive = reference.positive_codes
    if positive is not None:
        require_positive_codes(ds, reference, path)
    else:
        tags = ds.tags()
        if "POSITIVE" in tags and "CLASSES" in tags:  # a simulated region, a one-crop map
            positive = (json.loads(tags["CLASSES"]).index(tags["POSITIVE"]),)
    return LabelReader(path, nodata, positive=positive)


NO_MATCH = -2
"""A label class that no class of the map holds (a crop-type map without ``other``)."""


def _value_names(
    ds: rasterio.io.DatasetReader,
    reference: ReferenceOptions,
    classes: MapClasses | None,
    map_path: str | Path,
) -> tuple[dict[int, str], str | None] | None:
    """Label values → class names and the name of values not listed (None: refused), where
    the labels are read by name: codes named by a legend or a code map (as ``prepare`` reads
    them; unlisted codes are ``other``), or, for a crop-type map, a raster naming its classes
    (``CLASS_<i>`` tags, else a ``CLASSES`` list). None: values are read as they are."""
    from sarcrop.data.legends import worldcereal_code_map

    by_code = reference.legend is not None or reference.code_map is not None
    if by_code and (classes is None or not (classes.names or classes.positive)):
        known = "has no POSITIVE tag naming its crop" if classes else "is not at hand"
        raise InputDataError(
            f"--legend and --code-map name the label codes to match them to the map's classes, "
            f"and the map {known}: give its crop's codes with --positive-codes",
            map_path,
        )
    if reference.legend is not None:
        assert classes is not None
        # A one-crop map was trained on its crop with every sub-class (prepare --positive).
        positive = None if classes.names else classes.positive
        return worldcereal_code_map(reference.legend, positive=positive), OTHER
    if reference.code_map is not None:
        return dict(reference.code_map), OTHER
    if classes is None or not (classes.names or classes.positive):
        return None
    if reference.positive_codes is not None:
        return None
    tags = ds.tags()
    named = class_tags(tags)
    if not named and "CLASSES" in tags:
        named = dict(enumerate(json.loads(tags["CLASSES"])))
    if named and not classes.names:  # a one-crop map: its crop, by name, against the rest
        crop = {class_key(p) for p in classes.positive}
        if not crop & {class_key(n) for n in named.values()}:
            raise InputDataError(
                f"the map's crop ({', '.join(classes.positive)}) is none of the label "
                f"classes ({', '.join(named.values())}): give its codes with --positive-codes",
                map_path,
            )
    return (named, None) if named else None


def _map_class(name: str, classes: MapClasses) -> int:
    """The map class of a label class ``name`` (names compared as ``class_key``): a crop-type
    map's class of that name, else its ``other`` (else :data:`NO_MATCH`); a one-crop map's
    crop (1) or the rest (0). ``unlabelled`` labels nothing (-1)."""
    key = class_key(name)
    if key == UNLABELLED_NAME:
        return UNLABELLED
    if not classes.names:
        return int(key in {class_key(p) for p in classes.positive})
    folded = {class_key(n): i for i, n in enumerate(classes.names)}
    return folded.get(key, folded.get(OTHER, NO_MATCH))


def require_positive_codes(
    ds: rasterio.io.DatasetReader, reference: ReferenceOptions, path: str | Path
) -> None:
    """Refuse ``positive_codes`` that no pixel of the label band holds: a slip of one digit
    (1220 for WorldCereal's maize, 1200) or another band made the crop's area 0 without a sign.
    Read block by block, up to the first pixel of the crop."""
    codes = reference.positive_codes
    if codes is None:
        return
    band = reference.label_band
    nodata = ds.nodatavals[band - 1]
    held: set[float] = set()
    for _, window in ds.block_windows(band):
        values = ds.read(band, window=window)
        if np.isin(values, codes).any():
            return
        valid = np.isfinite(values)
        if nodata is not None:
            valid &= values != nodata
        held.update(np.unique(values[valid])[:100].tolist())
    listed = ", ".join(f"{v:g}" for v in sorted(held)[:12]) + (", …" if len(held) > 12 else "")
    given = ", ".join(str(c) for c in codes)
    raise InputDataError(
        f"--positive-codes {given}: no pixel of band {band} holds them (its codes: "
        f"{listed or 'none'})",
        path,
    )


def reference_at(
    labels: str | Path,
    x: np.ndarray,
    y: np.ndarray,
    crs: object,
    reference: ReferenceOptions | None = None,
    classes: MapClasses | None = None,
    map_path: str | Path | None = None,
) -> np.ndarray:
    """Reference classes of a label raster at points ``(x, y)`` in ``crs`` (-1 = none), for
    a map of ``classes`` (:func:`label_reader`)."""
    reference = reference or ReferenceOptions()
    with open_raster(labels) as ds:
        read = label_reader(ds, reference, classes, labels, map_path)
        if ds.crs != crs:
            raise InputDataError(f"CRS {ds.crs} differs from the sample's {crs}", labels)
        found = read(values_at(ds, reference.label_band, x, y))
    read.warn_folded(4)  # the caller of fill_reference
    return found


def fill_reference(
    sample: Sample, labels: str | Path, options: ReferenceOptions | None = None
) -> Sample:
    """A copy of ``sample`` with its ``reference`` column read from a label raster, as
    ``options`` say (as :func:`~sarcrop.evaluation.assessment.assess` reads one), for the
    classes of the map sampled; points on the raster's nodata (or outside it) get -1, no
    reference class (they count in areas). Reference classes the map cannot hold are refused
    (:func:`check_reference_classes`)."""
    options = None if options is None else as_options(ReferenceOptions, options, "options")
    classes = sample_map_classes(sample)
    map_path = sample.design.get("map")
    points = sample.points.copy()
    found = reference_at(
        labels,
        points["x"].to_numpy(),
        points["y"].to_numpy(),
        sample.grid.crs,
        options,
        classes,
        map_path,
    )
    if classes is not None:
        check_reference_classes(found.tolist(), classes, labels, sample.map_pixels)
    points["reference"] = pd.array(found, dtype="Int64")
    design = {**sample.design, "reference_from": str(labels)}
    return Sample(points, sample.strata, sample.map_pixels, sample.grid, design)
