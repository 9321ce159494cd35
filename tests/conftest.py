import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Two test workers (pyproject's addopts) and the jobs they start share the cores. With OpenMP's default
# active wait a 2-thread torch process beside a busy core spins: a smoke DDPM step measured 3.98 s instead
# of 0.19 s with passive waiting (0.07 s at 1 thread). Set before torch loads, inherited by the workers.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# Under pytest-xdist each worker gets an equal share of the cores, and so do the commands it starts (a job
# that asks for threads, as Snakemake's do with --threads, still gets them).
WORKER_THREADS = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", 1)))
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(WORKER_THREADS)


def discs_dataset(out: Path, **spec):
    """A generated discs dataset (mgdm's procedural source) of the given split sizes, written under `out`."""
    from mgdm.config import DatasetSpec
    from mgdm.data.splits import Dataset
    from mgdm.stages import preprocess

    preprocess.run("discs", DatasetSpec(source="procedural", **spec), None, out)
    return Dataset(out / "dataset.npz")
S = 0.5  # std of the Gaussian toy data
SCHED = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=2e-2,
             clip_sample=True, prediction_type="epsilon")


class GaussianEps:
    """The optimal epsilon model for N(0, S^2 I) data, with the UNet's calling convention:
    eps(x_t, t) = sqrt(1 - a_t) x_t / (a_t S^2 + 1 - a_t), a_t the cumulative alpha."""

    def __init__(self, alphas_cumprod):
        self.a = alphas_cumprod

    def __call__(self, x, t, class_labels=None):
        a = self.a[t].view(-1, 1, 1, 1).to(x)
        return type("Out", (), {"sample": (1 - a).sqrt() * x / (a * S**2 + 1 - a)})


class LinearClassifier(torch.nn.Module):
    """A fixed, noise-aware guidance net for the Gaussian toy data: linear logits of the posterior
    mean E[x_0 | x_t] = sqrt(a_t) S^2 x_t / (a_t S^2 + 1 - a_t). Like a trained noisy classifier, it
    is unsure at high noise, so guidance gradients stay bounded. With `dropout`, `mc_dropout=True`
    drops input features as the guidance net's MC dropout does."""

    def __init__(self, alphas_cumprod, dim: int, classes: int = 3, seed: int = 0, dropout: float = 0.0):
        super().__init__()
        self.a, self.dropout = alphas_cumprod, dropout
        self.w = torch.randn(classes, dim, generator=torch.Generator().manual_seed(seed)) / dim**0.5

    def forward(self, x, t, mc_dropout=False):
        a = self.a[t].view(-1, 1).to(x)
        x0 = a.sqrt() * S**2 * x.flatten(1) / (a * S**2 + 1 - a)
        return 4 * torch.nn.functional.dropout(x0, self.dropout, mc_dropout) @ self.w.T


def signal_at_call(monkeypatch, module, name: str, n: int, signum=None) -> list:
    """Replace `module.name` so that its n-th call first raises `signum` (SIGTERM) in this process, as a
    scancel landing mid-step would; returns the list its calls are counted in."""
    import signal

    real, calls = getattr(module, name), []

    def signalled(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            signal.raise_signal(signum or signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, signalled)
    return calls


def mgdm_env() -> dict:
    """The environment for running the CLI and workflow managers from this venv."""
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)  # each workflow logs to its own folder's store
    if os.environ.get("PYTEST_XDIST_WORKER"):
        env.setdefault("OMP_NUM_THREADS", str(WORKER_THREADS))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def workflow_copy(dest: Path) -> Path:
    """Copy what a workflow run needs (not results/) into `dest`. The package that runs is the installed
    one; src/ is copied as the code the stages depend on (mgdm.workflow.sources)."""
    for name in ("Snakefile", "params.yaml", "dvc.yaml", "environment.yml"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(ROOT / "workflow", dest / "workflow")
    shutil.copytree(ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dest


def debian_command(names: tuple[str, ...], packages: list[str]) -> str | None:
    """The first of `names` on PATH, installing Debian's `packages` first where this runs as root with apt."""
    if not any(shutil.which(c) for c in names) and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", *packages], capture_output=True, timeout=900,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return next((shutil.which(c) for c in names if shutil.which(c)), None)


def run(cmd, cwd, check=True, mlflow=True, **kw):
    """Run a command from this venv; mlflow=False sets MGDM_NO_MLFLOW for it and the jobs it starts (tests
    that do not read MLflow save its import and store, about 4 s a job)."""
    env = mgdm_env() if mlflow else {**mgdm_env(), "MGDM_NO_MLFLOW": "1"}
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, **kw)
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


@pytest.fixture
def tmp_workflow(tmp_path):
    return workflow_copy(tmp_path)


# Longest first (measured with --durations), so that the two workers end together rather than one of them
# starting the `paper` miniature when the other is done. The rest keep their order.
LONGEST = ("test_end_to_end.py", "test_crash_safety.py", "test_paper_miniature.py", "test_pipeline.py",
           "test_dvc.py", "test_slurm.py", "test_generator.py", "test_dependencies.py", "test_grid_training.py",
           "test_train_group.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST)))  # stable: order within a module kept


@pytest.fixture(scope="session")
def smoke_dag(tmp_path_factory):
    """The smoke DAG run once by Snakemake, for the tests that read a finished pipeline (do not modify it:
    copy it with `finished_copy`). Returns (workdir, the Snakemake run's stdout + stderr). Under xdist the
    first worker to ask runs it in the folder all workers share; the others wait for it and read it."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    workdir, log = shared / "smoke_dag", shared / "smoke_dag.log"
    with FileLock(shared / "smoke_dag.lock"):
        if not log.exists():
            shutil.rmtree(workdir, ignore_errors=True)  # a failed attempt by another worker
            workdir.mkdir()
            res = run(["snakemake", "--cores", "2", "--config", "profile=smoke"], workflow_copy(workdir))
            log.write_text(res.stdout + res.stderr)
    return workdir, log.read_text()


def finished_copy(smoke_dag, dest: Path) -> Path:
    shutil.copytree(smoke_dag[0], dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".snakemake"))
    return dest


def mlflow_runs(root: Path):
    """The MLflow runs a smoke workflow in `root` logged to its folder's store (a DataFrame, one row a run)."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{root}/results/mlflow.db")
    return mlflow.search_runs(experiment_names=["mgdm-smoke"])


def grouped_params(path: Path, **downstream) -> Path:
    """Rewrite params.yaml with the smoke profile grouped (one train_group job per network), its downstream
    settings changed as given."""
    import yaml

    params = yaml.safe_load(path.read_text())
    params["profiles"]["smoke"]["downstream"].update(grouped=True, **downstream)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def stage_of(dvc_stage: str) -> str:
    """The stage-table stage behind a DVC stage name: `sample_entropy@discs-2` and
    `sample_entropy_redrawn@discs-2-1` -> `sample`."""
    from mgdm.workflow.stages import STAGES

    name = dvc_stage.split("@")[0].removesuffix("_redrawn")
    return name if name in STAGES else name.rsplit("_", 1)[0]
