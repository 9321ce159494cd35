"""params.yaml: every profile validates; bad values fail with a message naming the field."""

import copy
import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from mgdm.config import ConfigError, load, parse_set_name, redrawn, resolve, set_draw, set_multiple, set_name

RAW = yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.mark.parametrize("profile", sorted(RAW["profiles"]))
def test_every_profile_validates(profile):
    config = load(ROOT / "params.yaml", profile)
    assert config.sample_sets()[0] == "none"
    for name in config.sample_sets():  # every set's name says its guidance, scale and size, and back
        guidance, scale = parse_set_name(name)
        assert scale in [float(v) for v in config.profile.sampling.scales[guidance]]
        assert name in (set_name(guidance, v, set_multiple(name), set_draw(name))
                        for v in config.profile.sampling.scales[guidance])


def broken(path: list[str], value):
    raw = copy.deepcopy(RAW)
    node = raw
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return raw


@pytest.mark.parametrize("path,value,needle", [
    (["defaults", "ddpm", "steps"], -5, "ddpm.steps"),
    (["defaults", "sampling", "scales"], {"entropy": [-1.0]}, "scales"),
    (["defaults", "sampling", "scales"], {"wishful": [1.0]}, "unknown guidance 'wishful'"),
    (["defaults", "downstream", "networks"], ["resnet9000"], "resnet9000"),
    (["defaults", "ddpm", "learning_rate"], 0.1, "ddpm.learning_rate"),
    (["defaults", "fidelity", "feature_extractors"], ["inception"], "inception_weights"),
    (["defaults", "datasets"], ["nowhere"], "nowhere"),
    (["profiles", "cpu", "guidance_net"], {"dropout": 0.0}, "guidance_net.dropout > 0"),  # cpu samples bald
    # a list that names jobs or runs: a repeat would be one job twice (two writers of one file)
    (["defaults", "downstream", "networks"], ["resnet18", "resnet18"], "downstream.networks: Value error, repeated "
                                                                       "resnet18 in ['resnet18', 'resnet18']"),
    (["defaults", "downstream", "seeds"], [0, 1, 0], "downstream.seeds: Value error, repeated 0 in [0, 1, 0]"),
    (["defaults", "downstream", "sets"], ["none", "none"], "downstream.sets: Value error, repeated none"),
    (["defaults", "training_length", "epochs"], [4, 4], "training_length.epochs: Value error, repeated 4"),
    (["defaults", "datasets"], ["retinamnist", "retinamnist"], "datasets: Value error, repeated retinamnist"),
])
def test_bad_values_name_the_field(path, value, needle):
    with pytest.raises(ConfigError) as err:
        resolve(broken(path, value), "cpu", "params.yaml")
    assert needle in str(err.value) and "params.yaml" in str(err.value)


@pytest.mark.parametrize("override,needle", [
    ({"generator": "cpu", "ddpm": {"steps": 10}}, "ddpm come from generator profile 'cpu'"),
    ({"generator": "nowhere"}, "generator 'nowhere' must be a profile"),
    ({"generator": "cpu", "downstream": {"sets": ["entropy-s9"]}}, "downstream.sets ['entropy-s9'] are not sampled"),
])
def test_generator_profiles_are_checked(override, needle):
    raw = copy.deepcopy(RAW)
    raw["profiles"]["mine"] = override
    with pytest.raises(ConfigError, match=re.escape(needle)):
        resolve(raw, "mine")


def test_a_profile_on_another_generator_inherits_its_images_settings():
    cpu, pilot = load(ROOT / "params.yaml", "cpu"), load(ROOT / "params.yaml", "pilot")
    assert pilot.profile.ddpm == cpu.profile.ddpm and pilot.profile.sampling == cpu.profile.sampling
    assert pilot.generator_config().profile.name == "cpu"


def test_a_profile_on_another_generator_may_train_its_networks_on_another_device():
    raw = copy.deepcopy(RAW)
    raw["profiles"]["mine"] = {"generator": "cpu", "device": "cuda"}
    mine = resolve(raw, "mine")
    assert mine.profile.device == "cuda" and mine.generator_config().profile.device == "cpu"


def test_a_profile_turns_off_a_guidance_the_defaults_sample_with_null():
    raw = copy.deepcopy(RAW)
    raw["profiles"]["mine"] = {"sampling": {"scales": {"margin": None, "leastconf": None, "entropy": [1, 4]}}}
    sets = resolve(raw, "mine").sample_sets()
    assert not [s for s in sets if s.startswith(("margin", "leastconf"))]
    assert {"none", "entropy-s1", "entropy-s4", "classifier-s2"} <= set(sets) and "entropy-s2" not in sets


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown profile 'gpu'.*smoke"):
        resolve(RAW, "gpu")


def test_first_difference_names_the_first_key_path_where_two_documents_part():
    from mgdm.config import first_difference

    a = {"b": 1, "a": {"x": [1, 2], "y": 2}}
    assert first_difference(a, copy.deepcopy(a)) is None
    assert first_difference(a, {"b": 1, "a": {"x": [1, 2], "y": 3}}) == "a.y"
    assert first_difference(a, {"b": 1, "a": {"x": [2, 1], "y": 2}}) == "a.x"  # a list is a value: order counts
    assert first_difference(a, {"b": 1, "a": {"x": [1, 2]}}) == "a.y"  # a key one side lacks
    assert first_difference(a, {"b": 1, "a": 5}) == "a" and first_difference(1, 2) == "the top level"


