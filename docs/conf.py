"""Sphinx configuration for the sb3-qsm documentation (MyST Markdown pages, Read the Docs theme)."""

import glob
import json
import os
import pathlib

from sb3_qsm.benchmarks.ablation import REFERENCE_SUITE, load_probe_references, load_probes, probe_table, screen_table
from sb3_qsm.benchmarks.aggregate import group, load_runs, summarize, write_report
from sb3_qsm.benchmarks.cost import cheaper_table, cost_table
from sb3_qsm.benchmarks.evaluation import describe_result, mean_return
from sb3_qsm.benchmarks.export_latency import table as export_latency_table
from sb3_qsm.benchmarks.profile import profile_table
from sb3_qsm.benchmarks.zoo_agents import plot_training_curves

with open(os.path.join(os.path.dirname(__file__), "..", "sb3_qsm", "version.txt")) as file_handler:
    __version__ = file_handler.read().strip()

project = "sb3-qsm"
author = "sb3-qsm contributors"
copyright = "sb3-qsm contributors"
version = __version__
release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "myst_parser",
    # MathJax bundled into the built pages, so that formulas render offline (Sphinx loads it from a CDN otherwise)
    "sphinx-mathjax-offline",
]

myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]

# Docstrings use reST field lists (:param x:), which autodoc renders natively
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autoclass_content = "class"

pygments_style = "sphinx"
html_theme = "sphinx_rtd_theme"
html_title = f"sb3-qsm {release}"
html_static_path = ["_static"]
html_css_files = ["tables.css"]


# Result tables, generated from the committed raw files at every build (never typed by hand)
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
GENERATED = os.path.join(os.path.dirname(__file__), "_generated")
# The shipped QSM agents (zoo layout), and SAC's zoo runs beside them
SHIPPED_AGENTS = sorted(pathlib.Path(ROOT, "rl-trained-agents", "qsm").glob("*_1"))
ZOO_SAC = pathlib.Path(ROOT, "benchmarks", "zoo", "sac")


