"""`python -m emoreg_hf.space RUN_DIR_OR_REPO [--port N]`: serve the EmoReg demo on 127.0.0.1.

On a run folder of the embedded demo, and with no `--example` given, the page offers a few of the demo's own
synthetic test images (they are emoreg-hf's to share); real data sets' images are never offered.
"""

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def run_folder_examples(argv: list[str]):
    """`--example` arguments for the run folder's own shareable images (the demo's), in a folder of their
    own that lives as long as the app; none for a Hub repo, a real data set, or when examples were given."""
    from .app import parse_args

    args = parse_args(argv)
    model = args.model or os.environ.get("EMOREG_MODEL")
    if args.example or not model or not os.path.isfile(os.path.join(model, "run_info.json")):
        yield []
        return
    from .examples import demo_examples

    with tempfile.TemporaryDirectory(prefix="emoreg-space-examples-") as folder:
        try:
            examples = demo_examples(model, folder)
        except (ValueError, OSError):  # an unreadable record: the app itself reports what is wrong
            examples = []
        yield [item for path, _ in examples for item in ("--example", str(path))]


def _run() -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        print("error: the demo needs gradio: pip install 'emoreg-hf[space]'", file=sys.stderr)
        return 1
    from .app import main

    argv = sys.argv[1:]
    with run_folder_examples(argv) as examples:
        return main(argv + examples)


if __name__ == "__main__":
    raise SystemExit(_run())
