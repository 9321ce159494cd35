"""Snakemake and DVC describe one DAG: same stages, same outputs, both written from the stage table."""

import csv
import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, run, stage_of
from mgdm.config import load
from mgdm.workflow.stages import STAGES
from mgdm.workflow.plan import Plan


def snakemake_outputs(workdir, profile):
    res = run(["snakemake", "--config", f"profile={profile}", "--summary"], workdir)
    rows = csv.DictReader(io.StringIO(res.stdout[res.stdout.index("output_file"):]), delimiter="\t")
    return {(r["rule"], r["output_file"]) for r in rows}


def dvc_outputs(workdir, profile):
    run(["dvc", "init", "--no-scm", "-q"], workdir)
    run(["mgdm", "dvc-yaml", "--profile", profile], workdir)
    res = run(["python", "-c", "from dvc.repo import Repo\n"
               "for st in Repo('.').index.stages:\n"
               "    for o in st.outs: print(st.addressing, o, sep='\\t')"], workdir)
    return {(stage_of(name), out) for name, out in (line.split("\t") for line in res.stdout.splitlines())}


@pytest.mark.parametrize("profile", ["smoke", "cpu", "pilot", "paper-downstream", "draws"])  # grouped; redrawn
def test_snakemake_and_dvc_declare_the_same_outputs(tmp_workflow, profile):
    snake = snakemake_outputs(tmp_workflow, profile)
    dvc = dvc_outputs(tmp_workflow, profile)
    assert snake == dvc
    plan = Plan(load(ROOT / "params.yaml", profile))
    assert {rule for rule, _ in snake} == set(plan.stages)
    assert len(snake) == len(plan.targets())


def test_a_profile_on_another_generator_reuses_its_images_and_trains_its_own_networks():
    plan = Plan(load(ROOT / "params.yaml", "pilot"))
    assert plan.paths("sample", dataset="retinamnist", set="none")["none.npz"] == \
        "results/cpu/retinamnist/samples/none.npz"
    assert plan.command("sample") == "mgdm sample --params params.yaml --profile cpu --dataset {dataset} --set {set}"
    assert plan.deps("train_classifier") == ["results/cpu/{dataset}/data/dataset.npz",
                                             "results/cpu/{dataset}/samples/{set}.npz"]
    assert plan.outputs("train_baseline")[1] == "results/pilot/{dataset}/downstream/{network}/real/seed{seed}.json"
    # the generator samples every set; the pilot trains on its two, and reports those
    assert len(plan.generator.values["set"]) == 9 and plan.values["set"] == ["none", "entropy-s2"]
    report_deps = plan.deps("report")
    assert "results/cpu/retinamnist/fidelity/entropy-s2.json" in report_deps
    assert not any("margin" in d for d in report_deps)
    assert plan.settings("train_ddpm") == Plan(load(ROOT / "params.yaml", "cpu")).settings("train_ddpm")


def test_a_new_guidance_scale_reruns_only_its_own_set():
    from mgdm.config import resolve

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    before = Plan(resolve(raw, "cpu"))
    raw["profiles"]["cpu"]["sampling"]["scales"]["entropy"] = [2, 5.5]
    after = Plan(resolve(raw, "cpu"))
    assert "entropy-s5.5" in after.values["set"] and "entropy-s5.5" not in before.values["set"]
    for s in before.values["set"]:  # Snakemake's params trigger: unchanged for every set that was there
        assert after.settings("sample", dataset="retinamnist", set=s) == \
            before.settings("sample", dataset="retinamnist", set=s)
    assert after.settings("analyze", dataset="retinamnist") == before.settings("analyze", dataset="retinamnist")
    # DVC: the scale grid is read by DVC itself, one stage per guidance kind; its settings, key by key, are not it
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    sample = stages["sample_entropy"]
    assert sample["matrix"]["scale"] == "${defaults.sampling.scales.entropy}"
    assert sample["cmd"].endswith("--set entropy-s${item.scale}")
    assert stages["sample_bald"]["matrix"]["scale"] == "${profiles.cpu.sampling.scales.bald}"  # the cpu profile's
    tracked = sample["params"][0]["params.yaml"]
    assert "defaults.sampling.ddim_steps" in tracked and not any("scales" in k for k in tracked)
    assert "defaults.sampling" not in tracked
    assert "results/cpu/${item}/samples" in stages["analyze"]["do"]["deps"]  # gathers whatever sets exist


