"""The paper tables are real LaTeX: one document of every committed .tex table compiles with pdflatex."""

import subprocess

import pytest
from conftest import ROOT, debian_command

from mgdm.analysis.tables import latex_text

# the preamble the README tells authors to use
PREAMBLE = r"""\documentclass{article}
\usepackage[T1]{fontenc}
\usepackage{booktabs}
\usepackage[margin=1cm,landscape]{geometry}
\begin{document}
"""


@pytest.fixture(scope="module")
def pdflatex():
    path = debian_command(("pdflatex",), ["texlive-latex-base", "texlive-latex-recommended"])
    if path is None:
        pytest.skip("no pdflatex, and no root and apt-get to install Debian's texlive-latex-recommended")
    return path


def compile_document(pdflatex, tables, workdir):
    doc = workdir / "tables.tex"
    doc.write_text(PREAMBLE + "".join(f"\\input{{{t}}}\n\\clearpage\n" for t in tables) + "\\end{document}\n")
    return subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=workdir,
                          capture_output=True, text=True, timeout=300)


def test_every_committed_table_compiles_in_one_document(pdflatex, tmp_path):
    tables = sorted(ROOT.glob("results/*/tables/*.tex"))
    assert len(tables) > 20
    res = compile_document(pdflatex, tables, tmp_path)
    assert res.returncode == 0, res.stdout[-3000:]
    assert (tmp_path / "tables.pdf").stat().st_size > 10_000
    labels = [t.read_text().split(r"\label{")[1].split("}")[0] for t in tables]
    assert len(set(labels)) == len(labels), "every table has its own \\label"


def test_text_the_tables_use_is_escaped_for_latex(pdflatex, tmp_path):
    text = "entropy-s2 − none, 50% of n_real & more: ±1.5 ÷ floor ≥ Δacc #1 {x} ~ ^"
    table = tmp_path / "t.tex"
    table.write_text(latex_text(text) + "\n")
    assert compile_document(pdflatex, [table], tmp_path).returncode == 0
    broken = tmp_path / "raw.tex"
    broken.write_text(text + "\n")  # the same text unescaped does not compile: the test can fail
    assert compile_document(pdflatex, [broken], tmp_path).returncode != 0
