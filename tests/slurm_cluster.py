"""The live local Slurm cluster for the tests that submit jobs (`scripts/local_slurm.sh`; CI's `.ci/run`
starts it before `make test`).

`slurm_cluster` (session scope, registered in conftest.py) skips, saying how to start one, where no cluster
of that script is up. It gives each test a job name of its own; every job of that name still queued or running
when the test ends is cancelled, so a stuck job never outlives its test.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "local_slurm.sh"
START = "`sudo scripts/local_slurm.sh start` brings one up (CI's .ci/run does)"


@pytest.fixture(scope="session")
def slurm_cluster():
    """Skips unless the local cluster takes jobs; yields a factory of job names cancelled at session end."""
    if shutil.which("sbatch") is None:
        pytest.skip(f"no Slurm on this machine (no sbatch): {START}")
    status = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True, timeout=60)
    if status.returncode != 0:
        pytest.skip(f"no local Slurm cluster is up ({(status.stdout + status.stderr).strip()}): {START}")
    # A cluster that answers but cannot run a job (munge, slurmd or this container refusing) is no cluster.
    try:
        probe = subprocess.run(
            ["sbatch", "--wait", "--job-name=emoreg-test-probe", "--output=/dev/null", "--wrap=true"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        ran = probe.returncode == 0
        why = (probe.stdout + probe.stderr).strip() or f"exit {probe.returncode}"
    except subprocess.TimeoutExpired:
        subprocess.run(["scancel", "--name=emoreg-test-probe"], capture_output=True, timeout=60)
        ran, why = False, "it did not end within 120 s"
    if not ran:
        pytest.skip(f"the local Slurm cluster is up but a one-line job failed ({why}): {START}")
    names: list[str] = []

    def job_name(label: str) -> str:
        names.append(f"emoreg-test-{label}-{uuid.uuid4().hex[:8]}")
        return names[-1]

    yield job_name
    for name in names:
        subprocess.run(["scancel", f"--name={name}"], capture_output=True, timeout=60)


@pytest.fixture
def slurm_job_name(slurm_cluster, request):
    """A job name for this test; its jobs are cancelled when the test ends, whatever happened."""
    name = slurm_cluster(re.sub(r"[^A-Za-z0-9_-]", "", request.node.name)[:24])
    yield name
    subprocess.run(["scancel", f"--name={name}"], capture_output=True, timeout=60)
