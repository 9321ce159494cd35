"""The one configuration: params.yaml, validated.

params.yaml holds `defaults` (a complete profile) and `profiles` (named overrides of it). A profile
is resolved by deep-merging its overrides onto the defaults and validating the result, so every
stage sees the same, checked values. Nothing else in the package reads params.yaml.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

GUIDANCES = ("none", "classifier", "cfg", "entropy", "margin", "leastconf", "bald", "mgdm")
UNCERTAINTY_MEASURES = ("entropy", "margin", "leastconf", "bald")
# Kept here (not imported from classifiers.zoo) so that loading the config never imports torch.
NETWORKS = (
    "resnet18", "resnet50", "densenet121", "vgg16_bn", "mobilenetv2_100",
    "efficientnet_b0", "convnext_atto", "regnetx_002", "inception_v3", "vit_tiny_patch16_224",
    "dla46_c", "edgenext_xx_small", "mobilenetv3_small_100", "efficientvit_b0", "mobilevit_xxs",
    "lcnet_100", "resnet10t", "regnety_002", "tinynet_e", "ghostnet_100",
)


def known_networks(v: list[str]) -> list[str]:
    """Validate a list of network names against the zoo's (a field validator of the sections that list them)."""
    bad = [n for n in v if n not in NETWORKS]
    if bad:
        raise ValueError(f"unknown network(s) {bad}; choose from {', '.join(NETWORKS)}")
    return v


def distinct(v: list) -> list:
    """A list that names jobs or runs (datasets, networks, seeds, sets, lengths): a repeat would be one job twice."""
    repeated = sorted({x for x in v if v.count(x) > 1}, key=str)
    if repeated:
        raise ValueError(f"repeated {', '.join(map(str, repeated))} in {v}")
    return v


Names = Annotated[list[str], AfterValidator(distinct)]  # a list of names that refuses a repeat
Numbers = Annotated[list[int], AfterValidator(distinct)]


