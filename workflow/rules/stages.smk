# One rule per stage of the table in src/mgdm/pipeline.py (the table dvc.yaml is written from too).
# Each rule runs `mgdm <stage>`, logs to results/<profile>/logs/ and records its wall clock and
# memory in results/<profile>/benchmarks/. Changing a stage's settings in params.yaml, or a source file it
# runs (src/mgdm/sources.py), reruns it and everything downstream.
from mgdm.pipeline import STAGES


# `snakemake --report report.html`: the figures and tables, captioned (workflow/report/), by category
REPORT = {"preprocess": "Data", "sample": "Synthetic sets", "analyze": "Distributions", "report": "Tables"}


def reported(stage, path):
    if stage in REPORT and path.endswith((".png", ".md")):
        caption = "tables" if path.endswith(".md") else stage
        return report(path, caption=f"../report/{caption}.rst", category=REPORT[stage])
    return path


def job_tag(stage):
    return "_".join(f"{{{w}}}" for w in STAGES[stage].matrix) or "all"


for stage in STAGES:

    rule:
        name:
            stage
        input:
            PLAN.deps(stage) + PLAN.code(stage),
        output:
            [reported(stage, p) for p in PLAN.outputs(stage)],
        params:
            settings=lambda wildcards, stage=stage: PLAN.settings(stage, **wildcards),
            # a default argument binds this loop's stage (the shell line is evaluated when the job runs)
            cmd=lambda wildcards, stage=stage: PLAN.command(stage).format(**wildcards),
        log:
            f"{PLAN.owner(stage).root}/logs/{stage}/{job_tag(stage)}.log",
        benchmark:
            f"{PLAN.owner(stage).root}/benchmarks/{stage}/{job_tag(stage)}.tsv"
        threads: STAGES[stage].threads
        priority: STAGES[stage].priority
        resources:
            # the same order for SLURM's queue: a lower nice value starts sooner (the DDPM first)
            slurm_extra=f"--nice={100 - 10 * STAGES[stage].priority}",
        conda:
            "../../environment.yml"
        shell:
            "{params.cmd} --threads {threads} > {log} 2>&1"
