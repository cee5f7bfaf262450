"""The run record: round trip, token redaction, and loader errors that name the file and the field."""

import datetime
import getpass
import json
import re
import socket

import pytest
from records import finetune_record, write_checkpoint, write_run

from emoreg_hf.finish import run_times
from emoreg_hf.run_dir import checkpoint_step
from emoreg_hf.run_record import (
    RECORD_FILE,
    SCHEMA_VERSION,
    DatasetRecord,
    RunRecordError,
    load_run_record,
    machine_info,
    redact_command,
    utc_now,
)


def test_round_trip_gives_the_same_typed_record(tmp_path):
    record = finetune_record(seed=3)
    write_run(tmp_path, record)
    loaded = load_run_record(tmp_path)
    assert loaded == record
    assert isinstance(loaded.datasets[0], DatasetRecord) and loaded.datasets[0].split_sizes["test"] == 10000
    assert loaded.schema_version == SCHEMA_VERSION and loaded.evaluated_split == "test"


def test_tokens_never_reach_the_recorded_command():
    token = "hf_" + "a" * 30
    assert (
        redact_command(f"python x.py --hub_token {token} --seed 1")
        == "python x.py --hub_token <redacted> --seed 1"
    )
    assert redact_command(f"python x.py --hub_token={token}") == "python x.py --hub_token=<redacted>"
    assert token not in finetune_record(command=f"python x.py --hub_token {token}").command


def edit(folder, change):
    data = json.loads((folder / RECORD_FILE).read_text())
    change(data)
    (folder / RECORD_FILE).write_text(json.dumps(data))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.pop("label_names"), "lacks required field(s) 'label_names'"),
        (lambda d: d.pop("schema_version"), "has no field 'schema_version'"),
        (lambda d: d.update(schema_version=SCHEMA_VERSION + 1), "field 'schema_version' is 2, newer than"),
        (lambda d: d.update(seed="7"), "field 'seed' should be int, got str"),
        (lambda d: d.update(results=[0.5]), "field 'results' should be dict, got list"),
        (lambda d: d.update(stage="evaluate"), "stage must be one of"),
    ],
)
def test_loader_errors_name_the_file_and_the_field(tmp_path, change, message):
    write_run(tmp_path, finetune_record())
    edit(tmp_path, change)
    with pytest.raises(RunRecordError) as err:
        load_run_record(tmp_path)
    assert str(tmp_path / RECORD_FILE) in str(err.value) and message in str(err.value)


def test_missing_folder_or_record_is_a_clear_file_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_run_record(tmp_path / "nope")
    with pytest.raises(
        FileNotFoundError, match="run_info.json is missing: is .* the --output_dir of a finished"
    ):
        load_run_record(tmp_path)
    (tmp_path / RECORD_FILE).write_text("{not json")
    with pytest.raises(RunRecordError, match="is not valid JSON"):
        load_run_record(tmp_path)


def test_fields_from_a_later_minor_version_are_ignored(tmp_path):
    write_run(tmp_path, finetune_record())
    edit(tmp_path, lambda d: d.update(some_future_field={"x": 1}))
    assert load_run_record(tmp_path).seed == 0


UTC_ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def test_the_machine_names_its_cpu_and_gpu_but_never_the_host():
    """What a reader needs to check a number (CPU, torch's instruction set, threads, GPU, processes), and
    nothing an export refuses: no host name, user or path."""
    machine = machine_info(world_size=2)
    assert isinstance(machine["cpu_model"], str) and machine["cpu_model"]
    assert machine["cpu_capability"] in {"default", "NO AVX", "AVX2", "AVX512", "ZVECTOR", "VSX", "SVE256"}
    assert isinstance(machine["cpu_count"], int) and isinstance(machine["torch_threads"], int)
    assert machine["gpu"] is None or isinstance(machine["gpu"], str)
    assert machine["world_size"] == 2 and isinstance(machine["platform"], str)
    shown = json.dumps(machine)
    for name in (socket.gethostname(), getpass.getuser()):
        assert not re.search(rf"\b{re.escape(name)}\b", shown), name
    assert '"/' not in shown and " /" not in shown  # no path
    assert re.fullmatch(UTC_ISO, utc_now())


def test_a_record_without_times_or_machine_still_loads_and_one_with_them_round_trips(tmp_path):
    record = finetune_record(
        started="2026-12-07T10:00:00Z",
        finished="2026-12-07T10:05:00Z",
        resumed_from_step=5,
        machine=machine_info(world_size=1),
    )
    write_run(tmp_path, record)
    assert load_run_record(tmp_path) == record
    edit(tmp_path, lambda d: [d.pop(k) for k in ("started", "finished", "resumed_from_step", "machine")])
    older = load_run_record(tmp_path)
    assert (older.started, older.finished, older.resumed_from_step, older.machine) == (None, None, None, None)
    edit(tmp_path, lambda d: d.update(machine="AVX2"))
    with pytest.raises(RunRecordError, match="field 'machine' should be dict, got str"):
        load_run_record(tmp_path)


def test_the_records_times_are_utc_and_a_resume_keeps_the_first_start(tmp_path):
    """`run_started.json` of an earlier version held local time without a zone: it is read as this machine's
    local time and recorded in UTC; a resume keeps the first start and says from which step it went on."""
    started = {"settings": {}, "preexisting": [], "started": "2026-12-07 10:00:00", "resumed_from_step": 5}
    (tmp_path / "run_started.json").write_text(json.dumps(started))
    times = run_times(str(tmp_path))
    local = datetime.datetime(2026, 12, 7, 10, 0, 0).astimezone().astimezone(datetime.timezone.utc)
    assert times["started"] == local.strftime("%Y-%m-%dT%H:%M:%SZ") and times["resumed_from_step"] == 5
    assert re.fullmatch(UTC_ISO, times["finished"]) and times["started"] <= times["finished"]
    (tmp_path / "run_started.json").unlink()
    assert run_times(str(tmp_path))["started"] is None  # no start known: none made up
    checkpoint = write_checkpoint(tmp_path / "checkpoint-9", step=8)
    assert checkpoint_step(str(checkpoint)) == 8  # its trainer_state.json, before its name
    (checkpoint / "trainer_state.json").unlink()
    assert (
        checkpoint_step(str(checkpoint)) == 9 and checkpoint_step(str(tmp_path / "last-checkpoint")) is None
    )
