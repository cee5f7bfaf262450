"""One process owns the run folder: with several processes (torchrun, accelerate launch, several nodes),
a decision about the folder (is this run finished? which checkpoint is resumed, which one set aside? what
is cleared?) is made by the main process alone, and the others wait for it and take its answer.

Every rank deciding for itself races: one renames a bad checkpoint while another still reads it, and the
job dies exactly when it was restarted to recover. `main_process_decides` wraps a function of the run
folder so that only global rank 0 runs it; the others wait at the broadcast of its outcome and return the
same value, or exit with the same status when it failed (the main process alone prints why).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def _exit_status(error: BaseException) -> int:
    """The status the failing main process exits with (cli.run_script: a bad input is 2)."""
    if isinstance(error, SystemExit):
        return error.code if isinstance(error.code, int) else 1
    return 2 if isinstance(error, (ValueError, FileNotFoundError)) else 1


def _several_processes(training_args) -> bool:
    import torch.distributed as dist

    # `world_size` sets up the process group (accelerate's PartialState) when a launcher started several
    several = getattr(training_args, "world_size", 1) > 1
    return several and dist.is_available() and dist.is_initialized()


def _from_main(outcome: Any = None) -> Any:
    """Rank 0 sends `outcome`; every rank returns it (the others block until rank 0 has decided)."""
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([outcome], from_process=0)[0]


def main_process_decides(fn: F) -> F:
    """Run `fn(training_args, ...)` on the main process only; the other processes wait and get its result,
    or exit with its exit status (without repeating its message) when it raised."""

    @functools.wraps(fn)
    def decided(training_args, *args, **kwargs):
        if not _several_processes(training_args):
            return fn(training_args, *args, **kwargs)
        if training_args.process_index == 0:
            try:
                result = fn(training_args, *args, **kwargs)
            except BaseException as error:
                _from_main(("failed", _exit_status(error)))
                raise
            _from_main(("done", result))
            return result
        kind, value = _from_main()
        if kind == "failed":
            raise SystemExit(value)  # the main process reports the reason
        return value

    return decided  # type: ignore[return-value]
