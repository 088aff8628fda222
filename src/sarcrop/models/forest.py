"""A fitted Random Forest as a PyTorch module, so that the forest maps like a network.

On a location's own fields the per-pixel forest is often the best method (docs/results.md),
yet a scikit-learn estimator cannot go where a network's checkpoint goes: ``predict``'s
streaming windows, Dask workers, ``evaluate``, ``--models`` averaging. Stored as plain arrays
in a safetensors checkpoint (never pickled), the trees are walked here tree by tree, every
pixel one level down per step, with NumPy on the CPU (its gathers from a tree's small arrays
were 6× faster than PyTorch's here); inputs on another device come back there.

Features of a pixel are the forest baseline's: its ``T × B`` normalised composite values,
time-major (feature ``t * B + b``, :func:`sarcrop.evaluation.baseline.pixels_from_patches`).
A pixel goes to a node's left child where its feature is at most the node's threshold, as in
scikit-learn. Features are float32 and scikit-learn's thresholds float64; each threshold is
stored as the largest float32 not above it, for which ``x <= threshold`` holds for exactly the
same float32 ``x``, so the leaves reached are scikit-learn's.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sarcrop.errors import ConfigError, InputDataError

if TYPE_CHECKING:
    from sklearn.ensemble import RandomForestClassifier

MIN_PIXELS_PER_THREAD = 4096  # below this a thread costs more than it saves
LEAF_CHECK = 8  # levels between checks whether every pixel has reached a leaf
LOGIT_FLOOR = 1e-7  # probabilities 0 and 1 as finite logits (sigmoid gives them back)


class TreeEnsemble(nn.Module):
    """``(batch, time, bands, H, W)`` → logits ``(batch, out_channels, H, W)`` of a forest.

    One logit (the positive class's log-odds) for a forest of two classes, else the log of each
    class's probability, so that sigmoid or softmax gives the forest's probabilities back.
    Shorter series are zero-padded at the end to ``time_steps``, the input the forest learnt
    for early-season maps. The buffers hold every tree's nodes in one array: ``left``/``right``
    children (a leaf points at itself), the ``feature`` and ``threshold`` of each split, the
    class probabilities of each node (``value``) and each tree's first node (``roots``).
    """

    name: ClassVar[str] = "random_forest"  # a checkpoint's architecture
    reads_neighbours: ClassVar[bool] = False  # each pixel's series alone, as in SegmentationModel
    left: Tensor
    right: Tensor
    feature: Tensor
    threshold: Tensor
    value: Tensor
    roots: Tensor

    def __init__(
        self,
        in_bands: int,
        time_steps: int,
        *,
        trees: int,
        nodes: int,
        depth: int,
        classes: int = 2,
        merged_head: Sequence[bool] | None = None,
    ) -> None:
        super().__init__()
        if min(in_bands, time_steps, trees, nodes) < 1 or depth < 0 or classes < 2:
            raise ConfigError(
                f"a forest needs positive sizes and 2 or more classes, got in_bands={in_bands}, "
                f"time_steps={time_steps}, trees={trees}, nodes={nodes}, depth={depth}, "
                f"classes={classes}"
            )
        self.in_bands, self.time_steps = int(in_bands), int(time_steps)
        self.depth, self.classes = int(depth), int(classes)
        self.options: dict[str, Any] = {
            "trees": int(trees),
            "nodes": int(nodes),
            "depth": self.depth,
            "classes": self.classes,
            "out_channels": 1 if self.classes == 2 else self.classes,
        }
        self.merged: list[bool] | None = None
        if merged_head is not None:
            self.merge(merged_head)
        self.register_buffer("left", torch.zeros(nodes, dtype=torch.int64))
        self.register_buffer("right", torch.zeros(nodes, dtype=torch.int64))
        self.register_buffer("feature", torch.zeros(nodes, dtype=torch.int64))
        self.register_buffer("threshold", torch.zeros(nodes, dtype=torch.float32))
        self.register_buffer("value", torch.zeros(nodes, classes, dtype=torch.float64))
        self.register_buffer("roots", torch.zeros(trees, dtype=torch.int64))
        self.register_load_state_dict_post_hook(self._check_loaded)

    def merge(self, positive: Sequence[bool]) -> None:
        """Answer for the ``positive`` classes against the rest from now on: one logit, the
        log-odds of their summed probability, as a network's crop-type head reads for one crop
        (:func:`sarcrop.training.strategies.merge_head`). The options record it."""
        if len(positive) != self.classes or not any(positive) or all(positive):
            raise ConfigError(
                f"merged_head needs one flag per class of {self.classes}, some of them set: "
                f"got {list(positive)}"
            )
        self.merged = [bool(flag) for flag in positive]
        self.options.update(out_channels=1, merged_head=self.merged)

    @classmethod
    def from_forest(
        cls, forest: RandomForestClassifier, in_bands: int, time_steps: int, classes: int
    ) -> TreeEnsemble:
        """The trees of a fitted scikit-learn forest whose labels are ``0..classes-1``."""
        left, right, feature, threshold, value, roots = [], [], [], [], [], []
        offset, depth = 0, 0
        for tree in (estimator.tree_ for estimator in forest.estimators_):
            own = np.arange(tree.node_count)
            leaf = tree.children_left < 0
            left.append(np.where(leaf, own, tree.children_left) + offset)
            right.append(np.where(leaf, own, tree.children_right) + offset)
            feature.append(np.where(leaf, 0, tree.feature))
            threshold.append(tree.threshold)
            counts = tree.value[:, 0, :]  # (nodes, classes seen in training)
            share = np.zeros((tree.node_count, classes))
            share[:, forest.classes_.astype(int)] = counts / counts.sum(axis=1, keepdims=True)
            value.append(share)
            roots.append(offset)
            offset += tree.node_count
            depth = max(depth, int(tree.max_depth))
        model = cls(
            in_bands, time_steps, trees=len(roots), nodes=offset, depth=depth, classes=classes
        )
        model.load_state_dict(
            {
                "left": torch.from_numpy(np.concatenate(left).astype(np.int64)),
                "right": torch.from_numpy(np.concatenate(right).astype(np.int64)),
                "feature": torch.from_numpy(np.concatenate(feature).astype(np.int64)),
                "threshold": torch.from_numpy(float32_at_most(np.concatenate(threshold))),
                "value": torch.from_numpy(np.concatenate(value).astype(np.float64)),
                "roots": torch.tensor(roots, dtype=torch.int64),
            }
        )
        return model.eval()

    def _check_loaded(self, *_: Any) -> None:
        """After every load (also inside another module), check that the trees follow one
        another from node 0, that every child lies in its own tree after its node, and every
        feature in the input: a file that points elsewhere is refused, not read out of bounds
        or walked in circles."""
        roots = self.roots.cpu().numpy()
        nodes = np.arange(len(self.left))
        if roots[0] != 0 or np.any(np.diff(roots) <= 0) or roots[-1] >= len(nodes):
            raise RuntimeError("roots are not increasing first nodes of the trees from 0")
        ends = np.append(roots[1:], len(nodes))  # each tree's nodes: roots[i] .. ends[i] - 1
        tree = np.searchsorted(roots, nodes, side="right") - 1
        first, end = roots[tree], ends[tree]
        left, right = self.left.cpu().numpy(), self.right.cpu().numpy()
        for name, child in (("left", left), ("right", right)):
            if np.any((child < first) | (child >= end)):
                raise RuntimeError(f"{name} holds node indices outside their own tree")
        leaf = left == nodes
        # Children come after their node, as scikit-learn builds trees: no walk goes in circles.
        if np.any(leaf != (right == nodes)) or np.any(~leaf & ((left <= nodes) | (right <= nodes))):
            raise RuntimeError("a child does not come after its node, or a leaf has one child")
        if self.depth > int(np.max(ends - roots)):
            raise RuntimeError(f"depth {self.depth} is deeper than any tree's node count")
        features = self.in_bands * self.time_steps
        if int(self.feature.min()) < 0 or int(self.feature.max()) >= features:
            raise RuntimeError(f"feature holds indices outside 0..{features - 1}")
        if not bool(torch.isfinite(self.value).all()) or bool((self.value < 0).any()):
            raise RuntimeError("value holds class shares that are negative or not finite")

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 5:
            raise InputDataError(
                f"model input must be (batch, time, bands, H, W), got shape {tuple(x.shape)}"
            )
        batch, steps, bands, height, width = x.shape
        if bands != self.in_bands or not 1 <= steps <= self.time_steps:
            raise InputDataError(
                f"the forest expects 1 to {self.time_steps} time steps of {self.in_bands} "
                f"bands, got {steps} of {bands}"
            )
        x = F.pad(x.detach().float(), (0, 0, 0, 0, 0, 0, 0, self.time_steps - steps))
        return self.pixel_logits(x.reshape(batch, -1, height, width))

    def pixel_logits(self, features: Tensor) -> Tensor:
        """Logits ``(batch, out_channels, H, W)`` of per-pixel features ``(batch, F, H, W)``."""
        batch, width, rows, cols = features.shape
        pixels = features.permute(0, 2, 3, 1).reshape(-1, width).cpu().numpy()
        prob = torch.from_numpy(self.threaded(pixels)).to(features.device)
        if self.merged is not None:
            prob = prob[:, torch.tensor(self.merged)].sum(dim=1, keepdim=True)
        elif self.classes == 2:
            prob = prob[:, 1:]
        prob = prob.clamp(LOGIT_FLOOR, 1 - LOGIT_FLOOR)
        logits = torch.logit(prob) if prob.shape[1] == 1 else prob.log()
        return logits.reshape(batch, rows, cols, -1).permute(0, 3, 1, 2)

    def threaded(self, pixels: np.ndarray) -> np.ndarray:
        """:meth:`probabilities` with the pixels shared among ``torch.get_num_threads()``
        threads (NumPy's gathers release the GIL); each pixel's sum is the same whatever the
        number of threads."""
        threads = min(torch.get_num_threads(), -(-len(pixels) // MIN_PIXELS_PER_THREAD))
        if threads <= 1:
            return self.probabilities(pixels)
        with ThreadPoolExecutor(threads) as pool:
            return np.concatenate(
                list(pool.map(self.probabilities, np.array_split(pixels, threads)))
            )

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """The forest's class probabilities ``(n, classes)`` of pixel features ``(n, F)``:
        the mean over trees of the class shares at the leaf each tree sends the pixel to.

        Every few levels the pixels that reached a leaf stop walking, so that a deep branch
        costs only the pixels that go down it.
        """
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        count, width = pixels.shape
        flat = pixels.reshape(-1)
        left, right, feature, threshold, value, roots = (
            buffer.cpu().numpy()
            for buffer in (
                self.left,
                self.right,
                self.feature,
                self.threshold,
                self.value,
                self.roots,
            )
        )
        ends = [*roots[1:], len(left)]
        total = np.zeros((count, self.classes))
        for first, end in zip(roots, ends, strict=True):
            tree = slice(first, end)  # a tree's own nodes, indexed from its first
            below, above = left[tree] - first, right[tree] - first
            children = np.stack([above, below], axis=1).ravel()  # node n: 2n right, 2n + 1 left
            leaf = below == np.arange(end - first)
            feature_of, threshold_of = feature[tree], threshold[tree]
            node = np.zeros(count, dtype=np.int64)  # where each pixel ended
            walking, at, starts = np.arange(count), node, np.arange(count) * width
            for level in range(1, self.depth + 1):
                goes_left = flat[starts + feature_of[at]] <= threshold_of[at]
                at = children[2 * at + goes_left]
                if level % LEAF_CHECK == 0:
                    going = ~leaf[at]
                    node[walking[~going]] = at[~going]
                    walking, at, starts = walking[going], at[going], starts[going]
                    if not len(walking):
                        break
            node[walking] = at
            total += value[tree][node]
        return (total / len(roots)).astype(np.float32)


class FeatureTreeEnsemble(nn.Module):
    """A forest on a frozen network's per-pixel features (``sarcrop baseline --features``):
    ``(batch, time, bands, H, W)`` → logits, as :class:`TreeEnsemble`.

    A pixel's features are the input of the network's ``decoder.head`` and, with ``raw``, its
    own ``T × B`` series (:class:`sarcrop.evaluation.feature_forest.FeatureExtractor`); the
    network reads the bands ``network_bands`` (indices into the input's, default all).
    """

    name: ClassVar[str] = "feature_forest"  # a checkpoint's architecture

    def __init__(
        self,
        network: nn.Module,
        trees: TreeEnsemble,
        *,
        raw: bool,
        network_bands: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.network, self.trees = network.eval(), trees
        self.raw = bool(raw)
        self.network_bands = None if network_bands is None else [int(i) for i in network_bands]
        self.time_steps = int(getattr(network, "time_steps", 0))

    @property
    def reads_neighbours(self) -> bool:
        """Whether its features do: those of the network it reads."""
        return bool(getattr(self.network, "reads_neighbours", True))

    @property
    def options(self) -> dict[str, Any]:
        """What rebuilds it (with the network's and the trees' own options)."""
        from sarcrop.models import model_config

        return {
            "network": model_config(self.network),
            "trees": {
                "in_bands": self.trees.in_bands,
                "time_steps": self.trees.time_steps,
                **self.trees.options,
            },
            "raw": self.raw,
            "network_bands": self.network_bands,
            "out_channels": self.trees.options["out_channels"],
        }

    def merge(self, positive: Sequence[bool]) -> None:
        """Answer for the ``positive`` classes against the rest (:meth:`TreeEnsemble.merge`)."""
        self.trees.merge(positive)

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x.detach().float(), (0, 0, 0, 0, 0, 0, 0, self.time_steps - x.shape[1]))
        batch, steps, bands, height, width = x.shape
        seen = x if self.network_bands is None else x[:, :, self.network_bands]
        parts = [decoder_features(self.network, seen)]
        if self.raw:
            parts.append(x.reshape(batch, steps * bands, height, width))
        return self.trees.pixel_logits(torch.cat(parts, dim=1))


Forest = TreeEnsemble | FeatureTreeEnsemble
"""A forest saved to map with (``sarcrop baseline --save``)."""


def decoder_features(network: nn.Module, x: Tensor) -> Tensor:
    """The input of ``network.decoder.head`` for ``x``: ``(batch, channels, H, W)``, the
    network's last per-pixel features, cropped to the input's size."""
    head = network.get_submodule("decoder.head")
    captured: list[Tensor] = []
    hook = head.register_forward_pre_hook(lambda _, args: captured.append(args[0]))
    try:
        with torch.inference_mode():
            network(x)
    finally:
        hook.remove()
    return captured[0][..., : x.shape[-2], : x.shape[-1]]


def float32_at_most(thresholds: np.ndarray) -> np.ndarray:
    """The largest float32 not above each float64 threshold: for any float32 ``x``,
    ``x <= result`` exactly where ``x <= threshold``."""
    nearest = thresholds.astype(np.float32)
    above = nearest.astype(np.float64) > thresholds
    nearest[above] = np.nextafter(nearest[above], np.float32(-np.inf))
    return nearest
