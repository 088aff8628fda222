"""Two-process data-parallel training (DDP, gloo on CPU) keeps the replicas identical."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    from pathlib import Path

    import lightning as L
    import torch

    from sarcrop.models import build_model
    from sarcrop.training import CheckpointMetadata, TrainConfig, fit

    out = Path(sys.argv[1])
    distillation = float(sys.argv[2])
    clocks_apart = len(sys.argv) > 3  # each process would choose its own last.ckpt moments
    if clocks_apart:
        import os

        from sarcrop.training import api

        every = 0.0 if os.environ.get("LOCAL_RANK", "0") == "0" else 1e9
        api._LastEveryFewSeconds.__init__.__defaults__ = (every,)


    def digest(model):
        h = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()


    class Report(L.Callback):
        def __init__(self):
            self.batches = []

        def on_train_start(self, trainer, pl_module):
            self.initial = digest(pl_module.model)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.batches.append([batch["t"].tolist(), batch["index"].tolist()])

        def on_train_end(self, trainer, pl_module):
            report = {"rank": trainer.global_rank, "world": trainer.world_size,
                      "initial": self.initial, "final": digest(pl_module.model),
                      "batches": self.batches}
            (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))


    g = torch.Generator().manual_seed(0)
    items = []
    for i in range(6):
        target = (torch.rand(32, 32, generator=g) > 0.7).float()
        image = torch.rand(2, 1, 32, 32, generator=g) * 0.2 + target
        valid = torch.rand(32, 32, generator=g) > 0.5  # the rest: unlabelled
        items.append({"image": image, "target": target, "valid": valid, "index": i})
    torch.manual_seed(0)
    model = build_model("recurrent_unet", 1, 2, widths=[4, 8], dropout=0.0, norm="batch")
    meta = CheckpointMetadata(architecture="recurrent_unet",
                              options={"widths": [4, 8], "dropout": 0.0, "norm": "batch"},
                              bands=["VH"], time_steps=2)
    config = TrainConfig(epochs=1, batch_size=2, lr=0.05, ordering="chronological",
                         accelerator="cpu", devices=2, distributed="ddp", patience=None,
                         progress_bar=False, scheduler="none", distillation=distillation)
    # with distillation: the initial weights stand in for a pre-trained start (the teacher)
    start = {k: v.clone() for k, v in model.state_dict().items()} if distillation else None
    if clocks_apart:  # no validation: last.ckpt every few seconds, for 3 epochs
        config = config.updated(epochs=3)
        fit(model, items[:4], None, out, config, meta, callbacks=[Report()], start=start)
    else:
        fit(model, items[:4], items[4:], out, config, meta, callbacks=[Report()], start=start)
    """
)


def run_script(tmp_path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_PORT"):
        env.pop(key, None)
    return subprocess.run(
        [sys.executable, str(script), *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
@pytest.mark.parametrize("distillation", [0.0, 1.0])
def test_two_rank_ddp_training_agrees(tmp_path, distillation):
    """Also with distillation, whose frozen teacher is a module of the task beside the model."""
    out = tmp_path / "run"
    proc = run_script(tmp_path, str(out), str(distillation))
    assert proc.returncode == 0, proc.stderr[-3000:]

    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["initial"] == ranks[1]["initial"]
    assert ranks[0]["final"] == ranks[1]["final"], "replicas diverged"
    assert ranks[0]["final"] != ranks[0]["initial"], "no training happened"

    # Chronological batch types stay aligned across ranks; the ranks see different patches.
    t_seq = [[b[0][0] for b in r["batches"]] for r in ranks]
    assert t_seq[0] == t_seq[1] == [1, 2]
    for step in range(2):
        assert not set(ranks[0]["batches"][step][1]) & set(ranks[1]["batches"][step][1])
    assert (out / "model.safetensors").is_file()
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


@pytest.mark.slow
def test_processes_whose_clocks_disagree_save_last_ckpt_together(tmp_path):
    """Without validation each epoch may write last.ckpt, which every process must do at
    once: with process 0 due at every epoch and process 1 never, the run still ends (it hung
    in the save's barrier when each process asked its own clock)."""
    out = tmp_path / "run"
    proc = run_script(tmp_path, str(out), "0", "clocks-apart", timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert [len(rank["batches"]) for rank in ranks] == [6, 6]  # 3 epochs, one step per t
    assert (out / "model.safetensors").is_file() and (out / "last.ckpt").is_file()
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
