"""The run record: round trip, token redaction, and loader errors that name the file and the field."""

import json

import pytest
from records import finetune_record, write_run

from emoreg_hf.run_record import (
    RECORD_FILE,
    SCHEMA_VERSION,
    DatasetRecord,
    RunRecordError,
    load_run_record,
    redact_command,
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
