"""Stage `sample`: one synthetic set (a guidance at a scale) from the DDPM and the guidance net."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mgdm.config import SamplingConfig, parse_set_name, set_draw, set_multiple
from mgdm.diffusion.train import load_ddpm, model_normalization
from mgdm.diffusion.unet import ddim_schedulers
from mgdm.files import read_json, write_image_grid, write_json, write_npz
from mgdm.guidance.train import load_guidance_net
from mgdm.interrupts import stop, stop_at_boundary, stop_requested
from mgdm.data.splits import Dataset
from mgdm.sampling.ddim import ddim, mgdm_two_stage
from mgdm.sampling.models import guidance_model
from mgdm.stages import StageResult


def label_plan(cfg: SamplingConfig, train_counts: list[int], multiple: float | None = None) -> np.ndarray:
    """Return the class label of every image to draw: `per_class` each, or the training proportions; with
    `multiple`, `multiple` x the training split's size in all (a sized set, e.g. entropy-s2-x3)."""
    k = len(train_counts)
    total = cfg.per_class * k if multiple is None else round(multiple * sum(train_counts))
    if cfg.class_counts == "balanced":
        counts = [total // k] * k if multiple is None else [total // k + (c < total % k) for c in range(k)]
    else:
        counts = [max(1, round(total * c / sum(train_counts))) for c in train_counts]
    return np.repeat(np.arange(k), counts)


def sample_batch(unet, guidance_net, noise, y, guidance: str, scale: float, cfg: SamplingConfig, null_label: int,
                 sampler, inverter, generator) -> torch.Tensor:
    """Return x_0 (in the DDPM's normalized space) for one batch under `guidance` at `scale`."""
    def model(kind, s):
        return guidance_model(unet, guidance_net, kind, s, sampler, null_label, cfg.mc_samples)

    if guidance == "mgdm":  # stage 1 in distribution, stage 2 the uncertainty measure (the set's scale)
        return mgdm_two_stage(model(cfg.mgdm.stage1, cfg.mgdm.stage1_scale), model(cfg.mgdm.measure, scale),
                              model("none", 0.0), noise, y, sampler, inverter, cfg.ddim_steps)
    return ddim(model(guidance, scale), noise, y, sampler, cfg.ddim_steps, eta=cfg.eta, generator=generator)


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def run(ddpm_path: str | Path, guidance_path: str | Path, set_name: str, cfg: SamplingConfig,
        train_counts: list[int], out_npz: str | Path, out_png: str | Path, device: str = "cpu",
        progress: bool = True, keep_shards: bool = False) -> dict:
    """Write the set's .npz (uint8 images, labels, per-image metadata) and PNG grid; return metrics.

    Each finished batch is kept as a shard beside the output until the set is complete, so a killed job
    resumes at its next batch (a signalled one stops after the batch under way); every batch draws from its own
    seeded generators, so a resumed set is bit-identical to an unbroken one. `keep_shards`: leave them for the
    caller to remove (`shard_folder`) once the set is recorded.
    """
    guidance, scale = parse_set_name(set_name)
    unet, ddpm_cfg = load_ddpm(ddpm_path, device)
    guidance_net = load_guidance_net(guidance_path, device)
    sampler, inverter = ddim_schedulers(ddpm_cfg["scheduler"])
    norm = model_normalization(ddpm_cfg)
    labels = label_plan(cfg, train_counts, set_multiple(set_name))
    # The same seed for every set of a draw: image i starts from the same noise in every set, so sets differ
    # only by their guidance (paired comparisons); draw k (entropy-s2-dk) is the set sampling seed + k gives.
    seed = cfg.seed + set_draw(set_name)
    noise = torch.randn(len(labels), unet.config.in_channels, unet.config.sample_size, unet.config.sample_size,
                        generator=torch.Generator().manual_seed(seed))
    shards = Shards(Path(out_npz), {"set": set_name, "sampling": cfg.model_dump(), "ddpm": file_digest(ddpm_path),
                                    "guidance_net": file_digest(guidance_path)})
    t0 = time.time()
    starts = range(0, len(labels), cfg.batch_size)
    with stop_at_boundary():  # Ctrl-C or SIGTERM: the batch under way is finished and kept, then stop
        for b, i in enumerate(tqdm(starts, desc=f"sample {set_name}", disable=not progress)):
            if shards.has(b):
                continue
            batch_seed = seed * 1_000_003 + b
            g = torch.Generator().manual_seed(batch_seed)  # DDIM noise when eta > 0
            torch.manual_seed(batch_seed)  # MC-dropout masks (bald) draw from the global generator
            y = torch.from_numpy(labels[i:i + cfg.batch_size]).to(device)
            x = sample_batch(unet, guidance_net, noise[i:i + cfg.batch_size].to(device), y, guidance, scale, cfg,
                             ddpm_cfg["null_label"], sampler, inverter, g)
            shards.write(b, norm.decode(x))
            if stop_requested() and b + 1 < len(starts):
                stop(f"batch {b + 1} of {len(starts)}")
    images, wall = np.concatenate([shards.read(b) for b in range(len(starts))]), time.time() - t0
    n = len(labels)
    write_npz(out_npz, images=images, labels=labels.astype(np.int64), guidance=np.full(n, guidance),
              scale=np.full(n, scale, np.float32), source_index=np.arange(n), ddim_steps=np.full(n, cfg.ddim_steps),
              stage1=np.full(n, cfg.mgdm.stage1 if guidance == "mgdm" else ""))
    write_image_grid(out_png, images, labels)
    if not keep_shards:
        shards.remove()
    return {"metrics": {"n_images": n, "sample_s": wall, "images_per_s": n / wall, "resumed_batches": shards.resumed},
            "params": {"guidance": guidance, "scale": scale}}


def shard_folder(out_npz: str | Path) -> Path:
    """The hidden folder a set's finished batches are kept in, beside the set."""
    return Path(out_npz).with_name(f".{Path(out_npz).stem}.shards")


class Shards:
    """Finished batches of a set, kept in a hidden folder beside its output until the set is written.

    `key` says what the batches were drawn under (settings, model files); shards drawn under another key
    are discarded rather than mixed into this set.
    """

    def __init__(self, out: Path, key: dict):
        self.dir = shard_folder(out)
        self.resumed = 0
        key_file = self.dir / "key.json"
        if self.dir.exists() and (not key_file.exists() or read_json(key_file) != json.loads(json.dumps(key))):
            shutil.rmtree(self.dir)
        if not self.dir.exists():
            write_json(key_file, key)
        self.resumed = sum(1 for _ in self.dir.glob("batch*.npz"))

    def path(self, b: int) -> Path:
        return self.dir / f"batch{b:05d}.npz"

    def has(self, b: int) -> bool:
        return self.path(b).exists()

    def write(self, b: int, images: np.ndarray) -> None:
        write_npz(self.path(b), images=images)

    def read(self, b: int) -> np.ndarray:
        with np.load(self.path(b)) as f:
            return f["images"]

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def main(config, plan, a) -> StageResult:
    dataset = Dataset(plan.dataset_file(a.dataset))
    out = plan.paths("sample", dataset=a.dataset, set=a.set)
    counts = np.bincount(dataset.numpy("train")[1], minlength=dataset.num_classes).tolist()
    ddpm = plan.paths("train_ddpm", dataset=a.dataset)["model.safetensors"]
    guidance = plan.paths("train_guidance_net", dataset=a.dataset)["model.safetensors"]
    result = run(ddpm, guidance, a.set, config.profile.sampling, counts, out[f"{a.set}.npz"], out[f"{a.set}.png"],
                 config.profile.device, a.progress, keep_shards=True)
    # the batches stay until the job is recorded: a failure after the set (MLflow gone) keeps them for the rerun
    shards = shard_folder(out[f"{a.set}.npz"])
    return replace(StageResult.of(result, [out[f"{a.set}.png"]]),
                   recorded=lambda: shutil.rmtree(shards, ignore_errors=True))
