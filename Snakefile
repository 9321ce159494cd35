# mgdm: the Snakemake entry point. Thin by design: the stage table is src/mgdm/workflow/stages.py and
# workflow/rules/stages.smk holds one rule per stage, written from it by `mgdm smk`.
#   snakemake --cores 2                          (the `profile` named in params.yaml: cpu)
#   snakemake --cores 2 --config profile=smoke   (another profile)
#   snakemake --cores 2 --configfile mine.yaml --replace-workflow-config   (another params file, read by every job)
import os

from snakemake.utils import validate

from mgdm.config import check_jobs_read, jobs_params_file, resolve
from mgdm.workflow.estimate import group_priority
from mgdm.workflow.plan import Plan
from mgdm.workflow.tracking import DEFAULT_URI, end_pipeline, git_commit, start_pipeline


configfile: "params.yaml"


report: "workflow/report/workflow.rst"


# Every job reads one params file: the last --configfile (a whole params file), else params.yaml; the DAG is
# planned from the same values. resolve() before validate(): its message names the field in one line, where a
# schema error prints the whole schema.
PARAMS_FILE = jobs_params_file(workflow.overwrite_configfiles)
PLAN = Plan(resolve(config, config.get("profile"), PARAMS_FILE), PARAMS_FILE)
check_jobs_read(config, PARAMS_FILE)
validate(config, "workflow/schemas/params.schema.json")  # the file's shape, for the tools that read the schema
PARAMS, PROFILE, ROOT, P = PLAN.params_file, PLAN.profile, PLAN.root, PLAN.values
GEN_PROFILE, GEN, G = PLAN.generator.profile, PLAN.generator.root, PLAN.generator.values
MLFLOW_URI = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI)


wildcard_constraints:
    **PLAN.wildcard_constraints(),


include: "workflow/rules/stages.smk"


# A grouped profile (downstream.grouped) trains each network's runs in one job, train_group; the others, one
# job per run. Both rules name the same run files, so the profile's choice decides which one makes them.
if PLAN.config.profile.downstream.grouped:

    ruleorder: train_group > train_baseline
    ruleorder: train_group > train_classifier

else:

    ruleorder: train_baseline > train_group
    ruleorder: train_classifier > train_group


rule all:
    default_target: True
    input:
        PLAN.targets(),


onstart:
    from mgdm.workflow.estimate import estimate

    print(estimate(PLAN, PLAN.config.data_dir()))
    # one MLflow parent run per invocation; every job's run nests under it (jobs inherit the environment)
    start_pipeline(MLFLOW_URI, f"mgdm-{PLAN.profile}", f"snakemake {PLAN.profile}",
                   {"profile": PLAN.profile, "pipeline": "snakemake", "git_commit": git_commit()})


onsuccess:
    end_pipeline(MLFLOW_URI, "FINISHED")


onerror:
    end_pipeline(MLFLOW_URI, "FAILED")
