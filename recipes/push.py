"""Publish one or more run folders (seeds of one configuration) as a Hub model repository.

    python recipes/push.py RUN_DIR [RUN_DIR ...] --repo_id org/name [--compare CONTROL_DIR ...]
                           [--private] [--revision BRANCH] [--create_pr] [--dry_run | --export_dir DIR]
                           [--overwrite] [--space_id org/name [--space_examples IMAGE ...]]

The first folder gives the weights and plots; all of them give the results (mean ± std over seeds).
`--compare` adds other configurations (baseline, transfer, shuffled-emotion and no-pretraining controls;
several seeds of one configuration are averaged) to the card's Controls table.
`--dry_run` prints the file list and the model card and touches no network; `--export_dir DIR` writes
exactly the folder that would be uploaded into DIR, for review, and stops. `--space_id` also builds a
Gradio Space (app, pinned requirements, metadata, example images) that demos the model, and links it from
the card.
"""

import argparse
import logging
import sys

from emoreg_hf.publish import HubPushError, push_to_hub


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "run_dirs",
        nargs="+",
        help="--output_dir of recipes/pretrain.py or recipes/finetune.py (one per seed)",
    )
    parser.add_argument(
        "--repo_id", required=True, help="target model repository, e.g. org/emoreg-vit-cifar100"
    )
    parser.add_argument(
        "--compare",
        nargs="+",
        default=[],
        metavar="RUN_DIR",
        help="run folders of other configurations (baseline, controls) to report next to this one",
    )
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument(
        "--revision", default=None, help="branch to push to (created if missing; default main)"
    )
    parser.add_argument("--create_pr", action="store_true", help="open a pull request instead of committing")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--dry_run", action="store_true", help="print the files and the card; no network")
    target.add_argument(
        "--export_dir",
        default=None,
        metavar="DIR",
        help="write exactly the folder that would be uploaded into DIR (new or empty) and stop; no network",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing README.md at the revision"
    )
    parser.add_argument(
        "--license",
        default=None,
        metavar="ID",
        help="the model card's licence: a Hub licence id (huggingface.co/docs/hub/repositories-licenses: "
        "apache-2.0, mit, cc-by-4.0, ..., other); default: the training data's when "
        "emoreg-hf knows it (its synthetic demo data: apache-2.0), else `other` with a note on the card",
    )
    parser.add_argument("--commit_message", default=None, help="commit message (default: a summary)")
    parser.add_argument(
        "--space_id",
        default=None,
        metavar="ORG/NAME",
        help="also publish a Gradio Space that demos the model (the card links it); "
        "with --export_dir, DIR gets model/ and space/",
    )
    parser.add_argument(
        "--space_examples",
        nargs="+",
        default=[],
        metavar="IMAGE",
        help="example images for the Space (yours to share); by default only the demo data's synthetic "
        "images are used, since real data sets' test images may not be redistributed",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        url = push_to_hub(
            args.run_dirs,
            args.repo_id,
            private=args.private,
            revision=args.revision,
            create_pr=args.create_pr,
            overwrite=args.overwrite,
            dry_run=args.dry_run,
            export_dir=args.export_dir,
            space_id=args.space_id,
            space_examples=args.space_examples,
            compare_dirs=args.compare,
            commit_message=args.commit_message,
            license=args.license,
        )
    except (HubPushError, FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"push.py: {error}", file=sys.stderr)
        return 1
    if url:
        print(f"Pushed to {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
