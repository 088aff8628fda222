"""Typed option groups shared by the Python API, the experiment YAML and the CLI.

Each group is a frozen, validated pydantic model. The API takes them as keyword arguments
(``prepare(images, out, labels=..., composite=CompositeOptions(method="median"))``), the YAML
nests them under the same keys, and :func:`add_flags` turns their fields into CLI flags with the
same names (``min_acquisitions`` → ``--min-acquisitions``) and the same defaults, so the three
interfaces cannot drift apart.
"""

from __future__ import annotations

import argparse
import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sarcrop.errors import ConfigError
from sarcrop.utils.validation import OneLineErrors, config_error

Method = Literal["mean", "median", "first"]
Space = Literal["linear", "db"]
Gaps = Literal["interpolate", "empty"]
OrbitChoice = Literal["ascending", "descending", "both"]
SplitMethod = Literal["patch", "block", "train", "test"]
OutsideParcels = Literal["background", "unlabelled"]
Engine = Literal["torch", "onnx"]
Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["fp32", "bf16"]


OptionsT = TypeVar("OptionsT", bound=BaseModel)


class _NoneGiven:
    """A flag given as ``none`` (``--gradient-clip none``): the field set to ``None``, where a
    flag's ``None`` means "not given" and leaves the default."""

    def __repr__(self) -> str:
        return "none"


NONE_GIVEN = _NoneGiven()


def given_values(changes: Mapping[str, Any]) -> dict[str, Any]:
    """``changes`` without the ``None`` values (not given), a flag's ``none`` as ``None``."""
    return {k: None if v is NONE_GIVEN else v for k, v in changes.items() if v is not None}


