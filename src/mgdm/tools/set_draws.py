"""`mgdm set-draws`: is one draw of a set a random factor the other profiles leave out? (mgdm.analysis.draws)

Reads the profile's run records alone (records/runs.csv: every draw's runs), so it runs in a fresh clone, and
writes tables/set_draws.md and .tex and figures/set_draws.png.
"""

from __future__ import annotations

from pathlib import Path

from mgdm.tools import open_tool, profile_runs


def main(a) -> int:
    from mgdm.analysis.draws import INFERENCE, draws_in, draws_plot, draws_table, format_draws
    from mgdm.analysis.tables import write_table
    from mgdm.files import FileError

    config, plan, name = open_tool(a)
    p = config.profile
    records, runs = profile_runs(plan, name)
    draws = draws_in(runs)
    if len(draws) < 2:
        raise FileError(f"{records}: runs of {len(draws)} draw(s) of the sets; the draw factor needs two or more "
                        "(sampling.redraws)")
    pooled, single = draws_table(runs, margin=p.inference.margin, alpha=p.inference.alpha,
                                 mgdm_measure=p.sampling.mgdm.measure)
    networks, seeds = sorted(runs["network"].unique()), sorted(runs["seed"].unique())
    caption = (f"The draw of a set as a random factor (profile `{p.name}`, {name}; from {records}): {len(draws)} "
               f"draws of each set (draw k starts from the noise of sampling seed + k; a draw's sets share it), "
               f"{len(networks)} networks {networks} x seeds {seeds}. `draw k`: that draw alone, as a one-draw "
               f"profile reports it: the t interval over the networks' mean paired changes (points), its verdict "
               f"Holm-adjusted within the draw. Then the crossed random-effects model over networks x draws "
               f"(cells: a network's change at a draw, averaged over seeds): the components' sds by ANOVA (method "
               f"of moments; `sd residual` is network x draw plus seed noise), the F test of a draw effect, and the "
               f"mean with a conservative t interval (variance (MS_network + MS_draw) / (networks x draws), "
               f"Satterthwaite df) that holds for guidance, not one draw; p two-sided, p_margin_holm one-sided for "
               f"a gain >= {p.inference.margin:g} point(s), both Holm-adjusted over the table ({INFERENCE}); "
               f"verdicts as in paired.md.")
    write_table(format_draws(pooled, single), Path(plan.root) / "tables" / "set_draws", caption)
    draws_plot(pooled, single, p.inference.margin, Path(plan.root) / "figures" / "set_draws.png")
    for r in pooled[pooled["metric"] == "acc"].to_dict("records"):
        print(f"{r['comparison']}, accuracy over networks and draws: {r['mean']:+.2f} [{r['ci_low']:+.2f}, "
              f"{r['ci_high']:+.2f}], sd of draws {r['sd_draw']:.2f}, draw effect p {r['p_draw']:.2g} ({r['verdict']})")
    print(f"wrote {plan.root}/tables/set_draws.md")
    return 0