def test_a_set_is_named_by_its_scale_as_written():
    from mgdm.config import parse_set_name, set_name

    assert [set_name("entropy", s) for s in (2, 2.0, 0.5, 650)] == ["entropy-s2", "entropy-s2.0", "entropy-s0.5",
                                                                    "entropy-s650"]
    assert set_name("none", 0) == "none" and parse_set_name("entropy-s2.0") == ("entropy", 2.0)


def test_committed_dvc_yaml_is_the_generated_one(tmp_path):
    run(["mgdm", "dvc-yaml", "-o", str(tmp_path / "dvc.yaml")], ROOT)
    assert (tmp_path / "dvc.yaml").read_text() == (ROOT / "dvc.yaml").read_text(), \
        "dvc.yaml is stale: run `mgdm dvc-yaml`"


def test_committed_snakemake_rules_are_the_generated_ones_and_name_their_files(tmp_path):
    run(["mgdm", "smk", "-o", str(tmp_path / "stages.smk")], ROOT)
    text = (ROOT / "workflow/rules/stages.smk").read_text()
    assert (tmp_path / "stages.smk").read_text() == text, "workflow/rules/stages.smk is stale: run `mgdm smk`"
    assert all(f"rule {name}:" in text for name in STAGES)
    sample = text[text.index("rule sample:"):text.index("rule fidelity:")]
    assert 'f"{GEN}/{{dataset}}/samples/{{set}}.npz",' in sample  # a file name, as a reader looks for it
    analyze = text[text.index("rule analyze:"):text.index("rule report:")]
    assert 'expand(f"{GEN}/{{dataset}}/samples/{{set}}.npz", set=G["set"], allow_missing=True),' in analyze


def test_dvc_stages_track_their_params_and_commit_tables():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert stages["train_ddpm"]["do"]["params"] == [{"params.yaml": ["defaults.ddpm", "defaults.sampling.seed",
                                                                      "defaults.analysis.knn_k"]}]
    assert stages["preprocess"]["do"]["params"] == [{"params.yaml": ["datasets.${item}"]}]
    report_outs = stages["report"]["outs"]
    assert all(isinstance(o, dict) and list(o.values())[0] == {"cache": False} for o in report_outs)