class Options(OneLineErrors):
    """Base of every option group: frozen, unknown keys rejected, one-line errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def updated(self: OptionsT, **changes: Any) -> OptionsT:
        """A validated copy with ``changes`` applied (``None`` values are ignored)."""
        data = self.model_dump()
        data.update(given_values(changes))
        return validated(type(self), data)


def json_object(value: Any, what: str) -> Any:
    """A mapping given as JSON text (a command line's ``--code-map '{"1200": "maize"}'``) as
    the mapping, anything else as it is, for a field validator."""
    import json

    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"must be a JSON object of {what} ({exc})") from None


class SceneOptions(Options):
    """How scenes are read: orbit filter, the grid the composites are computed on, and the
    names the input gives the bands."""

    orbit: OrbitChoice = Field(
        "both",
        description="orbit direction to keep (predict: by default the one the model learnt from)",
    )
    crs: str | None = Field(None, description="target CRS of the composites, e.g. EPSG:32631")
    resolution: float | None = Field(
        None, gt=0, description="target pixel size in CRS units, e.g. 10"
    )
    band_map: dict[str, str] | None = Field(
        None,
        exclude_if=lambda value: value is None,  # runs from before it keep their cache keys
        description="JSON object naming each band in the input: a cube's variables, STAC "
        'asset keys or band descriptions, e.g. \'{"VH": "S1-SIGMA0-VH"}\'',
    )

    @field_validator("band_map", mode="before")
    @classmethod
    def _band_map_json(cls, value: Any) -> Any:
        return json_object(value, "band: name")


class CompositeOptions(Options):
    """How acquisitions of one period become one composite (the model's input)."""

    method: Method = Field("mean", description="composite statistic")
    space: Space = Field("linear", description="average in linear power or in dB")
    min_acquisitions: int = Field(
        1, ge=1, description="valid acquisitions a pixel needs in a period, else no data"
    )
    speckle_filter: int | None = Field(
        None, ge=1, description="boxcar speckle filter size in pixels before compositing"
    )
    gaps: Gaps = Field(
        "interpolate",
        description="a period without an acquisition (monthly data under 20-day periods): "
        "interpolate it in time from the acquisitions around it, or leave it empty (read as "
        "not yet observed)",
    )


class _CodeNames(Options):
    """What the ``code_map`` and ``legend`` of label options accept beside their own types:
    a JSON object as a command line gives it, and a legend's path as a ``Path``."""

    @field_validator("code_map", mode="before", check_fields=False)
    @classmethod
    def _code_map_json(cls, value: Any) -> Any:
        return json_object(value, "code: name")

    @field_validator("legend", mode="before", check_fields=False)
    @classmethod
    def _legend_path(cls, value: Any) -> Any:
        return str(value) if isinstance(value, os.PathLike) else value


class LabelOptions(_CodeNames):
    """How labels are read: which parcel attribute or cube variable, and how codes get names."""

    column: str = Field("crop", description="parcel attribute holding the crop")
    variable: str | None = Field(
        None,
        description="label variable of a netCDF/Zarr cube (the only one, or CT), or band of a "
        "label raster by its description (the first)",
    )
    class_names: tuple[str, ...] | None = Field(
        None, description="class name of each label value (value = index)"
    )
    code_map: dict[int, str] | None = Field(
        None,
        description="label code → class name; codes not listed become 'other', codes named "
        "'unlabelled' label nothing",
    )
    legend: str | None = Field(
        None,
        exclude_if=lambda value: value is None,  # runs from before it keep their cache keys
        description="WorldCereal legend CSV naming a label raster's crop codes (instead of "
        "code_map); with prepare's positive, those crops against 'other'",
    )
    outside_parcels: OutsideParcels = Field(
        "background",
        description="pixels outside every parcel of a parcel file: background (a negative, as "
        "in the paper's masks, where the parcels are every field) or unlabelled (where they "
        "are some of the fields)",
    )

    @model_validator(mode="after")
    def _one_naming(self) -> LabelOptions:
        if self.legend is not None and self.code_map is not None:
            raise ValueError("give either legend or code_map, not both")
        return self

    def named(self, positive: Sequence[str] | None) -> LabelOptions:
        """These options with a ``legend`` read into its ``code_map`` (``positive``'s crops
        against ``other``, as :func:`~sarcrop.data.legends.worldcereal_code_map` gives it)."""
        if self.legend is None:
            return self
        from sarcrop.data.legends import worldcereal_code_map

        code_map = worldcereal_code_map(self.legend, positive=positive)
        return self.model_copy(update={"legend": None, "code_map": code_map})


class TilingOptions(Options):
    """How the area is cut into patches."""

    patch_size: int = Field(256, ge=8, description="patch size in pixels")
    stride: int | None = Field(
        None,
        ge=1,
        description="tiling step in pixels (patch size); below it patches overlap, for a store "
        "that only trains (split train)",
    )
    min_valid_fraction: float = Field(
        0.0, ge=0, le=1, description="skip patches with fewer labelled, observed pixels"
    )

    @model_validator(mode="after")
    def _stride(self) -> TilingOptions:
        if self.stride is not None and self.stride > self.patch_size:
            raise ValueError(f"stride {self.stride} is larger than patch_size {self.patch_size}")
        return self


class SplitOptions(Options):
    """How patches are assigned to train and test.

    ``patch`` (the paper's random patches) and ``block`` (blocks of neighbouring patches) split
    one location; ``train`` and ``test`` put the whole location in one split, for stores that
    are trained on one place and tested on another.
    """

    method: SplitMethod = Field("patch", description="patch | block | train | test")
    block: int = Field(4, ge=1, description="block size in patches (block split)")
    train_fraction: float = Field(0.6, gt=0, lt=1, description="train share")
    seed: int = Field(0, ge=0, description="split seed")


# predict's window sizes when none are given (on a GPU the batch follows its free memory)
DEFAULT_WINDOW, MAX_OVERLAP, CPU_BATCH, BLOCK_WINDOWS, GPU_MAX_BATCH = 256, 32, 4, 8, 64


class WindowOptions(Options):
    """How ``predict`` walks over the area.

    Left out, ``window`` is the patch size the model was trained on (its checkpoint records
    it; 256 for a checkpoint that does not): a network trained on small patches and scored on
    them can map very differently in larger windows. ``overlap`` is a quarter of the window, at
    most 32 px: the border a convolution sees as padding is as wide whatever the window, and
    blending gives it little weight. A forest, which reads each pixel alone, maps without
    overlap.
    """

    window: int | None = Field(
        None,
        ge=8,
        description="window size in pixels (the model's training patch size, else "
        f"{DEFAULT_WINDOW})",
    )
    overlap: int | None = Field(
        None,
        ge=0,
        description=f"window overlap in pixels (window / 4, at most {MAX_OVERLAP}; 0 for a forest)",
    )
    batch_size: int | None = Field(
        None,
        ge=1,
        description=f"windows per batch (on cpu {CPU_BATCH} of {DEFAULT_WINDOW} px or as many "
        f"pixels in smaller windows; on cuda in one process as many as half the free GPU memory "
        f"holds, up to {GPU_MAX_BATCH} of {DEFAULT_WINDOW} px or as many pixels)",
    )
    block_windows: int | None = Field(
        None,
        ge=1,
        description=f"window columns per block, the unit of resuming ({BLOCK_WINDOWS}, or as "
        "many as one batch fills in the block's rows if more: a batch never spans two blocks)",
    )
    block_rows: int | None = Field(
        None,
        ge=1,
        description=f"window rows per block (as many as fit in {DEFAULT_WINDOW} px: 1 for "
        f"{DEFAULT_WINDOW} px windows, more for small windows, so blocks read fewer, larger "
        "pieces of the scenes)",
    )

    @model_validator(mode="after")
    def _overlap(self) -> WindowOptions:
        if self.window is not None and self.overlap is not None and 2 * self.overlap >= self.window:
            raise ValueError(
                f"overlap {self.overlap} must be less than half the window {self.window}"
            )
        return self

    def for_patch_size(self, patch_size: int | None) -> WindowOptions:
        """These options with the window and overlap filled in for a model trained on
        ``patch_size`` px patches (``None``: unknown)."""
        window = self.window or patch_size or DEFAULT_WINDOW
        overlap = self.overlap if self.overlap is not None else min(window // 4, MAX_OVERLAP)
        return self.updated(window=window, overlap=overlap)


class BaselineOptions(Options):
    """The per-pixel Random Forest baseline (the same for ``sarcrop baseline`` and experiments).

    ``early_season`` trains on zero-padded copies of every series for t = 1..T-1 too, so the
    forest can be scored at every time step of the season as the networks are.
    """

    n_estimators: int = Field(200, ge=1, description="trees in the forest")
    max_samples_per_class: int | None = Field(
        50_000, ge=1, description="training pixels drawn per class"
    )
    max_depth: int | None = Field(None, ge=1, description="tree depth limit (none)")
    early_season: bool = Field(
        True, description="also train on zero-padded early-season series (t = 1..T-1)"
    )
    threshold: float = Field(0.5, gt=0, lt=1, description="probability threshold of the metrics")
    seed: int = Field(
        0, ge=0, description="random seed of the pixel sample, the trees and the parcels"
    )
    label_fraction: float = Field(
        1.0,
        gt=0,
        le=1,
        description="share of the train split's labelled parcels to learn from (chosen by seed)",
    )
    classes: tuple[str, ...] | None = Field(
        None,
        description="crop-type map of these classes, e.g. maize,potato,other ('other': every "
        "class not listed); default: one positive class",
    )

    @field_validator("classes", mode="before")
    @classmethod
    def _classes(cls, value: Any) -> Any:
        return class_list(value)


def class_list(value: Any) -> tuple[str, ...] | None:
    """A ``classes`` option: a list or a comma-separated string of class names, checked."""
    if value is None:
        return None
    if not isinstance(value, str | list | tuple):  # a number or a mapping in a config
        raise ValueError(f"give a list of class names or a comma-separated string, not {value!r}")
    from sarcrop.data.labels import parse_classes
    from sarcrop.errors import InputDataError

    try:
        return tuple(parse_classes(value))
    except InputDataError as exc:
        raise ValueError(exc.problem) from None


def available_cores() -> int:
    """Cores this process may use (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


CUDA_READERS = 4


class ExecutionOptions(Options):
    """Where and how ``predict`` runs.

    Workers and scheduler never change the map. CPU results depend on the thread count and the
    engine (by a rounding step at most), results also on the device and the precision, so all
    of them are recorded with the blocks.
    """

    workers: int | None = Field(
        None, ge=1, description="run on a local Dask cluster of N processes"
    )
    scheduler: str | None = Field(None, description="run on an existing Dask cluster (address)")
    threads: int | None = Field(
        None, ge=1, description="torch threads per block computation (available cores)"
    )
    engine: Engine = Field(
        "torch", description="inference engine (onnx: ONNX Runtime on CPU, the onnx extra)"
    )
    resume: bool = Field(True, description="resume from finished blocks of an earlier run")
    device: Device = Field(
        "auto", description="where the model runs (auto: cuda if available, else cpu)"
    )
    precision: Precision = Field(
        "fp32", description="model arithmetic (bf16: bfloat16 autocast, on cpu too)"
    )
    readers: int | None = Field(
        None,
        ge=1,
        description="threads reading blocks ahead of the model in one process "
        f"(1 on cpu, up to {CUDA_READERS} on cuda)",
    )

    @model_validator(mode="after")
    def _cluster(self) -> ExecutionOptions:
        if self.workers is not None and self.scheduler is not None:
            raise ValueError("give either scheduler or workers, not both")
        if self.engine == "onnx" and self.device == "cuda":
            raise ValueError("the onnx engine runs on the cpu only: use the torch engine on cuda")
        if self.engine == "onnx" and self.precision != "fp32":
            raise ValueError("the onnx engine computes in fp32 only: use the torch engine for bf16")
        return self

    @property
    def resolved_device(self) -> str:
        """``device`` with ``auto`` resolved: cuda when torch sees a GPU (never for onnx)."""
        if self.device != "auto":
            return self.device
        if self.engine == "onnx":
            return "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    @property
    def read_threads(self) -> int:
        """``readers``, or 1 beside a model on the cpu (whose threads take the cores) and up
        to :data:`CUDA_READERS` beside one on a GPU, which reading would otherwise starve."""
        if self.readers is not None:
            return self.readers
        if self.resolved_device == "cuda":
            return max(1, min(CUDA_READERS, available_cores()))
        return 1

    @property
    def torch_threads(self) -> int:
        """``threads``, or the available cores shared among the local workers."""
        if self.threads is not None:
            return self.threads
        return max(1, available_cores() // (self.workers or 1))


class MapOptions(Options):
    """What the predicted map holds: probability bands, a class band and the class threshold.

    A crop-type model's class band is the most probable class (``threshold`` is for binary
    models); its probability bands are one per class, or the ``top_k`` most probable classes
    and their probabilities.
    """

    threshold: float | None = Field(
        None,
        gt=0,
        lt=1,  # as training's and evaluate's: 0 or 1 would map one class everywhere
        description="class threshold on the probability (binary models; default: the one "
        "the model was trained and evaluated with, 0.5 unless set)",
    )
    probability: bool = Field(True, description="write the probability band(s)")
    classes: bool = Field(True, description="write the class band")
    uncertainty: bool = Field(
        False,
        description="write an uncertainty band: entropy of the probabilities "
        "(binary, or normalised by log K for K classes)",
    )
    top_k: int | None = Field(
        None,
        ge=1,
        description="crop-type models: instead of one probability band per class, the k most "
        "probable classes and their probabilities",
    )
    positive: tuple[str, ...] | None = Field(
        None,
        description="crop-type models: a map of this class (or these, e.g. maize) against the "
        "rest, as a binary model's",
    )

    @field_validator("positive", mode="before")
    @classmethod
    def _positive(cls, value: Any) -> Any:
        if isinstance(value, str):  # the command line's maize or maize,potato
            value = [name for name in value.replace(",", " ").split() if name]
        return None if value is None else tuple(value) or None

    @model_validator(mode="after")
    def _bands(self) -> MapOptions:
        if not (self.probability or self.classes):
            raise ValueError("the map needs at least one of probability and classes")
        if self.top_k is not None and not (self.probability and self.classes):
            raise ValueError("top_k needs both the probability and the class bands")
        return self


Allocation = Literal["proportional", "equal", "neyman", "min-then-proportional"]


class SamplingOptions(Options):
    """How ``sample`` stratifies a map and shares the sample size among the strata.

    Strata are the map's classes, or the levels of another raster on the same grid (e.g. an
    uncertainty band binned by ``strata_edges``), crossed with the map classes by default.
    ``neyman`` needs the anticipated user's accuracy of each stratum (``expected_accuracy``,
    one value for all or one per stratum in stratum order); ``min-then-proportional`` gives
    every stratum at least ``min_per_stratum`` points and the rest in proportion to its area.
    """

    allocation: Allocation = Field(
        "min-then-proportional", description="how the sample size is shared among strata"
    )
    min_per_stratum: int = Field(
        50, ge=1, description="smallest sample of a stratum (min-then-proportional)"
    )
    expected_accuracy: tuple[float, ...] | None = Field(
        None, description="anticipated user's accuracy per stratum (neyman, --target-se)"
    )
    strata_band: str = Field("1", description="band of the strata raster (number or name)")
    strata_edges: tuple[float, ...] | None = Field(
        None, description="bin edges that turn strata raster values into levels"
    )
    cross_map_class: bool = Field(
        True, description="strata = map class × strata raster level (not the level alone)"
    )
    seed: int = Field(0, ge=0, description="random seed of the drawn pixels")

    @field_validator("expected_accuracy", "strata_edges", mode="before")
    @classmethod
    def _one_or_several(cls, value: Any) -> Any:
        return (value,) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @field_validator("strata_band", mode="before")
    @classmethod
    def _band_number_or_name(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _accuracies(self) -> SamplingOptions:
        if self.expected_accuracy and not all(0 < a < 1 for a in self.expected_accuracy):
            raise ValueError("expected_accuracy values must lie strictly between 0 and 1")
        if self.strata_edges and list(self.strata_edges) != sorted(set(self.strata_edges)):
            raise ValueError("strata_edges must be strictly increasing")
        return self


class ReferenceOptions(_CodeNames):
    """How a label raster becomes reference classes of the map.

    With ``positive_codes``, those label values are class 1 and every other labelled value
    class 0 (a one-crop map). With ``legend`` (a WorldCereal legend CSV) or ``code_map`` (code
    → class name, as ``prepare`` takes them), codes are read as class names and matched by name
    to the map's classes: a crop-type map's classes by name (label classes it lacks are its
    ``other``), a one-crop map's crop (its ``POSITIVE`` tag) against the rest. Without either, a
    raster naming its classes (``CLASS_<i>`` tags, as a simulated region's labels) is matched
    by name to a crop-type map's classes; for a one-crop map a simulated region's labels use
    its positive class (``POSITIVE`` tag); other rasters' values are taken as map classes.
    The raster's nodata is unlabelled.
    """

    label_band: int = Field(1, ge=1, description="band of the label raster")
    positive_codes: tuple[int, ...] | None = Field(
        None, description="label values of the positive class, e.g. 1200 (maize)"
    )
    legend: str | None = Field(
        None,
        description="WorldCereal legend CSV mapping the label raster's crop codes to names, "
        "matched to the map's classes by name",
    )
    code_map: dict[int, str] | None = Field(
        None,
        description="JSON object mapping label raster codes to class names (matched to the "
        "map's classes by name), e.g. "
        '\'{"1200": "maize", "0": "unlabelled"}\' (codes not listed become \'other\'; '
        "'unlabelled' ones label nothing)",
    )

    @model_validator(mode="after")
    def _one_reading(self) -> ReferenceOptions:
        given = [
            flag(name)
            for name in ("positive_codes", "legend", "code_map")
            if getattr(self, name) is not None
        ]
        if len(given) > 1:
            raise ValueError(f"give one of {', '.join(given)}, not several")
        return self


def validated(kind: type[OptionsT], data: dict[str, Any], path: str | None = None) -> OptionsT:
    """``kind(**data)`` with validation errors as one-line :class:`ConfigError`."""
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, path, unknown="unknown option", model=kind) from None


def overlap_problem(tiling: TilingOptions, split: SplitOptions) -> str | None:
    """Why ``tiling`` and ``split`` cannot go together, or ``None``.

    Patches that overlap (a stride below the patch size) put the same ground in both splits of
    a random or block split, and score a test pixel once per patch over it. They serve a store
    that only trains (``train``), where the overlap is more windows of the same fields.
    """
    stride = tiling.stride or tiling.patch_size
    if stride >= tiling.patch_size or split.method == "train":
        return None
    if split.method == "test":
        harm = "score a pixel once per patch over it"
    else:
        harm = "put the same ground in train and test"
    return (
        f"stride {stride} below patch_size {tiling.patch_size} overlaps patches, and split "
        f"{split.method} would then {harm}: overlap only a store that trains (split train), or "
        "keep the stride at the patch size"
    )


def as_options(kind: type[OptionsT], value: object, name: str) -> OptionsT:
    """``value`` as ``kind``: itself, or built from a mapping of its fields (a notebook's
    ``{"epochs": 5}``); anything else is a one-line error naming the parameter, as a
    scikit-learn estimator names a bad argument."""
    if isinstance(value, kind):
        return value
    if isinstance(value, Mapping):
        return validated(kind, dict(value), name)
    raise ConfigError(
        f"{name} must be {kind.__name__}(...) or a mapping of its fields, "
        f"got {type(value).__name__}"
    )


# --- CLI flags from option fields -------------------------------------------------------------


def flag(name: str) -> str:
    """``min_acquisitions`` → ``--min-acquisitions``."""
    return "--" + name.replace("_", "-")


def _unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def add_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    kind: type[BaseModel],
    *,
    exclude: tuple[str, ...] = (),
    prefix: str = "",
) -> None:
    """Add one flag per field of ``kind`` (name, type, choices, default and help from it).

    Flags default to ``None`` so that :func:`from_flags` only passes what the user gave; the
    help text shows the model's default. Booleans that default to true become ``--no-NAME``,
    the others ``--NAME`` and ``--no-NAME``.
    """
    for name, field in kind.model_fields.items():
        if name in exclude:
            continue
        annotation = _unwrap_optional(field.annotation)
        default = field.default
        shown = "" if default is None else f" ({default})"
        help_text = f"{field.description or name}{shown}"
        # A None default reads "none" too where its meaning is named (the help says it).
        can_be_none = annotation is not field.annotation and (
            default is not None or name in _NONE_MEANS
        )
        dest = prefix + name
        if annotation is bool:
            if default:
                parser.add_argument(
                    flag(f"no_{name}"),
                    dest=dest,
                    action="store_false",
                    default=None,
                    help=f"turn off: {field.description or name} (on by default)",
                )
            else:  # --NAME, and --no-NAME to undo a --config or recipe that turned it on
                parser.add_argument(
                    flag(name),
                    dest=dest,
                    action=argparse.BooleanOptionalAction,
                    default=None,
                    help=help_text,
                )
            continue
        kwargs: dict[str, Any] = {"dest": dest, "default": None, "help": help_text}
        if get_origin(annotation) is Literal:
            kwargs["choices"] = get_args(annotation)
        elif get_origin(annotation) is tuple and get_args(annotation)[:1] == (str,):
            kwargs["nargs"] = "+"  # names with spaces or commas: --positive maize potato
            kwargs["metavar"] = "NAME"
        elif get_origin(annotation) is tuple:
            kwargs["nargs"] = "+"  # numbers with spaces or commas: --epoch-search 5 10 20
            kwargs["metavar"] = "N"
        elif annotation in (int, float, str):
            kwargs["type"] = _or_none(annotation) if can_be_none else annotation
            kwargs["metavar"] = name.upper()
            if can_be_none:
                kwargs["help"] = f"{help_text}; 'none': {_NONE_MEANS.get(name, 'none')}"
        elif get_origin(annotation) is dict:
            kwargs["metavar"] = "JSON"  # a JSON object, which the field's validator reads
        parser.add_argument(flag(name), **kwargs)


# What a field's None means, for the help of its flag's ``none``.
_NONE_MEANS = {
    "max_samples_per_class": "every pixel",
    "max_depth": "no limit",
    "gradient_clip": "no clipping",
    "patience": "no early stopping",
}


def _or_none(kind: type) -> Any:
    """A flag's type that also reads ``none`` (the field's ``None``, e.g. no limit)."""

    def read(text: str) -> Any:
        if text.strip().lower() == "none":
            return NONE_GIVEN
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'a whole number' if kind is int else 'a number'} or 'none', "
                f"got {text!r}"
            ) from None

    read.__name__ = kind.__name__
    return read


def flag_value(value: Any) -> Any:
    """A flag's list of names or numbers as one list, each given with spaces or commas;
    anything else as it is."""
    if not isinstance(value, list):
        return value
    return [name.strip() for item in value for name in str(item).split(",") if name.strip()]


def from_flags(
    kind: type[OptionsT], args: argparse.Namespace, *, prefix: str = "", **extra: Any
) -> OptionsT:
    """Build ``kind`` from the flags :func:`add_flags` added (only those the user gave)."""
    data = given_values(
        {name: flag_value(getattr(args, prefix + name, None)) for name in kind.model_fields}
    )
    data.update({k: v for k, v in extra.items() if v is not None})
    return validated(kind, data)
