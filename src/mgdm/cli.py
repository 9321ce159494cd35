"""`mgdm <command>`: the one way every stage runs, for Snakemake, DVC and people alike.

The CLI only parses, and checks a tool's configuration before importing it. A stage command runs through
mgdm.workflow.runner, which finds the stage's module in the stage table (mgdm.stages.<stage>); the other
commands run their module's `main` (mgdm.workflow.* for the DAG's glue, mgdm.tools.* for the commands outside
the DAG). Modules are imported when their command runs, so `mgdm --help` does not import torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from mgdm.config import NETWORKS, ConfigError
from mgdm.interrupts import Interrupted, interruptible
from mgdm.workflow import tracking
from mgdm.workflow.stages import STAGES

TOOLS = ("benchmark", "sweep-generator", "calibrate-scales", "survey-zoo", "training-length", "power",
         "legacy-networks", "prior-shift", "copies-control", "set-draws")


def bounded(kind=int, low: float = 1, strict: bool = False):
    """An argparse type: a `kind` of at least `low` (above it if `strict`): 0 workers, cores or minutes mean nothing."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not (value > low if strict else value >= low):  # (NaN fails both)
            raise argparse.ArgumentTypeError(f"{text} must be {'>' if strict else '>='} {low:g}")
        return value

    return parse


COUNT, THREADS = bounded(int, 1), bounded(int, 0)


WILDCARD_ARGS = {"dataset": str, "set": str, "network": str, "seed": int}
WILDCARD_HELP = {"dataset": "a dataset of the profile (params.yaml `datasets`), e.g. retinamnist",
                 "set": "a synthetic set: `none` or <guidance>-s<scale> from sampling.scales, e.g. entropy-s2",
                 "network": "a zoo network of downstream.networks, e.g. resnet18",
                 "seed": "a downstream seed of downstream.seeds (initialisation and data order)"}
STAGE_HELP = {
    "preprocess": ("read a dataset (MedMNIST .npz, image folder or generated), check it, write its splits",
                   "--dataset retinamnist"),
    "train_ddpm": ("train the class-conditional DDPM with the fidelity probe; resumes from its last checkpoint",
                   "--dataset retinamnist"),
    "train_guidance_net": ("train the noise-conditioned classifier that guidance differentiates; resumes",
                           "--dataset retinamnist"),
    "train_reference_net": ("train the reference classifier whose features score fidelity and distributions",
                            "--dataset retinamnist"),
    "sample": ("draw one synthetic set with guided DDIM (or MGDM's two stages)",
               "--dataset retinamnist --set entropy-s2"),
    "fidelity": ("score one synthetic set against the real training split, beside the held-out floor",
                 "--dataset retinamnist --set entropy-s2"),
    "train_baseline": ("train a downstream network on real images only and score it on the test split",
                       "--dataset retinamnist --network resnet18 --seed 0"),
    "train_classifier": ("train a downstream network on real + one synthetic set and score it on the test split",
                         "--dataset retinamnist --network resnet18 --set entropy-s2 --seed 0"),
    "train_group": ("train every run of one network (real-only and each set, each seed) in one process; runs "
                    "whose inputs did not change are restored from the run cache",
                    "--dataset retinamnist --network resnet18"),
    "analyze": ("compare every set with the real data in the reference net's features (entropy, density, ...)",
                "--dataset retinamnist"),
    "report": ("write the tables (markdown, LaTeX) and summary figures from every job's metrics", ""),
}