def test_benchmark_writes_json_and_a_table_beside_the_peak_and_the_plain_way(tmp_path):
    import json

    params = yaml.safe_load((ROOT / "params.yaml").read_text())  # resnet18: the network with a textbook twin
    params["profiles"]["smoke"]["downstream"]["networks"] = ["resnet18"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    refused = run(["mgdm", "benchmark", "--profile", "smoke"], tmp_path, check=False)
    assert refused.returncode == 2 and "run `mgdm preprocess" in refused.stderr
    run(["mgdm", "preprocess", "--profile", "smoke", "--dataset", "discs", "--no-mlflow"], tmp_path)
    run(["mgdm", "benchmark", "--profile", "smoke", "--repeats", "1", "--variants"], tmp_path)
    result = json.loads((tmp_path / "results/bench/smoke.json").read_text())
    assert (result["channels"], result["classes"]) == (1, 3)  # the dataset's, not assumed
    assert result["peak"]["conv3x3_fp32_gflop_per_s"] > 0 and result["peak"]["matmul_fp32_gflop_per_s"] > 0
    start, end = result["peak_readings"]["start"], result["peak_readings"]["end"]  # the faster reading kept
    assert result["peak"] == {k: max(start[k], end[k]) for k in start} and set(end) == set(start)
    kernels = result["kernels"]
    assert set(kernels) >= {"ddpm_train_step", "sample_none", "sample_measure", "sample_cfg", "sample_mgdm",
                            "train_resnet18"}
    peak = result["peak"]["conv3x3_fp32_gflop_per_s"]
    for name in ("ddpm_train_step", "sample_measure", "sample_cfg", "train_resnet18"):
        k = kernels[name]
        # timed in turns: the ratio is the median of the rounds' ratios, its range theirs
        rounds = [p / m for p, m in zip(k["plain"]["times_s"], k["times_s"])]
        assert len(rounds) == 1 and k["vs_plain"] == pytest.approx(rounds[0]) and k["vs_plain_range"] == [rounds[0]] * 2
        assert k["plain"]["gflop"] >= 0.9 * k["gflop"]  # the plain way does at least the same work
    for k in kernels.values():
        assert k["fraction_of_peak"] == pytest.approx(k["gflop"] / k["median_s"] / peak)
    # the guidance net's forward and backward come on top of the UNet's forward
    m = kernels["sample_measure"]
    assert m["flop_ratio_vs_none"] == pytest.approx(m["gflop"] / kernels["sample_none"]["gflop"])
    assert m["flop_ratio_vs_none"] > 1.2
    variants = result["variants"]
    for kernel in ("sample_none", "sample_measure"):  # a speed-up that changes the samples is not one
        assert all(v["max_abs_diff"] < 1e-4 and v["speedup"] > 0 for v in variants[kernel].values()
                   if isinstance(v, dict))
    assert set(variants["train_resnet18"]) == {"eager_s", "channels_last", "compile"}
    runs = variants["train_resnet18 x2 runs"]  # torch.func's stacked runs take the steps the runs take alone
    assert runs["stacked"]["max_abs_diff"] < 1e-5
    assert runs["stacked"]["speedup"] == pytest.approx(runs["eager_s"] / runs["stacked"]["median_s"])  # 1 round
    placement = variants["thread_placement"]
    for tp in placement.values():  # one round (--repeats 1): its ratio is the medians'
        assert tp["speedup"] == pytest.approx(tp["two_1thread_jobs_per_s"] / tp["one_2thread_job_per_s"])
        assert tp["speedup_range"] == [tp["speedup"]] * 2
    assert placement["sample_measure"]["max_abs_diff_1_vs_2_threads"] < 1e-4
    # the overhead model's arithmetic: smoke has 3 epochs, 1 seed, 6 sets, a state every epoch (checkpoint_s 0)
    o = result["overhead"]
    assert o["jobs_per_group"] == 1 + 6
    n = o["networks"]["resnet18"]
    assert n["old_overhead_s"] == pytest.approx(o["process_start_s"] + 3 * n["state_write_s"])
    assert n["new_overhead_s"] == pytest.approx(o["process_start_s"] / 7 + 2 * n["state_write_s"])
    assert o["mix"]["old_fraction"] == pytest.approx(n["old_overhead_s"] / n["train_s"])
    table = (tmp_path / "results/bench/smoke.md").read_text()
    assert "| ddpm_train_step |" in table and "| sample_none | compile |" in table and "Thread placement" in table
    assert "| train_resnet18 x2 runs | stacked |" in table
    assert "| resnet18 |" in table and "| the mix |" in table
    ddpm = kernels["ddpm_train_step"]
    if "bf16" in ddpm:  # where the CPU has it: fp32's seconds over bf16's, in the one round
        assert ddpm["bf16"]["vs_fp32"] == pytest.approx(ddpm["times_s"][0] / ddpm["bf16"]["times_s"][0])
        assert "Under bf16 autocast the DDPM training step is" in table


def test_kernels_are_timed_in_turns_so_a_drift_falls_on_each_alike():
    from mgdm.tools.timing import ratio, timed_in_turns

    calls = []
    out = timed_in_turns({k: (lambda k=k: calls.append(k)) for k in "abc"}, repeats=4, warmup=1)
    # warm-up once each, then rounds that start one further along: abc, bca, cab, abc
    assert "".join(calls) == "abc" + "abc" + "bca" + "cab" + "abc"
    assert set(out) == {"a", "b", "c"} and all(t["repeats"] == 4 and t["min_s"] <= t["median_s"] <= t["max_s"]
                                               for t in out.values())
    r = ratio({"times_s": [2.0, 3.0, 9.0]}, {"times_s": [1.0, 2.0, 3.0]})  # round by round: 2, 1.5, 3
    assert r == {"median": 2.0, "min": 1.5, "max": 3.0}  # not 3.0 / 2.0, the ratio of the medians


def test_device_benchmark_runs_on_the_cpu_and_prices_the_grid_from_its_step_count(tmp_path):
    """`mgdm benchmark --device` is what a lent GPU runs first: its first bug should not cost device time."""
    import json

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    run(["mgdm", "preprocess", "--profile", "smoke", "--dataset", "discs", "--no-mlflow"], tmp_path)
    run(["mgdm", "benchmark", "--profile", "smoke", "--device", "cpu", "--repeats", "1"], tmp_path)
    r = json.loads((tmp_path / "results/bench/smoke-cpu.json").read_text())
    assert (r["n_train"], r["batch_size"], r["epochs"], r["runs_per_network"]) == (240, 64, 3, 7)
    n = r["networks"]["convnext_atto"]
    # 3 epochs of ceil(240 / 64) = 4 batches on real-only, and on real + each of 6 sets of 4 x 3 classes
    # (ceil(252 / 64) = 4): 7 runs x 12 steps
    assert n["grid_steps"] == 84
    assert n["vs_old"] == pytest.approx(n["old_step_s"] / n["step_s"])  # one round: its ratio is the medians'
    assert n["grid_s"] == pytest.approx(84 * n["step_s"]) and n["old_grid_s"] == pytest.approx(84 * n["old_step_s"])
    assert n["tflop_per_s"] == pytest.approx(n["gflop_per_step"] / 1e3 / n["step_s"])
    assert n["fraction_of_bf16_peak"] == pytest.approx(n["tflop_per_s"] / r["peak"]["bf16_tflop_per_s"])
    assert r["grid"]["steps_s"] == pytest.approx(n["grid_s"])
    assert "| convnext_atto |" in (tmp_path / "results/bench/smoke-cpu.md").read_text()


def test_plan_prints_every_stage_and_a_total():
    res = run(["mgdm", "plan", "--profile", "cpu"], ROOT)
    stages = Plan(load(ROOT / "params.yaml", "cpu")).stages
    assert all(stage in res.stdout for stage in stages) and "total: about" in res.stdout
    assert "train_group" not in res.stdout  # cpu trains one job per run
    assert "job time (on CPU cores)" in res.stdout and "measures the card" not in res.stdout
    gpu = run(["mgdm", "plan", "--profile", "paper-downstream"], ROOT).stdout  # CPU unit costs price no card
    assert "device cuda: the minutes here are what CPU cores would take; `mgdm benchmark --profile " \
           "paper-downstream --device cuda` measures the card" in gpu


def test_plan_schedules_the_jobs_as_snakemake_starts_them():
    from mgdm.workflow.estimate import makespan

    # the study's five train_group jobs as measured on 2 idle cores (README, The study): dearest first, they end
    # at 5,873 s (the measured 98 min); on one core, one after the other
    groups = [("train_group", "d", s, 1, s / 5025 - 1) for s in (886, 5025, 1848, 848, 2991)]
    assert makespan(groups, 2) == pytest.approx(5873) and makespan(groups, 1) == pytest.approx(11598)
    # what each stage waits for comes from the stage table: the DDPM (2 threads) reads the reference net, and
    # the sets read the DDPM and the guidance net
    jobs = [("preprocess", "d", 1, 1, 0), ("train_reference_net", "d", 4, 1, 0), ("train_guidance_net", "d", 6, 1, 5),
            ("train_ddpm", "d", 10, 2, 10), ("sample", "d", 3, 1, 5), ("sample", "d", 3, 1, 5)]
    assert makespan(jobs, 2) == 20  # the two nets side by side from 1, the DDPM from 7 (both cores), the sets at 17
    assert makespan(jobs, 4) == 18  # the DDPM from 5, beside the guidance net


def test_plan_costs_a_network_from_the_profiles_own_zoo_survey(tmp_path):
    import json
    import re
    import shutil

    shutil.copy(ROOT / "params.yaml", tmp_path)

    def minutes():
        out = run(["mgdm", "plan", "--profile", "study"], tmp_path).stdout
        # the study trains grouped (one train_group job per network); a per-run profile has train_classifier
        return out, float(re.search(r"train_(?:classifier|group)\s+\d+\s+([\d.]+)", out).group(1))

    before, constant = minutes()
    survey = tmp_path / "results/study/retinamnist/zoo/convnext_atto.json"  # the study's own survey
    survey.parent.mkdir(parents=True)
    survey.write_text(json.dumps({"s_per_epoch": 1000.0}))
    after, measured = minutes()
    assert "from the zoo survey" not in before and "downstream cost of convnext_atto from the zoo survey" in after
    assert measured > constant  # 1,000 s an epoch is dearer than the ResNet-18 constant
    # a fresh clone has the survey's committed record only (the generator's here: the study's images are cpu's)
    survey.unlink()
    record = tmp_path / "results/cpu/records/zoo.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"dataset": "retinamnist", "majority": 0.4,
                                  "networks": [{"network": "convnext_atto", "s_per_epoch": 1000.0}]}))
    from_record, cost = minutes()
    assert "downstream cost of convnext_atto from the zoo survey" in from_record and cost == measured
    record.write_text(json.dumps({"dataset": "pneumoniamnist", "majority": 0.4,  # another dataset's survey
                                  "networks": [{"network": "convnext_atto", "s_per_epoch": 1000.0}]}))
    elsewhere, cost = minutes()
    config = load(ROOT / "params.yaml", "study")
    sizes = {d: Path(config.data_dir() or "/nonexistent") / config.dataset(d).file
             for d in ("retinamnist", "pneumoniamnist")}
    if all(p.exists() for p in sizes.values()):  # its cost per image there, priced on this dataset's images
        n = {d: len(np.load(p)["train_labels"]) for d, p in sizes.items()}
        per_epoch = 1000.0 * n["retinamnist"] / n["pneumoniamnist"]
        c0 = 0.025 * n["retinamnist"]  # the ResNet-18 constant's epoch
        assert cost - constant == pytest.approx((measured - constant) * (per_epoch - c0) / (1000.0 - c0), abs=0.2)
        assert "per image from the zoo survey on another dataset (results/cpu on pneumoniamnist)" in elsewhere
    else:  # its training split is not here to count: the constant
        assert cost == constant and "another dataset" not in elsewhere
    # neither its own nor its generator's: another profile's survey of the same dataset, named
    other = tmp_path / "results/architectures/records/zoo.json"
    other.parent.mkdir(parents=True)
    other.write_text(json.dumps({"dataset": "retinamnist", "majority": 0.4,
                                 "networks": [{"network": "convnext_atto", "s_per_epoch": 1000.0}]}))
    from_other, cost = minutes()
    assert cost == measured and "from the zoo survey (results/architectures: another profile's)" in from_other


