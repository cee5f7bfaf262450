"""The licence ids a Hub model card may name, and the check of `--license` against them (the Hub shows an
unknown id as no licence at all, so a typo would publish a model without one)."""

from __future__ import annotations

import difflib

# The "License identifier (to use in repo card)" column of the Hub's list of licences,
# https://huggingface.co/docs/hub/repositories-licenses (huggingface/hub-docs, docs/hub/repositories-licenses.md),
# plus the ids added there since (eupl-1.2, the Llama 3.x and 4 licences, apple-ascl). `other` asks for the
# licence's text in a LICENSE file and a `license_name`; `unknown` says it is not known.
HUB_LICENSES = (
    "apache-2.0",
    "mit",
    "openrail",
    "bigscience-openrail-m",
    "creativeml-openrail-m",
    "bigscience-bloom-rail-1.0",
    "bigcode-openrail-m",
    "afl-3.0",
    "artistic-2.0",
    "bsl-1.0",
    "bsd",
    "bsd-2-clause",
    "bsd-3-clause",
    "bsd-3-clause-clear",
    "c-uda",
    "cc",
    "cc0-1.0",
    "cc-by-2.0",
    "cc-by-2.5",
    "cc-by-3.0",
    "cc-by-4.0",
    "cc-by-sa-3.0",
    "cc-by-sa-4.0",
    "cc-by-nc-2.0",
    "cc-by-nc-3.0",
    "cc-by-nc-4.0",
    "cc-by-nd-4.0",
    "cc-by-nc-nd-3.0",
    "cc-by-nc-nd-4.0",
    "cc-by-nc-sa-2.0",
    "cc-by-nc-sa-3.0",
    "cc-by-nc-sa-4.0",
    "cdla-sharing-1.0",
    "cdla-permissive-1.0",
    "cdla-permissive-2.0",
    "wtfpl",
    "ecl-2.0",
    "epl-1.0",
    "epl-2.0",
    "etalab-2.0",
    "eupl-1.1",
    "eupl-1.2",
    "agpl-3.0",
    "gfdl",
    "gpl",
    "gpl-2.0",
    "gpl-3.0",
    "lgpl",
    "lgpl-2.1",
    "lgpl-3.0",
    "isc",
    "lppl-1.3c",
    "ms-pl",
    "apple-ascl",
    "mpl-2.0",
    "odc-by",
    "odbl",
    "openrail++",
    "osl-3.0",
    "postgresql",
    "ofl-1.1",
    "ncsa",
    "unlicense",
    "zlib",
    "pddl",
    "lgpl-lr",
    "deepfloyd-if-license",
    "llama2",
    "llama3",
    "llama3.1",
    "llama3.2",
    "llama3.3",
    "llama4",
    "gemma",
    "unknown",
    "other",
)


def check_license(given: str | None) -> None:
    """`--license ID` must be one of the Hub's licence ids (`HUB_LICENSES`); `ValueError` suggests the closest."""
    if given is None or given in HUB_LICENSES:
        return
    wanted = given.strip().lower()  # the Hub's ids are lower case: `MIT` is `mit`
    close = (
        [wanted]
        if wanted in HUB_LICENSES
        else difflib.get_close_matches(wanted, HUB_LICENSES, n=3, cutoff=0.5)
    )
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise ValueError(
        f"--license {given!r} is not a licence id the Hub knows{hint}; nothing was written. Give one of the ids "
        "listed at https://huggingface.co/docs/hub/repositories-licenses (e.g. apache-2.0, mit, cc-by-4.0), or "
        "`other` for a licence of your own."
    )