class ConfigError(ValueError):
    """A params file that cannot be used; the message names the file and the field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(Strict):
    source: Literal["medmnist", "imagefolder", "procedural"]
    image_size: int = Field(gt=0, description="side in pixels the stages work at")
    ordinal: bool = Field(False, description="labels are grades: report quadratic weighted kappa")
    # medmnist: a file name under the data folder, its md5 (checked when given) and where to fetch it.
    file: str | None = None
    md5: str | None = None
    url: str | None = None
    # imagefolder: a folder with one sub-folder of images per class (sub-folder names are labels).
    path: str | None = None
    val_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(0.2, ge=0, lt=1)
    # procedural: a small generated set for smoke runs.
    num_classes: int = Field(3, ge=2)
    channels: Literal[1, 3] = 1
    n_train: int = Field(240, gt=0)
    n_val: int = Field(60, gt=0)
    n_test: int = Field(90, gt=0)

    @model_validator(mode="after")
    def _source_fields(self):
        if self.source == "medmnist" and not self.file:
            raise ValueError("source 'medmnist' needs 'file' (e.g. retinamnist.npz)")
        if self.source == "imagefolder" and not self.path:
            raise ValueError("source 'imagefolder' needs 'path' (a folder of class sub-folders)")
        return self


class StepTraining(Strict):
    """Settings every step-based trainer shares (the DDPM and the guidance net)."""

    steps: int = Field(gt=0, description="optimizer steps")
    batch_size: int = Field(gt=0)
    lr: float = Field(gt=0)
    class_balanced: bool = False
    checkpoint_every: int = Field(gt=0)
    seed: int = Field(0, description="initialisation, batch order and noise draws")


class DDPMConfig(StepTraining):
    channels: list[int] = Field(min_length=2, description="UNet block widths; one 2x downsample between each")
    layers_per_block: int = Field(ge=1)
    attention: bool = Field(description="self-attention at the lowest resolution")
    schedule: Literal["linear", "cosine"] = "linear"
    train_timesteps: int = Field(1000, ge=10)
    zero_terminal_snr: bool = Field(False, description="rescale betas so x_T is pure noise (Lin et al. 2023)")
    timestep_spacing: Literal["leading", "trailing"] = Field(
        "leading", description="DDIM timesteps; trailing starts sampling at t = T-1")
    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"
    snr_gamma: float | None = Field(None, gt=0, description="Min-SNR-gamma loss weighting (Hang et al. 2023); "
                                    "null: plain MSE")
    normalization: Literal["minmax", "standardize"] = Field(
        "minmax", description="minmax: [-1, 1]; standardize: per-channel mean and std of the training split")
    hflip: bool = Field(False, description="random horizontal flips of training images")
    warmup_steps: int = Field(0, ge=0, description="linear learning-rate warm-up")
    lr_decay: Literal["constant", "cosine"] = Field("constant", description="learning rate after warm-up")
    ema_decay: float = Field(ge=0, lt=1)
    label_dropout: float = Field(ge=0, lt=1, description="per-sample probability of the null class (CFG)")
    probe_every: int = Field(0, ge=0, description="fidelity probe every N steps (0: only at the end)")
    probe_images: int = Field(200, gt=0, description="images per probe (class-balanced)")
    probe_steps: int = Field(20, gt=0, description="DDIM steps per probe image")

    @model_validator(mode="after")
    def _snr(self):
        if self.zero_terminal_snr and self.prediction_type == "epsilon":
            raise ValueError("zero_terminal_snr needs prediction_type v_prediction (epsilon is undefined at SNR 0)")
        return self


class GuidanceNetConfig(StepTraining):
    width: int = Field(gt=0)
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout in every block and before the head; the `bald` "
                           "measure needs it > 0 (MC dropout)")


class ClassifierTraining(Strict):
    epochs: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    lr: float = Field(gt=0)
    weight_decay: float = Field(0.0, ge=0)
    hflip: bool = Field(False, description="random horizontal flips (off for chest X-rays)")
    checkpoint_s: float = Field(300.0, ge=0, description="seconds of wall clock between resume states (kept at "
                                "an epoch's end; 0: every epoch); the result does not depend on it")


class ReferenceNetConfig(ClassifierTraining):
    network: str = "resnet18"
    seed: int = 0

    @field_validator("network")
    @classmethod
    def _known(cls, v):
        if v not in NETWORKS:
            raise ValueError(f"unknown network {v!r}; choose from {', '.join(NETWORKS)}")
        return v


class MGDMConfig(Strict):
    stage1: Literal["none", "classifier", "cfg"] = "cfg"
    stage1_scale: float = Field(1.0, ge=0)
    measure: Literal["entropy", "margin", "leastconf", "bald"] = "entropy"


class SamplingConfig(Strict):
    ddim_steps: int = Field(gt=0)
    eta: float = Field(0.0, ge=0, le=1)
    class_counts: Literal["balanced", "train"] = Field(
        "balanced", description="balanced: per_class of each class; train: the training split's proportions")
    per_class: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    # ints stay ints: a set is named by its scale as written (2 -> entropy-s2, 1.0 -> entropy-s1.0), as DVC
    # names the stages it templates from these lists
    scales: dict[str, list[int | float] | None] = Field(
        description="guidance -> scale grid; 0 means no guidance; null turns off a guidance the defaults sample")
    sized_sets: Names = Field(default_factory=list, description="sets sized by the real training split, "
                              "beside the scale grid's: 'entropy-s2-x3' has 3x as many images as the training "
                              "split (class mix as `class_counts`); for the synthetic-quantity axis")
    redraws: list[int] = Field(default_factory=list, description="further draws of every set of the scale grid: "
                               "draw k ('entropy-s2-d1') starts from the noise of sampling seed + k, so the draw "
                               "of a 200-image set becomes a factor the study can measure (draw 0 is the set itself)")
    mgdm: MGDMConfig = MGDMConfig()
    mc_samples: int = Field(8, gt=1, description="MC-dropout forwards of the guidance net per step for `bald`")
    seed: int = 0

    @field_validator("scales")
    @classmethod
    def _scales(cls, v):
        v = {name: grid for name, grid in v.items() if grid is not None}  # null: not sampled in this profile
        for name, grid in v.items():
            if name not in GUIDANCES:
                raise ValueError(f"unknown guidance {name!r}; choose from {', '.join(GUIDANCES)}")
            if not grid or any(s < 0 for s in grid):
                raise ValueError(f"guidance {name!r}: scales must be a non-empty list of numbers >= 0")
            if len(set(grid)) != len(grid):
                raise ValueError(f"guidance {name!r}: repeated scale in {grid}")
        return v

    @field_validator("redraws")
    @classmethod
    def _redraws(cls, v):
        if any(k < 1 for k in v) or len(set(v)) != len(v):
            raise ValueError(f"redraws {v}: distinct draw numbers >= 1 (draw 0 is the set itself)")
        return v

    @field_validator("sized_sets")
    @classmethod
    def _sized(cls, v):
        for name in v:
            if set_multiple(name) is None:  # raises on a name that is not a set's
                raise ValueError(f"sized set {name!r} has no '-x<multiple>' (e.g. '{name}-x1')")
        return v


class DownstreamConfig(ClassifierTraining):
    networks: Names = Field(min_length=1)
    seeds: Numbers = Field(min_length=1)
    sets: Names = Field(default_factory=list, description="synthetic sets to train on (names like "
                        "'entropy-s2'); empty: every set the profile samples")
    grouped: bool = Field(False, description="Snakemake, DVC and SLURM run one job per network (stage "
                          "train_group: its runs, seeds x sets, trained in one process) instead of one per run; "
                          "a run whose inputs did not change is restored from the group's run cache, not retrained")

    _known = field_validator("networks")(known_networks)


class FidelityConfig(Strict):
    feature_extractors: Annotated[list[Literal["domain", "inception"]], AfterValidator(distinct)] = Field(min_length=1)
    inception_weights: str | None = Field(
        None, description="local torch-fidelity Inception weights (pt-inception-2015-12-05); needed for 'inception'")
    kid_subset_size: int = Field(gt=1)
    batch_size: int = Field(64, gt=0)
    seed: int = Field(0, description="held-out floor draw d uses seed + d; KID subsets use torch-fidelity's "
                      "rng_seed 2020 + seed (its default at 0)")

    @model_validator(mode="after")
    def _weights(self):
        if "inception" in self.feature_extractors and not self.inception_weights:
            raise ValueError("feature extractor 'inception' needs 'inception_weights' (a local path; "
                             "nothing is downloaded)")
        return self


class AnalysisConfig(Strict):
    embedding: Literal["pca", "tsne"] = "pca"
    knn_k: int = Field(5, gt=0)
    seed: int = Field(0, description="held-out draws and the embedding's random state")


class InferenceConfig(Strict):
    """How `report` decides: the equivalence margin of the verdicts and the family-wise alpha (Holm)."""

    margin: float = Field(1.0, gt=0, description="points: a gain this large is the claim (the paper's 1-3 "
                          "points start at 1); a verdict can exclude it")
    alpha: float = Field(0.05, gt=0, lt=1, description="family-wise error rate of each table (Holm)")


class ZooConfig(Strict):
    """`mgdm survey-zoo`: each network trained briefly on real data (cost and whether it learns; not in the DAG)."""

    epochs: int = Field(4, gt=0, description="training epochs per network (downstream optimiser and batch size)")
    seed: int = 0
    networks: Names = Field(default_factory=list, description="networks to survey; empty: the whole zoo")

    _known = field_validator("networks")(known_networks)


class TrainingLengthConfig(Strict):
    """`mgdm training-length`: downstream training on real data at several lengths (not in the DAG), to find
    where validation AUC stops improving. The schedule is one-cycle over the run, so each length is its own run."""

    epochs: Numbers = Field(default_factory=lambda: [4, 8, 16, 32], min_length=2, description="lengths to train")
    seeds: Numbers = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    networks: Names = Field(default_factory=list, description="networks; empty: downstream.networks")
    tolerance: float = Field(0.01, gt=0, description="a longer length that raises mean best validation AUC by "
                             "no more than this has stopped improving")

    _known = field_validator("networks")(known_networks)

    @field_validator("epochs")
    @classmethod
    def _lengths(cls, v):
        if v != sorted(set(v)) or v[0] < 1:
            raise ValueError(f"training_length.epochs must be positive and increasing, got {v}")
        return v


# generator target -> (direction, what it reads); ratios are against the real held-out floor
TARGETS = {"fid_ratio": ("at most", "domain FID ÷ floor"), "recall": ("at least", "domain recall"),
           "coverage": ("at least", "coverage"), "label_agreement_ratio": ("at least", "label agreement ÷ floor"),
           "colour_error": ("at most", "colour error (0-255)")}


class GeneratorSweepConfig(Strict):
    """Recipe variants compared at equal wall clock by `mgdm sweep-generator` (not part of the DAG)."""

    budget_s: float = Field(300, gt=0, description="training wall clock per variant, seconds")
    probes: int = Field(6, gt=0, description="probes per variant, evenly spaced")
    base: dict = Field(default_factory=dict, description="ddpm overrides every variant starts from")
    variants: dict[str, dict] = Field(default_factory=dict, description="name -> ddpm overrides on top of base")
    targets: dict[str, float] = Field(default_factory=dict, description="what the pipeline's `none` set must reach: "
                                      "fid_ratio (÷ floor, at most), recall, coverage (at least), label_agreement_"
                                      "ratio (÷ floor, at least), colour_error (0-255, at most)")

    @model_validator(mode="after")
    def _overrides(self):
        unknown_targets = sorted(set(self.targets) - set(TARGETS))
        if unknown_targets:
            raise ValueError(f"generator_sweep.targets: unknown {unknown_targets}; known: {', '.join(TARGETS)}")
        known = set(DDPMConfig.model_fields)
        for name, over in {"base": self.base, **self.variants}.items():
            bad = sorted(set(over) - known)
            if bad:
                raise ValueError(f"generator_sweep {name!r}: unknown ddpm setting(s) {bad}")
        return self


# The sections that make the synthetic images; a profile with `generator: P` takes them from profile P.
# `device` is not among them: a study may train its downstream networks on a GPU from images made on a
# CPU (each run's JSON names its machine).
GENERATOR_SECTIONS = ("datasets", "ddpm", "guidance_net", "reference_net", "sampling", "fidelity", "analysis")


class Profile(Strict):
    name: str
    generator: str | None = Field(None, description="another profile whose generator (data, DDPM, guidance "
                                  "and reference nets, synthetic sets, fidelity, analysis) this one reuses")
    datasets: Names = Field(min_length=1)
    device: str = "cpu"
    ddpm: DDPMConfig
    guidance_net: GuidanceNetConfig
    reference_net: ReferenceNetConfig
    sampling: SamplingConfig
    downstream: DownstreamConfig
    fidelity: FidelityConfig
    analysis: AnalysisConfig = AnalysisConfig()
    inference: InferenceConfig = InferenceConfig()
    generator_sweep: GeneratorSweepConfig = GeneratorSweepConfig()
    zoo: ZooConfig = ZooConfig()
    training_length: TrainingLengthConfig = TrainingLengthConfig()

    @model_validator(mode="after")
    def _epistemic(self):
        s = self.sampling
        uses_bald = any(x > 0 for x in s.scales.get("bald", [])) or ("mgdm" in s.scales and s.mgdm.measure == "bald")
        if uses_bald and self.guidance_net.dropout == 0:
            raise ValueError("the bald measure needs guidance_net.dropout > 0 (it reads MC-dropout passes)")
        return self


class Params(Strict):
    profile: str
    data_dir: str | None = None
    datasets: dict[str, DatasetSpec]
    defaults: dict
    profiles: dict[str, dict]

    @model_validator(mode="before")
    @classmethod
    def _no_loose_sections(cls, raw):
        # e.g. `dvc exp run -S sampling.scales.entropy=[1]` writes a top-level `sampling`
        loose = [k for k in raw if k in Profile.model_fields and k not in cls.model_fields] if isinstance(raw, dict) else []
        if loose:
            raise ValueError(f"{', '.join(loose)} at the top level: settings live under `defaults` or "
                             f"`profiles.<name>` (e.g. dvc exp run -S 'defaults.{loose[0]}...')")
        return raw


def deep_merge(base: dict, override: dict) -> dict:
    """Return `base` with `override` merged in (dicts recursively, everything else replaced)."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def sweep_variant(profile: Profile, name: str | None = None) -> DDPMConfig:
    """A `generator_sweep` variant's DDPM settings: the profile's ddpm, then the sweep's base, then the variant's
    overrides (`name` None: the base alone)."""
    overrides = profile.generator_sweep.variants[name] if name else {}
    return DDPMConfig(**{**profile.ddpm.model_dump(), **profile.generator_sweep.base, **overrides})


