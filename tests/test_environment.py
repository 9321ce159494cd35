"""environment.yml stays true to pyproject.toml: same packages, same pins."""

import re
import tomllib

import yaml

from conftest import ROOT


def pins(requirements):
    return {re.split(r"[=<>!~ ]", r, 1)[0].lower(): r.replace(" ", "") for r in requirements}


def test_environment_yml_mirrors_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda_pins = pins(r for r in pip if not r.startswith("-e"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = pins(project["dependencies"] + project["optional-dependencies"]["test"])
    assert conda_pins == wanted
    assert "-e ." in pip, "the environment installs the mgdm package itself"
    assert all("==" in r for r in wanted.values()), "every dependency is pinned"
