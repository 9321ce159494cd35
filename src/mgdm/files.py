"""Atomic file writing and safetensors checkpoints.

Every output is written to a temporary name beside its target and renamed, so a killed job never
leaves a half file that a workflow manager would take for a finished one.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save


class FileError(ValueError):
    """A file that exists but cannot be used; the message names the file and the problem (one line)."""


UMASK = os.umask(0)
os.umask(UMASK)
STATE_KEY = "mgdm.training_state"  # a resume state's step and settings, in its safetensors header


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes 0600 files; give the file a normal file's mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_temporaries(paths) -> list[Path]:
    """Delete what a killed writer left beside `paths`: `atomic_path`'s temporary files
    (`.<name>.<random><suffix>`), which a SIGKILL between creating one and renaming it leaves behind."""
    removed = []
    for path in map(Path, paths):
        if path.parent.is_dir():
            for tmp in path.parent.glob(f".{glob.escape(path.name)}.*{glob.escape(path.suffix)}"):
                if tmp.is_file():
                    tmp.unlink()
                    removed.append(tmp)
    return removed


def check_writable(paths) -> None:
    """Refuse, before any work, outputs whose folder cannot be made or written (read-only mount, a file
    where a folder should be, no permission): one line naming the folder."""
    for folder in dict.fromkeys(Path(p).parent for p in paths):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as err:
            raise FileError(f"{folder}: results folder not writable ({err.strerror or err})") from None


def new_folders(paths) -> list[Path]:
    """The folders above `paths` that do not exist yet, deepest first: those a failed job made and should take
    back (`remove_empty`), so that a refused command leaves no empty results tree behind."""
    return sorted({f for p in paths for f in Path(p).parents if not f.exists()}, key=lambda f: -len(f.parts))


def remove_empty(folders) -> None:
    """Remove each of `folders` (deepest first) that is empty; one that holds anything (another job's) stays."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            pass


def write_json(path: str | Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found (has its stage run?)") from None
    except json.JSONDecodeError as err:
        raise FileError(f"{path}: not valid JSON ({err})") from None


def read_metrics(path: str | Path, *keys: str) -> dict:
    """Read a stage's metrics JSON, refusing (one line) one that lacks `keys` or the `wall_s` every stage writes."""
    m = read_json(path)
    missing = [k for k in ("wall_s", *keys) if not isinstance(m, dict) or k not in m]
    if missing:
        raise FileError(f"{path}: keys {missing} missing; not a finished stage's metrics (rerun its stage)")
    return m


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Return every array of an .npz file; one that is not a readable .npz (or holds pickled objects,
    which are never unpickled) raises a one-line FileError naming it."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        # numpy takes a file that is not a zip for a pickle, and refuses it: say what it is not
        why = str(err).splitlines()[0] if zipfile.is_zipfile(path) else "not a zip archive"
        raise FileError(f"{path}: not a readable .npz file ({why})") from None


def unreadable_checkpoint(path, err: Exception) -> FileError:
    """The one-line error for a file safetensors cannot read (its own error types: a bad header, a short file)."""
    return FileError(f"{path}: not a readable safetensors checkpoint ({str(err).splitlines()[0]})")


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Return the tensors of a safetensors file; anything else (a pickle, a truncated or empty file) raises
    a one-line FileError naming it. Nothing is ever unpickled."""
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise
    except Exception as err:
        raise unreadable_checkpoint(path, err) from None


def write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    """Write `tensors` (and string `metadata`) as safetensors, atomically. Serialised to bytes, not with
    save_file: it writes through a temporary file of its own, which a kill would leave beside the outputs
    under a name no job can tell is its own."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(save(tensors, metadata=metadata))


def write_npz(path: str | Path, **arrays) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def save_model(path: str | Path, model: torch.nn.Module, config: dict) -> None:
    """Write `model`'s weights as safetensors and `config` as JSON beside it (same stem)."""
    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    write_safetensors(path, state)
    write_json(path.with_suffix(".json"), config)


def load_model_config(path: str | Path) -> dict:
    return read_json(Path(path).with_suffix(".json"))


def load_weights(path: str | Path, model: torch.nn.Module) -> torch.nn.Module:
    """Load a safetensors checkpoint into `model`; anything else (a pickle, a truncated file, another
    architecture's weights) is refused with the file named. Nothing is ever unpickled."""
    try:
        state = read_safetensors(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: checkpoint not found (has its training stage run?)") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), str(err))
        raise FileError(f"{path}: weights do not fit the {type(model).__name__} its config describes "
                        f"({first.rstrip('.')})") from None
    return model


def save_training_state(path: str | Path, step: int, modules: dict[str, torch.nn.Module],
                        optimizer: torch.optim.Optimizer, meta: dict, extra: dict | None = None) -> None:
    """Write everything needed to resume training at `step` (safetensors + JSON sidecar; `extra` rides along
    in the JSON without being compared on resume, e.g. the probe curves so far)."""
    tensors = {f"{name}.{k}": v.detach().contiguous().cpu()
               for name, m in modules.items() for k, v in m.state_dict().items()}
    opt = optimizer.state_dict()
    scalars = {}
    for idx, state in opt["state"].items():
        for k, v in state.items():
            if torch.is_tensor(v):
                tensors[f"optimizer.{idx}.{k}"] = v.contiguous().cpu()
            else:
                scalars[f"{idx}.{k}"] = v
    # the global generators too: dropout masks draw from them, so a resumed run draws the same masks
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    info = {"step": step, "param_groups": opt["param_groups"], "optimizer_scalars": scalars, **meta, **(extra or {})}
    path = Path(path)
    # the step and the rest ride in the tensors' own header, so one rename commits the whole state: a kill
    # between this file and its JSON copy (for people) cannot pair new tensors with an older step
    write_safetensors(path, tensors, {STATE_KEY: json.dumps(info, sort_keys=True)})
    write_json(path.with_suffix(".json"), info)


def read_training_info(path: str | Path) -> dict:
    """The step, optimizer settings, `meta` and `extra` of a state written by `save_training_state`: from the
    tensors file's header (its JSON copy for states written before the header held them); {} without either."""
    path = Path(path)
    try:
        with safe_open(str(path), "pt") as f:
            header = (f.metadata() or {}).get(STATE_KEY)
    except FileNotFoundError:
        return {}
    except Exception as err:
        raise unreadable_checkpoint(path, err) from None
    if header is not None:
        return json.loads(header)
    return read_json(path.with_suffix(".json")) if path.with_suffix(".json").exists() else {}


def load_training_state(path: str | Path, modules: dict[str, torch.nn.Module],
                        optimizer: torch.optim.Optimizer, meta: dict) -> int:
    """Restore a state written by `save_training_state`; return its step (0 when there is none).

    A state written under different settings (`meta` differs) is not resumed: it would silently
    mix two runs.
    """
    path = Path(path)
    remove_temporaries([path, path.with_suffix(".json")])  # a kill mid-write of the state this job keeps
    info = read_training_info(path)
    if not info:
        return 0
    if any(info.get(k) != v for k, v in json.loads(json.dumps(meta)).items()):
        print(f"{path}: written under other settings; starting afresh")
        return 0
    tensors = read_safetensors(path)
    for name, m in modules.items():
        prefix = f"{name}."
        m.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("optimizer."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    for k, v in info["optimizer_scalars"].items():
        idx, key = k.split(".", 1)
        state.setdefault(int(idx), {})[key] = v
    optimizer.load_state_dict({"state": state, "param_groups": info["param_groups"]})
    if "rng.cpu" in tensors:  # absent in states written before it was saved
        torch.set_rng_state(tensors["rng.cpu"])
    cuda = [tensors[f"rng.cuda.{i}"] for i in range(sum(k.startswith("rng.cuda.") for k in tensors))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    return int(info["step"])


def write_image_grid(path: str | Path, images: np.ndarray, labels: np.ndarray, per_class: int = 8,
                     scale: int = 2) -> None:
    """Write a PNG with one row per class of up to `per_class` uint8 NHWC images."""
    from PIL import Image
    from torchvision.utils import make_grid

    rows = []
    for c in np.unique(labels):
        pick = images[labels == c][:per_class]
        pad = np.zeros((per_class - len(pick), *images.shape[1:]), np.uint8)
        rows.append(np.concatenate([pick, pad]))
    grid = torch.from_numpy(np.concatenate(rows)).permute(0, 3, 1, 2)
    grid = make_grid(grid, nrow=per_class, padding=1, pad_value=255).permute(1, 2, 0).numpy()
    im = Image.fromarray(grid.squeeze(-1) if grid.shape[-1] == 1 else grid)
    im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")


def save_figure(fig, path: str | Path) -> None:
    """Write a matplotlib figure as PNG (atomically) and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)