def _evaluation(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    with open(path) as file:
        return json.load(file)


def _cell(record: dict | None) -> str:
    return "not run" if record is None else describe_result(record["deterministic"])


def _pretrained_table() -> str:
    """The shipped QSM agents' evaluations, beside SAC's run with the same zoo command where it has the same budget."""
    lines = ["| Task | Steps | QSM | SB3 SAC, same budget |", "| --- | --- | --- | --- |"]
    for run in SHIPPED_AGENTS:
        qsm = _evaluation(os.path.join(run, "evaluation.json"))
        sac = _evaluation(os.path.join(ZOO_SAC, run.name, "evaluation.json"))
        if qsm is None:
            continue
        if sac is not None and sac["n_timesteps"] != qsm["n_timesteps"]:
            sac_cell = f"not run at this budget ({sac['n_timesteps']:,} steps: {_cell(sac)})"
        else:
            sac_cell = _cell(sac)
        lines.append(f"| {qsm['env']} | {qsm['n_timesteps']:,} | {_cell(qsm)} | {sac_cell} |")
    return "\n".join(lines) + "\n"


def _stages_table(folder: str, stages: tuple[str, ...], header: str) -> str:
    """
    A row per raw file of ``benchmarks/<folder>``: the evaluations of the stages, the later ones as a share of the
    first's, and the fitted score scale.
    """
    lines = [header, "| --- " * (len(stages) + 2) + "|"]
    for path in sorted(glob.glob(os.path.join(ROOT, "benchmarks", folder, "*.json"))):
        result = _evaluation(path)
        assert result is not None
        source, *later = (result[stage] for stage in stages)
        cells = [describe_result(stage) for stage in (source, *later)]
        if mean_return(source) > 0:  # a ratio of negative returns reads backwards
            for index, stage in enumerate(later, start=1):
                cells[index] += f" ({mean_return(stage) / mean_return(source):.1%})"
        lines.append(f"| {result['args']['env']} | {' | '.join(cells)} | {result['score_scale']:.3g} |")
    if len(lines) == 2:
        return "No result committed yet.\n"
    return "\n".join(lines) + "\n"


def _convert_table() -> str:
    header = "| Task | SAC agent | Converted QSM, before any update | After 20k QSM steps | Fitted score scale |"
    return _stages_table("convert", ("source", "converted", "finetuned"), header)


def _pretrain_table() -> str:
    header = "| Task | Demonstrator | Pretrained QSM, before any update | After 20k QSM steps | Fitted score scale |"
    return _stages_table("pretrain", ("source", "pretrained", "finetuned"), header)


os.makedirs(GENERATED, exist_ok=True)
for name, table in (
    ("pretrained_table.md", _pretrained_table()),
    ("convert_table.md", _convert_table()),
    ("pretrain_table.md", _pretrain_table()),
):
    with open(os.path.join(GENERATED, name), "w") as file:
        file.write(table)
plot_training_curves(SHIPPED_AGENTS, ZOO_SAC, "SAC, zoo entry, same seed").savefig(
    os.path.join(GENERATED, "pretrained_curves.png"), dpi=110
)


def _benchmark_pages() -> None:
    """The benchmark report (tables and figures) and the cost tables, from benchmarks/results and benchmarks/cost."""
    for suite in ("v1", "v2", "dmc"):
        write_report(pathlib.Path(ROOT, "benchmarks", "results", suite), pathlib.Path(GENERATED, f"benchmarks_{suite}"))
    sections = []
    for path in sorted(glob.glob(os.path.join(ROOT, "benchmarks", "cost", "*.json"))):
        record = _evaluation(path)
        assert record is not None
        machine = record["environment"]["machine"]
        where = f"{record['device']}, {record['torch_threads']} torch thread(s), {machine['cpus']} logical CPUs"
        sections.append(f"**{record['env']}**, {where} (`{os.path.relpath(path, ROOT)}`):\n\n{cost_table(record)}")
    with open(os.path.join(GENERATED, "cost_tables.md"), "w") as file:
        file.write("\n".join(sections))
    profiles = []
    for path in sorted(glob.glob(os.path.join(ROOT, "benchmarks", "profile", "*.json"))):
        record = _evaluation(path)
        assert record is not None
        where = f"{record['algorithm']}, {record['steps_per_second']:.1f} steps/s"
        profiles.append(f"**{record['env']}**, {where} (`{os.path.relpath(path, ROOT)}`):\n\n{profile_table(record)}")
    with open(os.path.join(GENERATED, "profile_tables.md"), "w") as file:
        file.write("\n".join(profiles) or "No profile committed yet.\n")
    cheaper = ""
    cpu_cost = _evaluation(os.path.join(ROOT, "benchmarks", "cost", "HalfCheetah-v5.json"))
    cheaper_runs = load_runs(pathlib.Path(ROOT, "benchmarks", "results", "cheaper"))
    if cpu_cost is not None and cheaper_runs:
        for env, algos in group(cheaper_runs).items():
            summaries = {algo: summarize(runs) for algo, runs in algos.items()}
            cheaper += f"**{env}** (time per step: HalfCheetah-v5, `benchmarks/cost/HalfCheetah-v5.json`):\n\n"
            cheaper += cheaper_table(cpu_cost, summaries)
    with open(os.path.join(GENERATED, "cheaper_table.md"), "w") as file:
        file.write(cheaper or "No results committed yet.\n")
    latencies = []
    for path in sorted(glob.glob(os.path.join(ROOT, "benchmarks", "export", "*.json"))):
        record = _evaluation(path)
        assert record is not None
        where = f"{record['machine']['processor']}, torch {record['machine']['torch']}"
        latencies.append(
            f"**{pathlib.Path(path).stem}**, {where} (`{os.path.relpath(path, ROOT)}`):\n\n"
            + export_latency_table(record["records"])
        )
    with open(os.path.join(GENERATED, "export_latency.md"), "w") as file:
        file.write("\n".join(latencies) or "No latency committed yet.\n")
    screen = load_runs(pathlib.Path(ROOT, "benchmarks", "results", "screen"))
    with open(os.path.join(GENERATED, "ablation_table.md"), "w") as file:
        file.write(screen_table(screen, load_runs(pathlib.Path(ROOT, "benchmarks", "results", REFERENCE_SUITE))))
    probes = load_probes(pathlib.Path(ROOT, "benchmarks", "probes"))
    with open(os.path.join(GENERATED, "probe_table.md"), "w") as file:
        file.write(probe_table(probes, load_probe_references(pathlib.Path(ROOT, "benchmarks", "results"))))


_benchmark_pages()
