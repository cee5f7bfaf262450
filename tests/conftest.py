import os
import socket

import pytest

# Nothing in the test suite may reach the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from demo_runs import demo_runs  # noqa: E402, F401  (session fixture: real tiny demo pretrain + finetune)
from slurm_cluster import slurm_cluster, slurm_job_name  # noqa: E402, F401  (the live local Slurm, or a skip)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def pytest_collection_modifyitems(config, items):
    """Tests that train through the recipes (the `demo_runs` fixture, or marked themselves) are `slow`:
    `pytest -m "not slow"` is the quick loop; `make test` and CI run everything."""
    for item in items:
        if {"demo_runs", "slurm_cluster"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