def test_plan_prices_sampling_as_the_committed_cpu_run_measured_it():
    """The sampling costs are calibrated on the `cpu` run's sample jobs (1 thread each): the plan's sample row
    gives back their committed total (the old constants said 11 min against 41)."""
    import json
    import re

    runtime = json.loads((ROOT / "results/cpu/records/images.json").read_text())["runtime"]
    measured = sum(r["wall_s"] for r in runtime if r["stage"] == "sample") / 60
    out = run(["mgdm", "plan", "--profile", "cpu"], ROOT).stdout
    estimated = float(re.search(r"sample\s+9\s+([\d.]+)", out).group(1))
    assert abs(estimated - measured) / measured < 0.05, (estimated, measured)


def test_every_command_and_option_says_what_it_does_with_an_example():
    import argparse

    from mgdm.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in sub._choices_actions}
    for command, parser in sub.choices.items():
        assert helps[command] and not helps[command].startswith("run stage"), command
        assert f"mgdm {command}" in f"{parser.epilog} {helps[command]}", f"{command}: no example"
        for action in parser._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"mgdm {command} {action.option_strings}: no help"
        # seeds are settings in params.yaml; --seed is offered only where it picks the job (a downstream seed)
        has_seed = any("--seed" in a.option_strings for a in parser._actions)
        stage = STAGES.get(command.replace("-", "_"))
        assert has_seed == (stage is not None and "seed" in stage.matrix), f"mgdm {command}: --seed"


