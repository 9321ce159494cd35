"""`mgdm power`: design a study from a profile's run records (variance components, power, minutes)."""

from __future__ import annotations

from pathlib import Path

from mgdm.tools import open_tool, profile_runs


def main(a) -> int:
    from mgdm.analysis import paired
    from mgdm.analysis.tables import write_table

    config, plan, name = open_tool(a)
    p = config.profile
    records, runs = profile_runs(plan, name)
    wall = float(runs["wall_s"].mean())
    table, s = paired.power_table(runs, wall, a.budget_min, a.parallel, a.sets)
    best = table[table["fits budget"]].sort_values("half-width").head(1)
    reach = (f"the narrowest that fits {a.budget_min:g} min: {int(best['networks'].iloc[0])} networks x "
             f"{int(best['seeds'].iloc[0])} seeds, half-width {best['half-width'].iloc[0]:.2f}"
             if len(best) else f"no design in the table fits {a.budget_min:g} min")
    if s["network_estimable"]:
        network, said = (f"network x set {s['var_network']:.2f} (sd {s['sd_network']:.2f})",
                         f"network x set sd {s['sd_network']:.2f} points")
    else:
        said = "network x set not estimable from one network"
        network = f"{said} (taken as 0, so the half-widths and power below are best cases: the seed variance alone)"
    write_table(table, Path(plan.root) / "tables" / "power",
                f"Study design from `{p.name}`'s runs on {name} ({records}: {s['pilot_networks']} networks, "
                f"{s['pilot_pairs']} (network, seed) pairs). Variance components of the paired accuracy change "
                f"against real-only (points², one-way random-effects ANOVA, pooled over the sets): seed-to-seed "
                f"{s['var_seed']:.2f} (sd {s['sd_seed']:.2f}), {network}. Per design: the network-level 95% "
                f"half-width (t, df = networks − 1), the two-sided power at alpha {paired.ALPHA} to detect a change "
                f"of 1, 1.5 and 3 points, and the minutes for {a.sets} compared sets plus real-only at {wall:.0f} s "
                f"per run, {a.parallel} jobs side by side; "
                f"{reach}.")
    print(f"seed sd {s['sd_seed']:.2f} points, {said}; {reach}; "
          f"wrote {plan.root}/tables/power.md")
    return 0
