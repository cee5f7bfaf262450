"""The recipes' command line: `recipe.py [CONFIG.yaml] [--key value ...]`.

Built on `HfArgumentParser` the way TRL's YAML-plus-CLI parser is: the YAML gives the defaults, the command
line overrides them, `-h` lists every key (the recipe's own and `TrainingArguments`) with its help and
default, grouped. Values are YAML on the command line too, so structured keys work
(`--dataset '{path: parquet, data_dir: ./cifar}'`); YAML 1.1's `no` stays the word for strategy fields;
unknown keys fail with the closest known names. With no CONFIG the recipe's demo YAML is used (and said).
The config file and the raw tokens are read by `config_reading`; `run_script` turns a bad input into a
one-line error and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import enum
import os
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser, TrainingArguments

from .config_reading import ConfigError, read_overrides, read_yaml, split_config_argument, yaml_value
from .configs import DataArguments
from .configuration_emoreg import EmoRegOptions, option_choices
from .training_options import check_training_values

# Keys that name the same thing two ways: the one given on the command line replaces the other from a YAML.
EXCLUSIVE_KEYS = (("model_name_or_path", "model_config"), ("task_model_name_or_path", "task_model_config"))


# A negative number as argparse should see it: -1, -0.5, -.5, and with an exponent, -1e-3.
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _members(tp) -> list:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(tp) if a is not type(None)]
    return [tp]


def _is_textual(tp) -> bool:
    """A field whose value is a word (str or an enum such as IntervalStrategy), never a structure or bool."""
    members = _members(tp)
    if any(typing.get_origin(m) in (list, dict) or m in (list, dict, bool) for m in members):
        return False
    return any(isinstance(m, type) and issubclass(m, str | enum.Enum) for m in members)


def convert(name: str, raw: Any, tp, default: Any = None) -> Any:
    """A command-line string (or a YAML scalar) to the field's type. `none` is None for optional fields whose
    default is None, and the word itself elsewhere (`--report_to none`)."""
    members = _members(tp)
    if isinstance(raw, bool) and _is_textual(tp):  # YAML 1.1 read `no` as False
        return "yes" if raw else "no"
    base = members[0] if len(members) == 1 else None
    if base is int and isinstance(raw, float):  # a YAML number for a whole-number option
        if not raw.is_integer():
            raise ConfigError(f"--{name}: {raw!r} is not a whole number")
        return int(raw)
    if not isinstance(raw, str):
        return raw
    optional = len(members) < len(typing.get_args(tp)) and default is None
    if raw.lower() in ("none", "null") and optional:
        return None
    try:
        if base is bool:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1", "yes")
        if base is int:
            return int(raw)
        if base is float:
            return float(raw)
    except ValueError:
        raise ConfigError(f"--{name}: cannot read {raw!r} as {base.__name__}") from None
    if _is_textual(tp):
        return raw
    return yaml_value(raw)


_DATA_GROUP, _EMOREG_GROUP = "data and augmentation (both stages)", "EmoReg options"


def _group_of(script_class: type, field: dataclasses.Field) -> str:
    if field.name in {f.name for f in dataclasses.fields(EmoRegOptions)}:
        return _EMOREG_GROUP
    if field.name in {f.name for f in dataclasses.fields(DataArguments)}:
        return _DATA_GROUP
    return f"{script_class.__doc__.strip().splitlines()[0].rstrip('.')} ({script_class.__name__})"


def _help_text(field: dataclasses.Field) -> str:
    """A field's help for -h: its help, its allowed words where it has a fixed set, and its default."""
    help_text = " ".join((field.metadata.get("help") or "").split())
    if field.metadata.get("choices") is not None:
        help_text = f"{help_text} {', '.join(option_choices(field))}.".strip()
    return help_text + _default_text(field)


def _metavar(tp) -> str:
    """What a value looks like, for -h: BOOL, INT, FLOAT, a word, or YAML (lists, mappings)."""
    members = _members(tp)
    for kind, name in ((bool, "BOOL"), (int, "INT"), (float, "FLOAT")):
        if kind in members:
            return name
    return "WORD" if _is_textual(tp) else "YAML"