def _format(err: ValidationError, where: str) -> str:
    lines = [f"{where}: invalid configuration"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {loc}: {e['msg']}")
    return "\n".join(lines)


class Config:
    """A validated params file resolved to one profile."""

    def __init__(self, params: Params, profile: Profile, source: str):
        self.params, self.profile, self.source = params, profile, source

    def data_dir(self) -> str | None:
        """The folder holding the data files: `data_dir` in params.yaml, else $MGDM_DATA_DIR (the one place)."""
        return self.params.data_dir or os.environ.get("MGDM_DATA_DIR")

    def dataset(self, name: str) -> DatasetSpec:
        if name not in self.params.datasets:
            raise ConfigError(f"{self.source}: unknown dataset {name!r}; defined: {', '.join(self.params.datasets)}")
        return self.params.datasets[name]

    def sample_sets(self) -> list[str]:
        """Return the synthetic set names of this profile, e.g. ['none', 'entropy-s2']."""
        sampling = self.profile.sampling
        grid = [(g, s) for g, scales in sampling.scales.items() for s in scales]
        return ([set_name(g, s) for g, s in grid] + [set_name(g, s, draw=k) for k in sampling.redraws for g, s in grid]
                + list(sampling.sized_sets))

    def downstream_sets(self) -> list[str]:
        """Return the synthetic sets downstream networks train on (`downstream.sets`, default all)."""
        return list(self.profile.downstream.sets) or self.sample_sets()

    def chosen(self, option: str, picked: list | None) -> list:
        """--seeds / --networks: a part of downstream.<option> (default: all of it), in the profile's order and
        each once (`--seeds 0 0` would pair every run twice); anything else is refused."""
        allowed = list(getattr(self.profile.downstream, option))
        picked = picked or allowed
        if not set(picked) <= set(allowed):
            raise ConfigError(f"{self.source} (profile {self.profile.name!r}): --{option} {picked} not among "
                              f"downstream.{option} {allowed}")
        return [x for x in allowed if x in picked]

    def generator_config(self) -> "Config":
        """Return the Config of the profile that makes this one's images (itself unless `generator` is set)."""
        if self.profile.generator is None:
            return self
        return resolve(self.params.model_dump(), self.profile.generator, self.source)


def set_name(guidance: str, scale: int | float, multiple: int | float | None = None, draw: int = 0) -> str:
    """The set's name: its guidance and its scale as params.yaml writes it (as DVC's `${item.scale}` does);
    for a set sized by the real training split, `-x` and the multiple (entropy-s2-x3: three times it); for a
    further draw from other noise, `-d` and its number (entropy-s2-d1; draw 0, the set itself, has none)."""
    base = "none" if guidance == "none" else f"{guidance}-s{scale}"
    return base + ("" if multiple is None else f"-x{multiple}") + _draw_suffix(draw)


def _draw_suffix(draw: int) -> str:
    return f"-d{draw}" if draw else ""


def redrawn(name: str, draw: int) -> str:
    """Set `name` (a set itself, draw 0) at draw `draw`: entropy-s2 -> entropy-s2-d3 (as `set_name` writes it)."""
    if _set_parts(name)[3]:
        raise ConfigError(f"{name!r} is already a further draw of its set (redrawn takes the set itself)")
    return name + _draw_suffix(draw)


SET_NAME = re.compile(r"(?P<guidance>[a-z]+)(?:-s(?P<scale>\d+(?:\.\d+)?))?(?:-x(?P<multiple>\d+(?:\.\d+)?))?"
                      r"(?:-d(?P<draw>[1-9]\d*))?")


def _set_parts(name: str) -> tuple[str, float, int | float | None, int]:
    m = SET_NAME.fullmatch(name)
    if (not m or m["guidance"] not in GUIDANCES or (m["guidance"] == "none") != (m["scale"] is None)
            or (m["multiple"] is not None and float(m["multiple"]) <= 0)):
        raise ConfigError(f"not a synthetic set name: {name!r} (expected e.g. 'entropy-s2', 'none' or, sized by "
                          "the real training split, 'entropy-s2-x3', or a further draw, 'entropy-s2-d1')")
    multiple = m["multiple"]  # as written: x3 -> 3, x0.5 -> 0.5 (so that set_name writes the name back)
    return m["guidance"], float(m["scale"] or 0), None if multiple is None else (
        int(multiple) if multiple.isdigit() else float(multiple)), int(m["draw"] or 0)


def parse_set_name(name: str) -> tuple[str, float]:
    """Return (guidance, scale) of a synthetic set name made by `set_name`."""
    return _set_parts(name)[:2]


def set_multiple(name: str) -> int | float | None:
    """The set's size as a multiple of the real training split (entropy-s2-x3 -> 3); None: `per_class`."""
    return _set_parts(name)[2]


def set_draw(name: str) -> int:
    """Which draw of its set a set is (entropy-s2-d3 -> 3; 0: the set itself, from the sampling seed's noise)."""
    return _set_parts(name)[3]


def resolve(raw: dict, profile: str | None = None, source: str = "params.yaml") -> Config:
    """Return the validated Config for `profile` (default: the file's `profile` key)."""
    try:
        params = Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format(err, source)) from None
    name = profile or params.profile
    if name not in params.profiles:
        raise ConfigError(f"{source}: unknown profile {name!r}; defined: {', '.join(params.profiles)}")
    overrides = params.profiles[name]
    base = params.defaults
    generator = overrides.get("generator")
    if generator is not None:
        where = f"{source} (profile {name!r})"
        if generator not in params.profiles or params.profiles[generator].get("generator") is not None:
            raise ConfigError(f"{where}: generator {generator!r} must be a profile without a generator of its own")
        shadowed = [k for k in GENERATOR_SECTIONS if k in overrides]
        if shadowed:
            raise ConfigError(f"{where}: {', '.join(shadowed)} come from generator profile {generator!r}; "
                              "set them there, not here")
        base = deep_merge(params.defaults, params.profiles[generator])
    merged = deep_merge(base, overrides)
    merged["name"] = name
    try:
        prof = Profile.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(_format(err, f"{source} (profile {name!r})")) from None
    missing = [d for d in prof.datasets if d not in params.datasets]
    if missing:
        raise ConfigError(f"{source} (profile {name!r}): datasets {missing} are not defined under 'datasets'")
    unets = {"ddpm": prof.ddpm}  # and each sweep variant's, refused here rather than when the sweep reaches it
    for v in prof.generator_sweep.variants:
        try:
            unets[f"generator_sweep.variants.{v}"] = sweep_variant(prof, v)
        except ValidationError as err:
            raise ConfigError(_format(err, f"{source} (profile {name!r}): generator_sweep.variants.{v}")) from None
    # the UNet halves the image at every level but the last and must come back to the same size: 28 px
    # takes 3 levels (28, 14, 7), not 4 (7 -> 4 -> 8 breaks the skip connection)
    for where, unet in unets.items():
        levels = len(unet.channels)
        factor = 2 ** (levels - 1)
        for d in prof.datasets:
            size = params.datasets[d].image_size
            if size % factor:
                raise ConfigError(f"{source} (profile {name!r}): {where}.channels has {levels} levels, so image_size "
                                  f"must be a multiple of {factor}; dataset {d!r} is {size} px (use {levels - 1} "
                                  f"levels, or images whose size {factor} divides)")
    config = Config(params, prof, source)
    unknown = [s for s in prof.downstream.sets if s not in config.sample_sets()]
    if unknown:
        raise ConfigError(f"{source} (profile {name!r}): downstream.sets {unknown} are not sampled; "
                          f"sampled: {', '.join(config.sample_sets())}")
    return config


