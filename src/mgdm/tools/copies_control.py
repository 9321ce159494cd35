"""`mgdm copies-control`: the oversampling control (mgdm.analysis.controls): is a synthetic set better than as many
real images, copied?

For each distinct class count of the profile's downstream sets it draws that many real training images,
with replacement within each class (seed 0), into <root>/<dataset>/controls/copies-<counts>.npz, and trains
every network and seed of the profile on real + those copies exactly as a set's run trains (the grid trainer,
the profile's settings; a finished run is skipped, a killed one resumes). When every control run has finished
it writes records/copies.csv (one row per run, as runs.csv; `for_sets`: the sets it controls), then
tables/copies_control.md and .tex and figures/copies_control.png from the records alone; `--from-records`
rebuilds them in a fresh clone.
"""

from __future__ import annotations

from pathlib import Path

from mgdm.tools import open_tool, set_class_counts

RECORD = "copies.csv"


def controls(config, plan, name: str, classes: int) -> dict[str, tuple[list[int], list[str]]]:
    """{control label: (class counts, the sets with those counts)} of the profile's downstream sets."""
    from mgdm.analysis.controls import control_label

    out: dict[str, tuple[list[int], list[str]]] = {}
    for s, counts in set_class_counts(config, plan, name, classes).items():
        out.setdefault(control_label(counts), (counts.tolist(), []))[1].append(s)
    return out


def copies_name(counts: list[int]) -> str:
    return f"copies-{'-'.join(map(str, counts))}"


def run_base(folder: Path, network: str, counts: list[int], seed: int) -> Path:
    """A control run's files, less their suffix: <folder>/<network>/copies-<counts>/seed<k>."""
    return folder / network / copies_name(counts) / f"seed{seed}"


def train(config, plan, name: str, networks: list[str], seeds: list[int], progress: bool) -> dict:
    """Train every control run not yet finished; return the controls."""
    from mgdm.analysis.controls import draw_copies
    from mgdm.classifiers.score import Job, train_and_score_group
    from mgdm.data.splits import Dataset
    from mgdm.files import write_json, write_npz
    from mgdm.machine import cpu_threads, device_name

    dataset = Dataset(plan.dataset_file(name))
    images, labels = dataset.numpy("train")
    folder = Path(plan.root) / name / "controls"
    found = controls(config, plan, name, dataset.num_classes)
    device = config.profile.device
    for counts, _ in found.values():
        path = folder / f"{copies_name(counts)}.npz"
        if not path.exists():  # drawn once; the same draw every time (seed 0)
            idx = draw_copies(labels, counts)
            write_npz(path, images=images[idx], labels=labels[idx])
    for network in networks:
        todo = [(run_base(folder, network, counts, seed), Job(seed, folder / f"{copies_name(counts)}.npz"))
                for counts, _ in found.values() for seed in seeds
                if not run_base(folder, network, counts, seed).with_suffix(".json").exists()]
        for base, job in todo:
            job.predictions_path, job.resume_path = f"{base}_test.npz", f"{base}.resume.safetensors"
        results = train_and_score_group(dataset, network, config.profile.downstream, [j for _, j in todo], device,
                                        progress)
        for (base, job), r in zip(todo, results):
            write_json(base.with_suffix(".json"), {**r["metrics"], "wall_s": r["wall_s"],
                                                   "machine": device_name(device), "threads": cpu_threads(device)})
            print(f"mgdm copies-control: {network} seed {job.seed} {Path(job.synthetic).stem}: "
                  f"acc {r['metrics']['acc']:.3f} in {r['wall_s']:.0f} s", flush=True)
    return found


def gather(config, plan, name: str, found: dict) -> list[dict] | None:
    """One record per control run of the whole profile, or None while some have not run."""
    from mgdm.analysis.controls import correct_string
    from mgdm.analysis.tables import GRADING
    from mgdm.classifiers.zoo import NETWORKS
    from mgdm.files import read_json, read_npz

    folder, p = Path(plan.root) / name / "controls", config.profile
    rows = []
    for label, (counts, sets) in found.items():
        for network in p.downstream.networks:
            for seed in p.downstream.seeds:
                base = run_base(folder, network, counts, seed)
                if not base.with_suffix(".json").exists():
                    return None
                m, f = read_json(base.with_suffix(".json")), read_npz(f"{base}_test.npz")
                rows.append({"dataset": name, "network": network,
                             "adaptation": NETWORKS[network].adaptation(config.dataset(name).image_size),
                             "set": label, "seed": seed, "epochs": p.downstream.epochs,
                             **{k: m.get(k) for k in GRADING},
                             **{k: m.get(k) for k in ("best_epoch", "n_real", "n_synthetic", "wall_s", "machine")},
                             "test_correct": correct_string(f["probs"], f["labels"]),
                             "threads": m.get("threads"), "for_sets": " ".join(sets)})
    return rows


def main(a) -> int:
    import pandas as pd

    from mgdm.analysis.controls import copies_table, write_control
    from mgdm.analysis.tables import read_runs
    from mgdm.files import atomic_path

    config, plan, name = open_tool(a)
    p = config.profile
    records = Path(plan.paths("report")["runs.csv"]).parent
    runs = read_runs(records / "runs.csv")
    if not a.from_records:
        found = train(config, plan, name, config.chosen("networks", a.networks), config.chosen("seeds", a.seeds),
                      not a.no_progress)
        rows = gather(config, plan, name, found)
        if rows is None:
            print("mgdm copies-control: some control runs of the profile have not run yet; the records and the table "
                  "are written once every one has (run the other networks, or wait for them)")
            return 0
        with atomic_path(records / RECORD) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
    copies = read_runs(records / RECORD)
    mapping = {s: label for label, sets in zip(copies["train set"], copies["for_sets"]) for s in sets.split()}
    table = copies_table(pd.concat([runs, copies], ignore_index=True), mapping, name, p.inference.margin,
                         p.inference.alpha)
    caption = (f"Is a synthetic set better than as many real images, copied? (profile `{p.name}`, {name}; from "
               f"{records}/runs.csv and {records}/{RECORD}.) `real copies (counts)`: real training images drawn "
               "with replacement within each class to a set's class counts and added to the real split, trained "
               "as the set's runs are (same size, so the same data order and steps for a seed, and the same class "
               "prior). Rows: each control against real-only, then each set against its control (what its "
               "synthetic images add beyond as many real copies), paired on (network, seed) under both "
               f"inferences, Holm over the table per inference, verdicts against a {p.inference.margin:g}-point "
               "margin as in paired.md.")
    write_control(table, plan.root, "copies_control", caption, p.inference.margin)
    return 0