def write_schema(a) -> int:
    import json

    from mgdm.config import Params, Profile

    # params.yaml's own schema (Snakemake validates the config against it); a profile (`defaults` deep-merged
    # with `profiles.<name>`) is documented under $defs/Profile, and validated by mgdm itself (pydantic).
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **Params.model_json_schema()}
    profile = Profile.model_json_schema()
    schema["$defs"] = {**schema.get("$defs", {}), **profile.pop("$defs", {}), "Profile": profile}
    schema["description"] = "mgdm params.yaml: `defaults` and each of `profiles` deep-merge into a $defs/Profile."
    Path(a.output).write_text(json.dumps(schema, indent=2) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mgdm", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, stage in STAGES.items():
        about, example = STAGE_HELP[name]
        command = name.replace("_", "-")
        p = sub.add_parser(command, help=about, description=f"Stage {name}: {about}.",
                           epilog=f"example: mgdm {command} --profile cpu {example}".rstrip())
        p.set_defaults(stage=name)
        for w in stage.matrix:
            p.add_argument(f"--{w}", type=WILDCARD_ARGS[w], required=True, help=WILDCARD_HELP[w])
        if name == "report":
            p.add_argument("--images-only", action="store_true", help="only the tables of the images (fidelity, "
                           "distribution, guidance net), before any downstream network is trained")
            p.add_argument("--seeds", type=int, nargs="+", default=None, help="report only these of "
                           "downstream.seeds, e.g. the ones finished so far of a long study (default: all); "
                           "the tables name the seeds they cover")
            p.add_argument("--networks", nargs="+", default=None, help="report only these of "
                           "downstream.networks, e.g. the ones a GPU lease finished (default: all)")
            p.add_argument("--from-records", action="store_true", help="rebuild the tables and figures from the "
                           "committed records (records/runs.csv, records/images.json) alone, e.g. in a fresh clone")
        p.add_argument("--threads", type=THREADS, default=0, help="torch threads (0: torch's default)")
        p.add_argument("--device", default=None, help="run on this device instead of the profile's `device`, "
                       "e.g. cuda on a lent GPU (the metrics JSON names the machine)")
        p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
        p.add_argument("--no-mlflow", action="store_true", default=not tracking.enabled(),
                       help="skip MLflow logging (the default where MGDM_NO_MLFLOW is set)")
    d = sub.add_parser("dvc-yaml", help="write dvc.yaml for a profile from the stage table",
                       epilog="example: mgdm dvc-yaml --profile smoke && dvc repro")
    d.add_argument("-o", "--output", default="dvc.yaml", help="where to write it ('-': standard output)")
    d.set_defaults(func="mgdm.workflow.dvc")
    sm = sub.add_parser("smk", help="write workflow/rules/stages.smk (one Snakemake rule per stage) from the "
                        "stage table", epilog="example: mgdm smk")
    sm.add_argument("-o", "--output", default="workflow/rules/stages.smk", help="where to write it ('-': standard "
                    "output)")
    sm.set_defaults(func="mgdm.workflow.smk")
    sc = sub.add_parser("schema", help="write the JSON schema of params.yaml (for editors and reviewers)",
                        epilog="example: mgdm schema -o workflow/schemas/params.schema.json")
    sc.add_argument("-o", "--output", default="workflow/schemas/params.schema.json", help="where to write it")
    sc.set_defaults(func=write_schema)
    b = sub.add_parser("benchmark", help="measure training and sampling throughput of a profile, as JSON",
                       epilog="example: mgdm benchmark --profile cpu --repeats 5")
    b.add_argument("-o", "--output", default=None, help="the JSON to write (default results/bench/<profile>.json; "
                   "a markdown table is written beside it)")
    b.add_argument("--repeats", type=COUNT, default=3, help="timed repeats per figure (the median is reported)")
    b.add_argument("--variants", action="store_true", help="also time channels_last, torch.compile, inference_mode "
                   "and thread placement beside the eager figures (compilation takes minutes)")
    b.add_argument("--device", default=None, help="instead, the downstream grid's training step on this device "
                   "(e.g. cuda): the grid trainer's step against the old loop's, FLOPs, the measured bf16 peak, "
                   "and the grid's cost (default results/bench/<profile>-<device>.json)")
    b.set_defaults(func="mgdm.tools.benchmark")
    sw = sub.add_parser("sweep-generator", help="compare DDPM recipe variants at equal wall clock with the "
                        "fidelity probe; e.g. mgdm sweep-generator --profile cpu --variant baseline")
    sw.add_argument("--variant", action="append", default=[], help="run only this variant (repeatable)")
    sw.add_argument("--table-only", action="store_true",
                    help="only rewrite the table and figure from finished variants")
    sw.add_argument("--no-progress", action="store_true", help="no progress bars")
    sw.set_defaults(func="mgdm.tools.generator_sweep")
    cs = sub.add_parser("calibrate-scales", help="how far each guidance measure moves a sample per unit scale, "
                        "along unguided DDIM trajectories, and the scale that matches a reference measure",
                        epilog="example: mgdm calibrate-scales --profile cpu --reference entropy")
    cs.add_argument("--reference", default="entropy", help="the measure whose first scale the others are matched to")
    cs.add_argument("--images", type=COUNT, default=50, help="trajectories to average over (classes in turn)")
    cs.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    cs.set_defaults(func="mgdm.tools.calibrate_scales")
    z = sub.add_parser("survey-zoo", help="train each zoo network briefly on real data: seconds per epoch and test "
                       "ACC/AUC, near-chance networks flagged; e.g. mgdm survey-zoo --profile cpu --network resnet18")
    z.add_argument("--network", action="append", default=[], choices=NETWORKS, metavar="NETWORK",
                   help="survey only this zoo network (repeatable)")
    z.add_argument("--table-only", action="store_true", help="only rewrite the table from surveyed networks")
    z.add_argument("--no-progress", action="store_true", help="no progress bars")
    z.set_defaults(func="mgdm.tools.zoo_survey")
    tl = sub.add_parser("training-length", help="train downstream networks on real data at each length of "
                        "training_length.epochs: best validation AUC per length, and the shortest length after which "
                        "it stops improving; e.g. mgdm training-length --profile converged --network densenet121")
    tl.add_argument("--network", action="append", default=[], choices=NETWORKS, metavar="NETWORK",
                    help="only this zoo network (repeatable)")
    tl.add_argument("--table-only", action="store_true", help="only rewrite the table and figure from finished runs")
    tl.add_argument("--no-progress", action="store_true", help="no progress bars")
    tl.set_defaults(func="mgdm.tools.training_length")
    pw = sub.add_parser("power", help="design a study from a profile's run records: variance components (seed, "
                        "network x set) of paired accuracy changes, then per design (networks x seeds) the "
                        "network-level half-width, the power at 1, 1.5 and 3 points and the minutes; "
                        "e.g. mgdm power --profile pilot --budget-min 150")
    pw.add_argument("--sets", type=COUNT, default=3, help="synthetic sets each pair compares with real-only")
    pw.add_argument("--budget-min", type=bounded(float, 0, strict=True), default=150,
                    help="wall-clock budget of the study, minutes")
    pw.add_argument("--parallel", type=COUNT, default=2, help="downstream jobs side by side (e.g. --cores)")
    pw.set_defaults(func="mgdm.tools.power")
    ln = sub.add_parser("legacy-networks", help="network-level inference for a profile reported before run "
                        "records were kept, from the per-network means of its committed downstream table; "
                        "e.g. mgdm legacy-networks --profile study")
    ln.set_defaults(func="mgdm.tools.legacy_networks")
    ps = sub.add_parser("prior-shift", help="is a synthetic set's downstream gain its class prior? each real-only "
                        "run's test probabilities moved by Bayes' rule to the class prior of real + the set, then "
                        "paired with the set's runs; e.g. mgdm prior-shift --profile quantity-pneumonia")
    ps.add_argument("--from-records", action="store_true", help="rebuild the table from the committed records "
                    "(records/runs.csv, records/priors.npz) alone, e.g. in a fresh clone")
    ps.set_defaults(func="mgdm.tools.prior_shift")
    cc = sub.add_parser("copies-control", help="is a synthetic set better than as many real images, copied? trains "
                        "each network and seed on real + real copies drawn to each set's class counts, then pairs "
                        "each set with its control; e.g. mgdm copies-control --profile quantity-pneumonia")
    cc.add_argument("--networks", nargs="+", default=None, help="train only these networks' control runs "
                    "(e.g. one process per network); the table is written once every run has finished")
    cc.add_argument("--seeds", type=int, nargs="+", default=None, help="train only these seeds' control runs")
    cc.add_argument("--from-records", action="store_true", help="rebuild the table from the committed records "
                    "(records/runs.csv, records/copies.csv) alone, e.g. in a fresh clone")
    cc.add_argument("--no-progress", action="store_true", help="no progress bars")
    cc.set_defaults(func="mgdm.tools.copies_control")
    sd = sub.add_parser("set-draws", help="is the draw of a set a random factor? from a profile's runs on several "
                        "draws of each set (sampling.redraws): each draw alone, the draw's variance component and "
                        "its F test, and each comparison over networks and draws; e.g. mgdm set-draws --profile draws")
    sd.set_defaults(func="mgdm.tools.set_draws")
    cr = sub.add_parser("compare-runs", help="did a rerun reproduce a profile's runs? two run records compared run "
                        "by run: identical test predictions, largest metric differences, wall clock; e.g. "
                        "mgdm compare-runs results/study/records ../rerun/results/study/records")
    cr.add_argument("a", help="run records: a records/runs.csv, or the records folder holding it")
    cr.add_argument("b", help="the other run records, or a downstream.md table (cell means over the seeds its "
                    "caption names) for runs kept only as a table")
    cr.add_argument("--exact", action="store_true", help="exit 1 unless every run both hold is identical")
    cr.add_argument("--out", default=None, help="also write the comparison as OUT.md and OUT.tex")
    cr.set_defaults(func="mgdm.tools.compare_runs")
    j = sub.add_parser("jobs", help="run a profile's downstream jobs (train-baseline, train-classifier) in worker "
                       "processes without Snakemake, e.g. many small jobs on one GPU; finished jobs are skipped",
                       epilog="example: mgdm jobs --profile paper-downstream --workers 8 --deadline-min 7")
    j.add_argument("--workers", type=COUNT, default=2, help="jobs side by side (each on one torch thread)")
    j.add_argument("--deadline-min", type=bounded(float, 0), default=None, help="start no job after this many minutes "
                   "(0: list the jobs and start none)")
    j.add_argument("--networks", nargs="+", default=None, help="only these networks' jobs (default: all)")
    j.add_argument("--seeds", type=int, nargs="+", default=None, help="only these seeds' jobs (default: all)")
    j.add_argument("--device", default=None, help="run the jobs on this device instead of the profile's, e.g. "
                   "a CPU-designed study on a lent GPU (each run's JSON names the machine)")
    j.set_defaults(func="mgdm.workflow.jobs")
    pl = sub.add_parser("plan", help="print the jobs of a profile and their estimated wall clock",
                        epilog="example: mgdm plan --profile pneumonia")
    pl.add_argument("--cores", type=COUNT, default=2,
                    help="the cores the wall clock is scheduled on (snakemake --cores)")
    pl.set_defaults(func="mgdm.workflow.estimate")
    for name, p in sub.choices.items():
        if name in ("compare-runs", "smk", "schema"):  # two record files; the stage table; the params model
            continue
        p.add_argument("--params", default="params.yaml", help="the configuration file (default params.yaml)")
        p.add_argument("--profile", default=None, help="profile in params.yaml (default: its `profile` key)")
        if name in TOOLS:  # the commands outside the DAG work on one dataset, on a chosen number of threads
            p.add_argument("--dataset", default=None, help="dataset (default: the profile's first)")
            if name not in ("power", "prior-shift", "set-draws"):
                p.add_argument("--threads", type=THREADS, default=0, help="torch threads (0: torch's default)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    picked = [f"--{o}" for o in ("seeds", "networks") if getattr(a, o, None)]
    if getattr(a, "from_records", False) and picked:  # else they would be ignored without a word
        parser.error(f"{' and '.join(picked)} choose{'s' * (len(picked) == 1)} the runs to gather or train; "
                     "--from-records rebuilds from the committed records as they are")
    try:
        if not hasattr(a, "func"):
            from mgdm.workflow.runner import run_stage

            return run_stage(a.stage, a)  # it says how a job ended by a signal, and removes its outputs
        with interruptible():
            if a.command in TOOLS:  # the configuration first: a tool's module takes seconds to import (torch, ...)
                from mgdm.tools import open_tool

                open_tool(a)
            if isinstance(a.func, str):
                return importlib.import_module(a.func).main(a)
            return a.func(a)
    except Interrupted as err:
        print(f"mgdm {a.command}: {err}", file=sys.stderr)
        return 128 + err.signum
    except (ValueError, FileNotFoundError) as err:
        if not isinstance(err, (ConfigError, FileNotFoundError)):
            from mgdm.files import FileError  # here, not at the top: it imports torch, which a bad config need not

            if not isinstance(err, FileError):
                raise
        print(f"mgdm: error: {err}", file=sys.stderr)  # bad input to a tool: one line, as the stages say it
        return 2


if __name__ == "__main__":
    sys.exit(main())