def read_params(path: str | Path) -> dict:
    """The params file parsed, not yet validated."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def load(path: str | Path = "params.yaml", profile: str | None = None) -> Config:
    """Return the validated Config read from `path`."""
    return resolve(read_params(path), profile, str(path))


def first_difference(a, b, where: str = "") -> str | None:
    """The first dotted key path at which two parsed documents differ; None where they are equal."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return None if a == b else where or "the top level"
    for key in sorted(a.keys() | b.keys(), key=str):
        path = f"{where}.{key}" if where else str(key)
        found = path if key not in a or key not in b else first_difference(a[key], b[key], path)
        if found:
            return found
    return None


def check_jobs_read(config: dict, path: str | Path) -> None:
    """Snakemake plans the DAG from its merged config, and every job reads `path` (its profile comes on the
    command line). Refuse the values the jobs would not see: a --configfile that is not a whole params file
    (Snakemake merges it over params.yaml) or a --config key other than `profile`."""
    planned, read = ({k: v for k, v in d.items() if k != "profile"} for d in (config, read_params(path)))
    where = first_difference(planned, read)
    if where:
        raise ConfigError(f"{path}: every job reads this file, but the config Snakemake planned from differs from it "
                          f"at {where}: give a whole params file (--configfile FILE --replace-workflow-config) and "
                          "set only profile with --config")


def jobs_params_file(configfiles) -> str:
    """The params file every job of a Snakemake run reads: the last --configfile (relative where it lies in the
    working directory), else params.yaml."""
    if not configfiles:
        return "params.yaml"
    rel = os.path.relpath(configfiles[-1])
    return str(configfiles[-1]) if rel.startswith("..") else rel