def _default_text(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        default = field.default
    elif field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    else:
        return ""
    default = getattr(default, "value", default)
    return f" (default: {default!r})" if default not in ("", None) else ""


class RecipeArgumentParser(HfArgumentParser):
    """`HfArgumentParser` over (the recipe's arguments, `TrainingArguments`): YAML defaults, CLI overrides.

    After `parse`, `given_keys` holds every key the YAML or the command line set, `cli_keys` those the
    command line set (the recipes choose logging intervals only where the user chose none), and
    `from_demo_config` those the demo YAML set because no config was given.
    """

    def __init__(
        self, script_class: type, default_config: str | Path | None = None, *, description: str = ""
    ):
        self.script_class = script_class
        self.default_config = default_config
        self.types_by_name: dict[str, Any] = {}
        self.defaults_by_name: dict[str, Any] = {}
        self.given_keys: set[str] = set()
        self.cli_keys: set[str] = set()
        self.from_demo_config: set[str] = (
            set()
        )  # keys whose value came from the demo YAML, used for want of a config
        super().__init__(
            (script_class, TrainingArguments),
            usage="%(prog)s [CONFIG.yaml | --config CONFIG.yaml] [--key value ...]",
            description=description,
            epilog="Values are YAML: --dataset '{path: parquet, data_dir: ./cifar}'. The CONFIG file gives "
            "defaults, the command line overrides them"
            + (f"; with no CONFIG, {_shown(default_config)} is used." if default_config else "."),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            allow_abbrev=False,
        )
        # argparse reads `-1e-3` as an option (its pattern knows -1 and -0.001 only), so `--learning_rate -1e-3`
        # failed with "expected one argument" instead of the learning rate's own refusal
        self._negative_number_matcher = NEGATIVE_NUMBER
        self.add_argument(  # read by split_config_argument; listed here for -h
            "--config",
            metavar="CONFIG.yaml",
            dest="_config",
            default=argparse.SUPPRESS,
            help="The config file, the same as giving it first.",
        )

    def _add_dataclass_arguments(self, dtype: type) -> None:
        """One option per field, grouped, with its help and default; values are converted after parsing."""
        hints = typing.get_type_hints(dtype)
        groups: dict[str, argparse._ArgumentGroup] = {}
        rank = {_DATA_GROUP: 0, _EMOREG_GROUP: 2}  # the recipe's own keys (1) between these two
        ordered = sorted(
            dataclasses.fields(dtype),
            key=lambda f: 0 if dtype is TrainingArguments else rank.get(_group_of(dtype, f), 1),
        )
        for field in ordered:
            if not field.init or field.name.startswith("_"):
                continue
            tp = hints.get(field.name, field.type)
            self.types_by_name[field.name] = tp
            self.defaults_by_name[field.name] = (
                None if field.default is dataclasses.MISSING else field.default
            )
            if dtype is TrainingArguments:
                title = "TrainingArguments (transformers; see its documentation)"
            else:
                title = _group_of(dtype, field)
            group = groups.get(title) or groups.setdefault(title, self.add_argument_group(title))
            is_bool = bool in _members(tp)
            help_text = _help_text(field)
            group.add_argument(
                f"--{field.name}",  # `--a-b` is read as `--a_b` before parsing
                dest=field.name,
                default=argparse.SUPPRESS,
                nargs="?" if is_bool else None,
                const="true" if is_bool else None,
                metavar=_metavar(tp),
                help=help_text.replace("%", "%%") or None,
            )

    def parse(self, argv: list[str] | None = None, *, exit_on_error: bool | None = None) -> tuple:
        """Return `(script_args, training_args, config_path)`. As a script (`argv` None) a bad input prints
        usage and the reason and exits 2, like argparse; called with `argv`, it raises `ValueError`."""
        exit_on_error = argv is None if exit_on_error is None else exit_on_error
        argv = list(sys.argv[1:] if argv is None else argv)
        try:
            return self._parse(argv)
        except (ValueError, FileNotFoundError) as error:
            if not exit_on_error:
                raise
            self.error(str(error))

    def _parse(self, argv: list[str]) -> tuple:
        config_path, argv = split_config_argument(argv)
        explicit_config = config_path is not None
        argv = [_underscored(token) for token in argv]
        namespace, unknown = self.parse_known_args(argv)  # -h / --help print and exit here
        values: dict[str, Any] = {}
        if config_path is not None:
            values = read_yaml(config_path)
        elif self.default_config is not None:
            config_path = str(self.default_config)
            values = read_yaml(config_path)
            print(
                f"[emoreg-hf] no config file given: using the demo config {_shown(config_path)} "
                "(synthetic data); pass a YAML to run your own",
                file=sys.stderr,
            )
        if unknown:
            read_overrides(unknown)  # a stray positional gets its own message
        cli = vars(namespace)
        self._check_known(
            {**values, **{k[2:].split("=", 1)[0]: None for k in unknown if k.startswith("--")}},
            config_path,
        )
        for given in cli:
            for group in EXCLUSIVE_KEYS:
                if given in group:
                    for other in group:
                        if other != given and other in values and other not in cli:
                            values.pop(other)
                            print(
                                f"[emoreg-hf] --{given} replaces {other} from {_shown(config_path)}",
                                file=sys.stderr,
                            )
        merged = {
            k: convert(k, v, self.types_by_name[k], self.defaults_by_name[k]) for k, v in values.items()
        }
        for key, raw in cli.items():
            merged[key] = convert(key, raw, self.types_by_name[key], self.defaults_by_name[key])
        distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if "use_cpu" not in merged and (distributed or merged.get("bf16")) and not _has_accelerator():
            # A CPU-only machine: under torchrun each rank would silently train alone without use_cpu, and
            # TrainingArguments refuses bf16 without it (with it, bf16 is CPU autocast).
            merged["use_cpu"] = True
            if merged.get("bf16"):
                print("[emoreg-hf] no GPU: bf16 runs as CPU autocast (use_cpu)", file=sys.stderr)
        self.given_keys, self.cli_keys = set(merged), set(cli)
        demo = (
            config_path is not None
            and self.default_config is not None
            and config_path == str(self.default_config)
        )
        self.from_demo_config = set(values) - set(cli) if demo and not explicit_config else set()
        _check_deepspeed_installed(merged)
        script_args, training_args = self.parse_dict(merged)
        if merged.get("report_to") in ("all", ["all"]) and not training_args.report_to:
            print(
                "[emoreg-hf] report_to all: no tracker is installed, so this run logs to the console and "
                "trainer_state.json only (TensorBoard: pip install -e '.[tensorboard]')",
                file=sys.stderr,
            )
        check_training_values(training_args)
        return script_args, training_args, config_path

    def _check_known(self, values: dict, config_path: str | None) -> None:
        unknown = [k for k in values if k not in self.types_by_name]
        if unknown:
            lines = []
            for key in unknown:
                close = difflib.get_close_matches(key, self.types_by_name, n=3, cutoff=0.6)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                lines.append(f"  {key}{hint}")
            where = f" in {config_path} or the command line" if config_path else ""
            raise ConfigError("unknown keys" + where + ":\n" + "\n".join(lines) + "\n(-h lists every key)")


def _underscored(token: str) -> str:
    """`--push-to-hub=x` -> `--push_to_hub=x`; values are left alone."""
    if not token.startswith("--"):
        return token
    key, sep, value = token[2:].partition("=")
    return "--" + key.replace("-", "_") + sep + value


def _shown(path: str | Path | None) -> str:
    """A path relative to the working directory when it is below it."""
    if path is None:
        return ""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    except ValueError:
        return str(path)


def _check_deepspeed_installed(values: dict) -> None:
    """`--deepspeed` or an accelerate DeepSpeed config without the package: one line, not transformers'
    PackageNotFoundError traceback from inside TrainingArguments."""
    import importlib.util

    asked = values.get("deepspeed") or os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
    if asked and importlib.util.find_spec("deepspeed") is None:
        how = (
            f"--deepspeed {values['deepspeed']}"
            if values.get("deepspeed")
            else "the accelerate DeepSpeed config"
        )
        raise ConfigError(
            f"{how} needs the deepspeed package, which is not installed: pip install -e '.[deepspeed]' "
            "(docs/scale.md says what DeepSpeed ran here)"
        )


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def run_script(main) -> None:
    """Run a recipe's `main`: a bad input (a `ValueError` or `FileNotFoundError` raised with a message for
    the user) ends with that message and exit status 2, not a traceback (EMOREG_TRACEBACK=1 shows it). A run
    stopped on request (pre-emption: `callbacks.CheckpointOnStopRequest`) ends with status 75 once its
    checkpoint is saved, and so does a start while that request stands (a launcher's restart of the ranks)."""
    from .preemption import PREEMPTED_EXIT, STOP_FILE_ENV, TrainingPreempted, stop_file_present

    name = os.path.basename(sys.argv[0]) or "emoreg-hf"
    if stop_file_present():
        print(
            f"{name}: a stop was requested ({os.environ[STOP_FILE_ENV]} exists): not starting",
            file=sys.stderr,
        )
        raise SystemExit(PREEMPTED_EXIT)
    try:
        main()
    except TrainingPreempted as stopped:
        print(f"{name}: {stopped}", file=sys.stderr)
        raise SystemExit(PREEMPTED_EXIT) from None
    except (ValueError, FileNotFoundError) as error:
        if os.environ.get("EMOREG_TRACEBACK"):
            raise
        print(f"{name}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