def test_snakemake_lint_is_clean_and_the_config_is_validated_against_the_schema(tmp_workflow):
    res = run(["snakemake", "--lint", "--config", "profile=smoke"], tmp_workflow)
    assert "good condition" in res.stdout + res.stderr
    params = tmp_workflow / "params.yaml"
    params.write_text(params.read_text().replace("data_dir: null", "data_dir: [not, a, folder]"))
    bad = run(["snakemake", "-n", "--config", "profile=smoke"], tmp_workflow, check=False)
    said = (bad.stdout + bad.stderr).splitlines()
    # the field and the problem in a few lines, not the JSON schema (hundreds of lines) that validate() prints
    assert bad.returncode != 0 and "  data_dir: Input should be a valid string" in said and len(said) < 12, said


def test_the_jobs_read_the_params_file_the_dag_was_planned_from(tmp_workflow):
    """`--configfile` names the params file every job reads; a merge the jobs would not see is refused."""
    raw = yaml.safe_load((tmp_workflow / "params.yaml").read_text())
    raw["profiles"]["smoke"]["downstream"]["epochs"] = 5
    del raw["profiles"]["study"]  # a whole file of its own: Snakemake would merge params.yaml's study back in
    (tmp_workflow / "mine.yaml").write_text(yaml.safe_dump(raw))
    ok = run(["snakemake", "-n", "-p", "--configfile", "mine.yaml", "--replace-workflow-config", "--config",
              "profile=smoke"], tmp_workflow)
    commands = [line for line in (ok.stdout + ok.stderr).splitlines() if "mgdm " in line]
    assert commands and all(" --params mine.yaml --profile smoke " in c for c in commands), commands
    (tmp_workflow / "part.yaml").write_text(yaml.safe_dump({"profiles": {"smoke": {"downstream": {"epochs": 5}}}}))
    for args, where in ((["part.yaml"], "part.yaml: .* differs from it at data_dir:"),
                        (["mine.yaml"], "mine.yaml: .* differs from it at profiles.study:")):
        bad = run(["snakemake", "-n", "--configfile", *args, "--config", "profile=smoke"], tmp_workflow, check=False)
        said = (bad.stdout + bad.stderr).splitlines()
        assert bad.returncode != 0 and any(re.search(where, line) for line in said) and len(said) < 12, said
