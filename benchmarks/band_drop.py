"""A VH|VV model read on VH alone: the shipped ``europe-maize`` on a simulated store.

    sarcrop simulate europe --seed 3 --size 128 128 --out runs/eu3
    sarcrop prepare --images runs/eu3 --out runs/eu3.zarr --patch-size 32
    python benchmarks/band_drop.py runs/eu3.zarr

Scores the test patches (IoU of maize at the 0.5 threshold, and the pixels called maize) of the
model as shipped on VH|VV, and of the model with its first layer adapted to VH alone
(``adapt_input_bands``: the dropped band's weights added to VH's), beside the rule of sarcrop
up to 0.13.0 (``2·W_VH``). Simulated data: it tells whether the adapted model still maps
maize, not how well on real VH-only data.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

from sarcrop import pretrained
from sarcrop.data.store import DatasetStore
from sarcrop.evaluation.networks import scored_patches, split_probabilities
from sarcrop.models import adapt_input_bands
from sarcrop.training import load_checkpoint
from sarcrop.training.checkpoint import CheckpointMetadata

MODEL = "europe-maize"
FULL = 8  # composites of the season: the full-season map


def scored(model: torch.nn.Module, meta: CheckpointMetadata, store: DatasetStore) -> str:
    """``IoU 0.312, 3303 px called maize`` on the store's test patches."""
    tp = fp = fn = 0
    patches = scored_patches(store, "test", meta)
    cpu = torch.device("cpu")
    for batch, probabilities in split_probabilities(model, patches, [FULL], device=cpu):
        valid = batch["valid"]
        called = (probabilities[FULL] >= 0.5)[valid]
        truth = (batch["target"] > 0.5)[valid]
        tp += int((called & truth).sum())
        fp += int((called & ~truth).sum())
        fn += int((~called & truth).sum())
    return f"IoU {tp / max(1, tp + fp + fn):.3f}, {tp + fp} px called maize"


def on_vh(meta: CheckpointMetadata) -> CheckpointMetadata:
    """The checkpoint's metadata for the VH band alone (its VH input range)."""
    norm = dict(meta.normalization or {})
    vh = meta.bands.index("VH")
    norm.update(min=[norm["min"][vh]], max=[norm["max"][vh]])
    if "bands" in norm:
        norm["bands"] = ["VH"]
    return meta.model_copy(update={"bands": ["VH"], "normalization": norm})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", help="a prepared store with VH and VV and maize labelled")
    args = parser.parse_args(argv)
    store = DatasetStore.open(args.store)
    model, meta = load_checkpoint(pretrained.path(MODEL))
    weight = model.first_conv.weight.detach().clone()
    print(f"{MODEL} on VH|VV as shipped: {scored(model, meta, store)}")
    adapt_input_bands(model, ["VH"], list(meta.bands))
    print(f"on VH alone, adapted (W_VH + W_VV): {scored(model, on_vh(meta), store)}")
    with torch.no_grad():
        vh = meta.bands.index("VH")
        model.first_conv.weight.copy_(2 * weight[:, vh : vh + 1])
    print(f"on VH alone, 2·W_VH (up to 0.13.0): {scored(model, on_vh(meta), store)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
