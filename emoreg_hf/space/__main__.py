"""`python -m emoreg_hf.space RUN_DIR_OR_REPO [--port N]`: serve the EmoReg demo on 127.0.0.1."""

import sys


def _run() -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        print("error: the demo needs gradio: pip install 'emoreg-hf[space]'", file=sys.stderr)
        return 1
    from .app import main

    return main()


if __name__ == "__main__":
    raise SystemExit(_run())
