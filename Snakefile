# mgdm: the Snakemake entry point. Thin by design: the stage table is src/mgdm/pipeline.py and
# workflow/rules/stages.smk makes one rule per stage from it.
#   snakemake --cores 2                          (the `profile` named in params.yaml: cpu)
#   snakemake --cores 2 --config profile=smoke   (another profile)
from snakemake.utils import validate

from mgdm.config import resolve
from mgdm.pipeline import Plan


configfile: "params.yaml"


validate(config, "workflow/schemas/params.schema.json")  # the file's shape; resolve() checks each profile

PLAN = Plan(resolve(config, config.get("profile")))


wildcard_constraints:
    **PLAN.wildcard_constraints(),


include: "workflow/rules/stages.smk"


rule all:
    default_target: True
    input:
        PLAN.targets(),


onstart:
    from mgdm.estimate import estimate

    print(estimate(PLAN, PLAN.config.data_dir()))
