"""Reading what a recipe is given, before it is parsed: the YAML config file (a syntax error names the file
and line), where that file is on the command line (first, or `--config`), and the `--key value` tokens read
as YAML values. `cli.RecipeArgumentParser` and the ablation's command line build on it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config file or command line that cannot be read; the message names the file, line or key."""


def read_yaml(path: str | os.PathLike) -> dict:
    """A YAML mapping from a file; a syntax error names the file and the line."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(
            f"config file {str(path)!r} is a directory; a config must be a YAML file (CONFIG.yaml)"
        )
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of keys to values, got {type(values).__name__}")
    return values


def yaml_value(raw: str) -> Any:
    """A command-line value read as YAML (numbers, lists, dicts); YAML 1.1 booleans spelled as words
    (`no`, `on`, ...) stay words, since `--eval_strategy no` means the string."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as error:
        raise ConfigError(
            f"cannot read {raw!r} as a YAML value: {getattr(error, 'problem', error)}"
        ) from None
    if isinstance(value, bool) and raw.lower() not in ("true", "false"):
        return raw
    return value


def read_overrides(argv: list[str]) -> dict[str, str]:
    """`--key value`, `--key=value` and bare `--flag` (true) -> {key: raw string}; `-` in keys reads as `_`."""
    overrides, i = {}, 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--"):
            raise ConfigError(
                f"unexpected argument {token!r}: options are --key value (the config file comes first)"
            )
        key = token[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            value = argv[i + 1]
            i += 2
        else:  # a bare flag: --push_to_hub
            value = "true"
            i += 1
        overrides[key.replace("-", "_")] = value
    return overrides


def split_config_argument(argv: list[str]) -> tuple[str | None, list[str]]:
    """The config file and the other arguments. The file comes first (`recipe.py CONFIG.yaml ...`) or as
    `--config CONFIG.yaml` anywhere (`--config=...` too), the way TRL, timm and the alignment-handbook take it."""
    argv = list(argv)
    config_path = argv.pop(0) if argv and not argv[0].startswith("-") else None
    for i, token in enumerate(argv):
        if token == "--config" or token.startswith("--config="):
            value = token.split("=", 1)[1] if "=" in token else (argv[i + 1] if i + 1 < len(argv) else None)
            if not value or value.startswith("-"):
                raise ConfigError("--config needs a file: --config CONFIG.yaml")
            if config_path is not None:
                raise ConfigError(
                    f"two config files: {config_path!r} and --config {value!r}; give one (first, or as --config)"
                )
            config_path = value
            del argv[i : i + (1 if "=" in token else 2)]
            break
    return config_path, argv


__all__ = ["ConfigError", "read_overrides", "read_yaml", "split_config_argument", "yaml_value"]
