r"""Publish a finished ablation study: its report and every cell's config into benchmarks/results/<name>/, and
its section into docs/results.md.

    python benchmarks/publish_study.py STUDY_DIR --name NAME --config recipes/ablations/NAME.yaml \
        [--readme docs/results.md] [--before '## Publishing a study here'] [--dest benchmarks/results]

STUDY_DIR is the `--output_dir` of a finished `recipes/ablate.py` run (its `results.{md,json,png}` written by
the last call, which skips every finished cell). Written into `<dest>/<name>/`:

- `results.md`, `results.json`, `results.png`, and `analysis_plan.json` when the study was pre-registered;
- `runs/{pretrain,finetune}/<variant or method>/seedN.yaml`: each cell's `ablation_run.yaml`, rerunnable
  alone with `python recipes/{pretrain,finetune}.py <that file>`;
- `records/`, when the study kept them (recipes/ablate.py writes them): what `make results` renders the
  report and the runs' reference model cards (`model_cards/reference/<name>/`) from.

Local paths never leave the machine: each data set path a cell read is replaced by the placeholder the study
config names for it (`pretrain.affective_sources`, `finetune.dataset`), the study folder by
`outputs/ablations/<name>`, and the script stops, naming the file, if any other absolute path is left.

The section in docs/results.md (between `<!-- study:NAME -->` and `<!-- /study:NAME -->`, replaced when present, else
inserted before the `--before` heading) holds the command that reproduces the study with placeholder paths,
the report as measured, the cost (the runs' wall-clock) and the links. What the numbers mean in words is
written by hand under it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from emoreg_hf.ablation.records import RECORDS  # noqa: E402
from emoreg_hf.config_reading import read_yaml  # noqa: E402
from emoreg_hf.publish.scrub import ABS_PATH_RE, PLACEHOLDER  # noqa: E402

STAGES = ("pretrain", "finetune")


def cells(study: Path) -> list[Path]:
    """The study's finished cells (a run record and the runner's config), stage-1 first."""
    found = [
        run
        for stage in STAGES
        for run in sorted((study / stage).glob("*/seed*"))
        if (run / "ablation_run.yaml").is_file() and (run / "run_info.json").is_file()
    ]
    if not found:
        raise SystemExit(
            f"{study}: no finished cells (pretrain/*/seed*/ or finetune/*/seed*/ with run_info.json)"
        )
    return found


def _paths(value) -> list[str]:
    """The `path` (or `data_dir`) entries of a data set spec: a mapping, a list of them, or a string."""
    if isinstance(value, list):
        return [p for item in value for p in _paths(item)]
    if isinstance(value, dict):
        return [str(value[k]) for k in ("path", "data_dir") if isinstance(value.get(k), str)]
    return [value] if isinstance(value, str) else []


def data_placeholders(study_cells: list[Path], config: dict) -> dict[str, str]:
    """{local data path: the config's placeholder}, pairing each cell's data specs with the config's."""
    wanted = {
        "affective_sources": _paths((config.get("pretrain") or {}).get("affective_sources")),
        "dataset": _paths((config.get("finetune") or {}).get("dataset")),
    }
    wanted["target_dataset"] = wanted["dataset"]  # the positive control's stage 1 reads stage 2's data
    mapping: dict[str, str] = {}
    for run in study_cells:
        values = read_yaml(run / "ablation_run.yaml")
        for key, placeholders in wanted.items():
            local = _paths(values.get(key))
            if not local:
                continue
            if len(local) != len(placeholders):
                raise SystemExit(
                    f"{run}/ablation_run.yaml: `{key}` has {len(local)} paths, the config {len(placeholders)}"
                )
            for path, placeholder in zip(local, placeholders):
                if path != placeholder:
                    mapping[path] = placeholder
    return mapping


def rewrite(text: str, replacements: dict[str, str]) -> str:
    for old in sorted(replacements, key=len, reverse=True):  # the longest first: a path inside another
        text = text.replace(old, replacements[old])
    return text


def _local(token: str) -> bool:
    """An absolute path of this machine: two parts or more, the first a folder here (`/tmp/x`, `/home/u`),
    not a placeholder (`/path/to/x`) nor markup that looks like a path (`<!-- /study:x -->`, `/seedN.yaml`)."""
    parts = Path(token).parts
    return not token.startswith(PLACEHOLDER) and len(parts) > 2 and Path(parts[0], parts[1]).is_dir()


def check_no_local_paths(path: Path, text: str) -> None:
    left = sorted({m.group(0) for m in ABS_PATH_RE.finditer(text) if _local(m.group(0))})
    if left:
        raise SystemExit(f"{path}: local absolute path(s) left after rewriting: {left[:5]}; nothing written")


def cell_yaml(run: Path, study: Path, dest: Path, replacements: dict[str, str]) -> tuple[Path, str]:
    stage, name, seed = run.relative_to(study).parts
    target = dest / "runs" / stage / name / f"{seed}.yaml"
    body = yaml.safe_dump(read_yaml(run / "ablation_run.yaml"), sort_keys=False)
    header = (
        "# One cell of the study as the ablation runner wrote it (local data paths replaced by placeholders;\n"
        "# a stage-2 cell reads its stage-1 cell from affect_model_name_or_path). Rerun it alone with:\n"
        f"#   python recipes/{stage}.py benchmarks/results/{dest.name}/runs/{stage}/{name}/{seed}.yaml\n"
    )
    return target, header + rewrite(body, replacements)


def cost(study_cells: list[Path]) -> str:
    seconds: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for run in study_cells:
        marker = (
            json.loads((run / "ablation_run.json").read_text())
            if (run / "ablation_run.json").is_file()
            else {}
        )
        if isinstance(marker.get("seconds"), (int, float)):
            seconds[run.parent.parent.name].append(float(marker["seconds"]))
    parts = [
        f"{stage}: {len(s)} run(s), median {statistics.median(s) / 60:.1f} min, total {sum(s) / 3600:.2f} h"
        for stage, s in seconds.items()
        if s
    ]
    total = sum(sum(s) for s in seconds.values())
    return (
        "**Cost** (wall-clock of each run as the runner measured it, summed over runs; runs side by side "
        f"overlap, and the machine may have been shared): {'; '.join(parts)}; {total / 3600:.2f} h of run time in all."
    )


def _flow(value) -> str:
    """A data spec as one line of YAML for the shell, without its `obtain` notes."""
    if isinstance(value, list):
        value = [
            {k: v for k, v in item.items() if k != "obtain"} if isinstance(item, dict) else item
            for item in value
        ]
    elif isinstance(value, dict):
        value = {k: v for k, v in value.items() if k != "obtain"}
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()


def command(config_path: str, config: dict) -> str:
    sources = _flow((config.get("pretrain") or {}).get("affective_sources"))
    dataset = _flow((config.get("finetune") or {}).get("dataset"))
    return (
        f"python recipes/ablate.py {config_path} \\\n"
        f"  --pretrain.affective_sources '{sources}' \\\n"
        f"  --finetune.dataset '{dataset}' --parallel 2"
    )


def section(name: str, config_path: str, config: dict, report: str, cost_line: str, root: str = "") -> str:
    """The study's section; `root` is the repository as seen from the file it goes into ('../' from docs/)."""
    return (
        f"<!-- study:{name} -->\n"
        f"{report.strip()}\n\n"
        f"Reproduce it (the same command resumes an interrupted study; `--parallel 2` runs two cells side by side):\n\n"
        f"```bash\n{command(config_path, config)}\n```\n\n"
        f"{cost_line}\n\n"
        f"Every cell's config: `benchmarks/results/{name}/runs/{{pretrain,finetune}}/<name>/seedN.yaml` (rerun one "
        f"with `python recipes/finetune.py <file>` after replacing the placeholder data paths; a stage-2 cell "
        f"reads its stage-1 cell from `outputs/ablations/{name}/pretrain/`). All of it: "
        f"[`benchmarks/results/{name}/`]({root}benchmarks/results/{name}/results.md).\n"
        f"<!-- /study:{name} -->\n"
    )


def put_section(readme: Path, name: str, text: str, before: str) -> None:
    current = readme.read_text()
    block = re.compile(rf"<!-- study:{re.escape(name)} -->.*?<!-- /study:{re.escape(name)} -->\n?", re.S)
    if block.search(current):
        updated = block.sub(lambda _: text, current, count=1)
    elif f"\n{before}\n" in current:
        updated = current.replace(f"\n{before}\n", f"\n{text}\n{before}\n", 1)
    else:
        raise SystemExit(f"{readme}: neither the study's markers nor the heading {before!r} found")
    readme.write_text(updated)


def publish(
    study: Path, name: str, config_path: str, dest_root: Path, readme: Path | None, before: str
) -> Path:
    if not (study / "results.md").is_file():
        raise SystemExit(f"{study}/results.md missing: rerun the study's command so it writes its report")
    config_file = REPO / config_path if not Path(config_path).is_absolute() else Path(config_path)
    config = read_yaml(config_file)
    shown = (
        config_file.resolve().relative_to(REPO).as_posix()
        if config_file.resolve().is_relative_to(REPO)
        else f"recipes/ablations/{config_file.name}"  # where a study config belongs
    )
    study_cells = cells(study)
    replacements = {
        **data_placeholders(study_cells, config),
        str(study.resolve()): f"outputs/ablations/{name}",
    }
    if str(study) != str(study.resolve()):
        replacements[str(study)] = f"outputs/ablations/{name}"
    dest = dest_root / name
    files: dict[Path, str] = {}
    for file in ("results.md", "results.json", "analysis_plan.json"):
        if (study / file).is_file():
            files[dest / file] = rewrite((study / file).read_text(), replacements)
    for run in study_cells:
        target, text = cell_yaml(run, study, dest, replacements)
        files[target] = text
    records = study / RECORDS  # the report's and the reference cards' source (`make results`)
    for path in sorted(records.rglob("*")) if records.is_dir() else []:
        if path.is_file():
            files[dest / RECORDS / path.relative_to(records)] = rewrite(path.read_text(), replacements)
    for target, text in files.items():
        check_no_local_paths(target, text)
    if dest.exists():
        shutil.rmtree(dest)
    for target, text in files.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    if (study / "results.png").is_file():
        shutil.copyfile(study / "results.png", dest / "results.png")
    if readme is not None:
        where = readme.resolve().parent
        root = (Path(os.path.relpath(REPO, where)).as_posix() + "/") if where.is_relative_to(REPO) else ""
        text = section(
            name, shown, config, files[dest / "results.md"], cost(study_cells), root.removeprefix("./")
        )
        check_no_local_paths(readme, text)
        put_section(readme, name, text, before)
    return dest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("study", type=Path, help="the study's --output_dir")
    parser.add_argument("--name", required=True, help="the folder under --dest and the section markers' name")
    parser.add_argument("--config", required=True, help="the study config, relative to the repository")
    parser.add_argument("--dest", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument(
        "--readme", type=Path, default=REPO / "docs" / "results.md", help="'none' to leave it alone"
    )
    parser.add_argument(
        "--before", default="## Publishing a study here", help="the heading a new section goes before"
    )
    args = parser.parse_args(argv)
    readme = None if str(args.readme) == "none" else args.readme
    dest = publish(args.study, args.name, args.config, args.dest, readme, args.before)
    print(f"published {args.study} -> {dest}" + (f"; section in {readme}" if readme else ""))


if __name__ == "__main__":
    main()