def test_snakemake_values_the_jobs_would_not_read_are_refused(tmp_path):
    """Snakemake merges --configfile and --config over params.yaml, but each job reads one file: the planned
    values must be that file's (the profile comes on the job's command line)."""
    from mgdm.config import check_jobs_read, jobs_params_file

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(RAW))
    check_jobs_read({**copy.deepcopy(RAW), "profile": "smoke"}, path)  # --config profile=smoke: passed on
    with pytest.raises(ConfigError, match=r"params\.yaml: every job reads this file, .* differs from it at data_dir: "):
        check_jobs_read({**copy.deepcopy(RAW), "data_dir": "/elsewhere"}, path)  # --config data_dir=/elsewhere
    assert jobs_params_file([]) == "params.yaml"
    assert jobs_params_file([Path.cwd() / "mine.yaml"]) == "mine.yaml"
    assert jobs_params_file([Path("/elsewhere/mine.yaml")]) == "/elsewhere/mine.yaml"


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nothere.yaml: file not found"):
        load(tmp_path / "nothere.yaml")


@pytest.mark.parametrize("guidance,scale", [("none", 0.0), ("entropy", 2.0), ("cfg", 0.5), ("mgdm", 10.0)])
def test_set_names_round_trip(guidance, scale):
    assert parse_set_name(set_name(guidance, scale)) == (guidance, scale)
    assert set_multiple(set_name(guidance, scale)) is None
    sized = set_name(guidance, scale, 3)
    assert parse_set_name(sized) == (guidance, scale) and set_multiple(sized) == 3.0
    drawn = set_name(guidance, scale, draw=2)
    assert parse_set_name(drawn) == (guidance, scale) and set_multiple(drawn) is None and set_draw(drawn) == 2
    assert set_draw(set_name(guidance, scale)) == 0 and set_draw(set_name(guidance, scale, 3, 4)) == 4
    assert redrawn(set_name(guidance, scale, 3), 4) == set_name(guidance, scale, 3, 4)  # one grammar
    assert redrawn(set_name(guidance, scale), 0) == set_name(guidance, scale)


def test_a_further_draw_is_not_redrawn():
    with pytest.raises(ConfigError, match="'entropy-s2-d1' is already a further draw"):
        redrawn("entropy-s2-d1", 2)


@pytest.mark.parametrize("name", ["none-s2", "entropy", "entropy-x3", "foo-s1", "entropy-s2-x0", "entropy-s2-3",
                                  "entropy-s2-d0", "entropy-s2-d1-x1", "none-d"])
def test_malformed_set_names_are_refused(name):
    with pytest.raises(ConfigError, match="not a synthetic set name"):
        parse_set_name(name)


def test_sized_sets_need_a_multiple_and_join_the_profile_sets():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["profiles"]["smoke"]["sampling"]["sized_sets"] = ["entropy-s2"]
    with pytest.raises(ConfigError, match="has no '-x<multiple>'"):
        resolve(raw, "smoke")
    raw["profiles"]["smoke"]["sampling"]["sized_sets"] = ["none-x1", "entropy-s2-x0.5"]
    sets = resolve(raw, "smoke").sample_sets()
    assert sets[-2:] == ["none-x1", "entropy-s2-x0.5"] and "entropy-s2" in sets


def test_committed_schema_is_current(tmp_path):
    from conftest import run

    run(["mgdm", "schema", "-o", str(tmp_path / "s.json")], ROOT)
    assert (tmp_path / "s.json").read_text() == (ROOT / "workflow/schemas/params.schema.json").read_text(), \
        "workflow/schemas/params.schema.json is stale: run `mgdm schema`"


def test_redraws_repeat_the_scale_grid_under_draw_names():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["profiles"]["smoke"]["sampling"]["redraws"] = [0]
    with pytest.raises(ConfigError, match="draw 0 is the set itself"):
        resolve(raw, "smoke")
    raw["profiles"]["smoke"]["sampling"]["redraws"] = [1, 3]
    config = resolve(raw, "smoke")
    grid = [s for s in config.sample_sets() if set_draw(s) == 0]
    assert config.sample_sets() == grid + [f"{s}-d1" for s in grid] + [f"{s}-d3" for s in grid]


def test_picked_seeds_and_networks_come_once_each_in_the_profile_order():
    """`--seeds 2 0 0`: the runs of seeds 0 and 2, each once (a repeat would pair every run twice in a table)."""
    config = load(ROOT / "params.yaml", "pilot")
    assert config.profile.downstream.seeds[:3] == [0, 1, 2]
    assert config.chosen("seeds", [2, 0, 0]) == [0, 2]
    assert config.chosen("seeds", None) == config.profile.downstream.seeds
    with pytest.raises(ConfigError, match=r"--seeds \[0, 99\] not among downstream.seeds"):
        config.chosen("seeds", [0, 99])
