"""The Gradio demo (`emoreg_hf.space`) and the Space folder builder (issue 12, parts 2 and 3).

Offline, on tiny checkpoints built in-process (test_pipeline.py's builders); the browser tests drive Debian's
headless Chromium (`apt-get install chromium chromium-driver`) against the app served on 127.0.0.1.
"""

from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from demo_runs import ROOT
from huggingface_hub import SpaceCard
from PIL import Image
from test_pipeline import make_images, save_emoreg_checkpoint, save_headless_checkpoint, save_plain_checkpoint
from tiny_models import CIFAR10, EKMAN7

pytest.importorskip("gradio", reason="the demo needs the `space` extra: pip install -e '.[space]'")

from emoreg_hf.space import app, build_space_folder, classifier  # noqa: E402
from emoreg_hf.space.folder import SPACE_PACKAGES  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Headless, and nothing but 127.0.0.1: every other host name fails to resolve, so the page cannot fetch
# anything from the internet without the test noticing (missing fonts / scripts would break the page).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--window-size=1280,1300",
)
needs_chromium = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's headless Chromium: apt-get install -y chromium chromium-driver",
)
DOCS_SCREENSHOT = ROOT / "docs" / "images" / "space_demo.png"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("space_checkpoints")
    return {
        "emoreg": save_emoreg_checkpoint(root / "emoreg"),
        "plain": save_plain_checkpoint(root / "plain"),
        "headless": save_headless_checkpoint(root / "headless"),
    }


@pytest.fixture(scope="module")
def emoreg_classifier(checkpoints) -> app.Classifier:
    return app.load_classifier(checkpoints["emoreg"], device="cpu")


@pytest.fixture()
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    make_images()["RGB"].resize((96, 96)).save(path)
    return path


def offline_env(**extra) -> dict:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("HF_TOKEN", None)
    env.pop("GRADIO_ANALYTICS_ENABLED", None)  # the app must turn analytics off by itself
    return env | extra


# -- the app's parts, called directly -------------------------------------------------------------------


def test_app_is_standalone_and_turns_gradio_telemetry_off():
    """The Space runs these very files (app.py and the classifier.py it imports): they may import
    gradio/transformers/torch/PIL/numpy (and pandas, which gradio installs) and each other, never emoreg_hf."""
    for module in (app, classifier):
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        modules = {
            (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0)
            for alias in node.names
        }
        third_party = modules - set(sys.stdlib_module_names) - {"__future__", "classifier"}
        assert third_party <= {"gradio", "transformers", "torch", "PIL", "numpy", "pandas"}, third_party
        relative = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level]
        assert all(node.level == 1 and node.module == "classifier" for node in relative)

    import gradio.analytics

    assert not gradio.analytics.analytics_enabled()
    assert not list(Path(app.__file__).parent.glob("*.pyi")), "gradio must not write stubs into the package"


def test_predict_and_render_an_emoreg_checkpoint(emoreg_classifier, photo):
    assert emoreg_classifier.emoreg and emoreg_classifier.emotions == EKMAN7
    result = app.predict(photo, emoreg_classifier, top_k=3)
    assert [item["label"] in CIFAR10 for item in result["labels"]] == [True] * 3
    rho = result["regulation"]
    assert 0.0 <= rho <= 1.0
    assert [e["label"] for e in result["emotions"]] != [] and {e["label"] for e in result["emotions"]} == set(
        EKMAN7
    )
    assert sum(e["score"] for e in result["emotions"]) == pytest.approx(1.0, abs=1e-5)

    labels, regulation, frame, emotion_note, responses = app.render(result)
    assert list(labels) == [item["label"] for item in result["labels"]]
    assert f"ρ = {rho:.3f}" in regulation
    assert f"the emotional response's logits weigh {round(100 * rho)}%" in regulation
    assert "not how much emotion was used" in regulation
    assert list(frame.columns) == ["emotion", "probability"] and set(frame["emotion"]) == set(EKMAN7)
    assert result["emotions"][0]["label"] in emotion_note
    assert result["non_emotional"]["label"] in responses and result["emotional"]["label"] in responses
    assert "Non-emotional response" in responses and "Emotional response" in responses

    deep = app.predict(make_images()["I;16"], emoreg_classifier)  # PIL images of any mode too
    assert len(deep["labels"]) == 5 and 0.0 <= deep["regulation"] <= 1.0


def test_plain_classifier_gets_predictions_and_not_applicable(checkpoints, photo):
    classifier = app.load_classifier(checkpoints["plain"], device="cpu")
    assert not classifier.emoreg
    result = app.predict(photo, classifier, top_k=2)
    assert len(result["labels"]) == 2 and all(item["label"] in CIFAR10 for item in result["labels"])
    assert all(result[key] is None for key in ("regulation", "emotions", "non_emotional", "emotional"))
    labels, regulation, frame, emotion_note, responses = app.render(result)
    assert len(labels) == 2 and frame.empty
    assert "not applicable" in regulation and "not applicable" in emotion_note
    assert responses.count("not applicable") == 2


def test_one_title_rule_and_examples_offered_only_when_there_are_some(emoreg_classifier, photo):
    from emoreg_hf.space.folder import default_title

    assert (
        app.default_title("org/emoreg-demo") == default_title("org/emoreg-demo") == "EmoReg: org/emoreg-demo"
    )
    assert app.default_title("outputs/demo/finetune/") == "EmoReg: outputs/demo/finetune"

    def texts(demo) -> str:
        return " ".join(str(c.get("props", {}).get("value", "")) for c in demo.config["components"])

    without = app.build_demo(emoreg_classifier)
    assert "example" not in texts(without).lower() and "webcam" in texts(without)
    assert not [c for c in without.config["components"] if c["type"] == "dataset"]  # no Examples block
    with_examples = app.build_demo(emoreg_classifier, examples=[(str(photo), "pixels")])
    assert "or pick an example" in texts(with_examples)
    image = next(c for c in with_examples.config["components"] if c["type"] == "image")
    assert image["props"]["sources"] == ["upload", "webcam", "clipboard"]


def test_a_model_trained_on_synthetic_data_says_so(checkpoints, tmp_path, emoreg_classifier):
    import shutil

    assert not emoreg_classifier.synthetic and app.synthetic_note(emoreg_classifier) == ""
    demo = tmp_path / "demo-run"
    shutil.copytree(checkpoints["emoreg"], demo)
    (demo / "run_info.json").write_text(json.dumps({"synthetic_data": True, "stage": "finetune"}))
    classifier = app.load_classifier(demo, device="cpu")
    note = app.synthetic_note(classifier)
    assert classifier.synthetic and "Trained on synthetic data" in note and all(c in note for c in CIFAR10)
    page = " ".join(
        str(c.get("props", {}).get("value", "")) for c in app.build_demo(classifier).config["components"]
    )
    assert "Trained on synthetic data" in page


def test_run_folder_examples_only_from_the_demo_data(checkpoints, demo_runs, tmp_path):
    from emoreg_hf.space.__main__ import run_folder_examples

    with run_folder_examples([str(checkpoints["emoreg"])]) as extra:  # no run record: nothing to offer
        assert extra == []
    with run_folder_examples([str(demo_runs.finetune)]) as extra:
        paths = extra[1::2]
        assert extra[::2] == ["--example"] * len(paths) and len(paths) == 4
        assert all(Path(p).is_file() and Path(p).suffix == ".png" for p in paths)
        folder = Path(paths[0]).parent
        assert sorted(folder.iterdir()) == sorted(map(Path, paths))  # a folder of its own
    assert not folder.exists()  # removed when the app stops
    with run_folder_examples([str(demo_runs.finetune), "--example", "mine.png"]) as extra:
        assert extra == []  # the user's own examples win


def test_bad_checkpoints_and_images_give_clear_messages(checkpoints, emoreg_classifier, tmp_path):
    with pytest.raises(app.LoadError, match=r"'.*no-such-run': no such folder"):
        app.load_classifier(str(tmp_path / "no-such-run"))
    with pytest.raises(app.LoadError, match=r"not an image classifier \(architectures: ViTModel"):
        app.load_classifier(checkpoints["headless"])
    with pytest.raises(app.LoadError, match="cannot load the checkpoint 'nobody/no-such-model'"):
        app.load_classifier("nobody/no-such-model")  # offline, and not in the cache

    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ValueError, match=r"cannot read 'notes.png' as an image: not an image file"):
        app.predict(text, emoreg_classifier)
    with pytest.raises(ValueError, match=r"cannot read 'gone.jpg': no such file"):
        app.predict(tmp_path / "gone.jpg", emoreg_classifier)


@pytest.mark.slow  # spawns processes or trains
def test_command_line_help_and_unloadable_checkpoint(tmp_path, capsys, monkeypatch):
    help_run = subprocess.run(
        [sys.executable, "-m", "emoreg_hf.space", "--help"],
        capture_output=True,
        text=True,
        env=offline_env(),
        timeout=120,
    )
    assert help_run.returncode == 0, help_run.stderr[-2000:]
    assert "--port" in help_run.stdout and "EMOREG_MODEL" in help_run.stdout

    monkeypatch.delenv(app.MODEL_ENV, raising=False)
    assert app.main([str(tmp_path / "missing-run")]) == 2  # a bad input: exit 2, as every emoreg-hf command
    stderr = capsys.readouterr().err
    assert "error: cannot load the checkpoint" in stderr and "missing-run" in stderr
    assert app.main([]) == 2 and "no model given" in capsys.readouterr().err

    monkeypatch.chdir(tmp_path)  # a relative path with a typo is a missing folder, not a Hub failure
    (tmp_path / "outputs").mkdir()
    assert app.main(["outputs/fintune"]) == 2
    assert "'outputs/fintune': no such folder (in " in capsys.readouterr().err


def test_an_example_that_is_not_an_image_stops_the_app_before_it_serves(checkpoints, tmp_path, capsys):
    notes = tmp_path / "notes.png"
    notes.write_text("a text file with an image's name")
    assert app.main([str(checkpoints["emoreg"]), "--example", str(notes)]) == 2
    assert (
        "error: example image: cannot read 'notes.png' as an image: not an image file"
        in capsys.readouterr().err
    )
    assert app.main([str(checkpoints["emoreg"]), "--example", str(tmp_path / "gone.png")]) == 2
    assert "cannot read 'gone.png': no such file" in capsys.readouterr().err


def test_a_folder_without_config_json_stops_the_app_before_it_serves(tmp_path, capsys, monkeypatch):
    """A folder that holds no saved model (a run that never finished, a wrong folder): one line, exit 2."""
    folder = tmp_path / "outputs" / "finetune"
    folder.mkdir(parents=True)
    (folder / "README.md").write_text("# notes")
    monkeypatch.setattr(app, "build_demo", lambda *a, **k: pytest.fail("the app must not serve"))
    assert app.main([str(folder)]) == 2
    assert (
        f"error: cannot load the checkpoint '{folder}': the folder has no config.json, so it holds no saved model"
        in capsys.readouterr().err
    )
    assert sorted(p.name for p in folder.iterdir()) == ["README.md"]


def test_the_page_says_what_e_x_was_trained_on_and_links_the_reliance(
    emoreg_classifier, checkpoints, tmp_path
):
    """e(x) on a cat is the stage-1 model's reading, not a measured emotion; ρ's reliance pointer is a link."""
    faces = app.Classifier(
        "org/emoreg-faces", None, True, CIFAR10, EKMAN7, affect={"taxonomy": "ekman7", "data": ["FER-2013"]}
    )
    text = app.describe_emotions(faces)
    assert "a stage-1 model trained on FER-2013 to recognise the 7 emotions of the `ekman7` taxonomy" in text
    assert "it is that model's reading of the image, not a measured emotion" in text
    kmeans = app.Classifier(
        "org/x",
        None,
        True,
        CIFAR10,
        ["cluster 1"],
        affect={"control": classifier.STAGE1_CONTROLS["kmeans_labels"]},
    )
    assert "to recognise k-means clusters of its images (the non-emotion control)" in app.describe_emotions(
        kmeans
    )
    link = "[Regulation statistics](https://huggingface.co/org/emoreg-faces#regulation-statistics)"
    assert link in app.describe_regulation(0.4, app.card_link("org/emoreg-faces"))
    assert f"`{checkpoints['emoreg'] / 'README.md'}`" in app.card_link(str(checkpoints["emoreg"]))
    assert emoreg_classifier.affect["taxonomy"] is None or isinstance(
        emoreg_classifier.affect["taxonomy"], str
    )
    record = {"models": {"affect_path": str(tmp_path / "stage1")}}
    (tmp_path / "stage1").mkdir()
    (tmp_path / "stage1" / "run_info.json").write_text(
        json.dumps({"datasets": [{"id": "x", "name": "FER-2013"}]})
    )
    assert classifier.affect_provenance(emoreg_classifier.pipeline.model.config, record)["data"] == [
        "FER-2013"
    ]


# -- the Space folder -------------------------------------------------------------------------------------


def test_space_folder_has_app_requirements_readme_and_examples(tmp_path, photo):
    second = tmp_path / "other" / "photo.png"  # same file name: copied under a new one
    second.parent.mkdir()
    Image.new("L", (20, 20), 128).save(second)
    written = build_space_folder(
        "your-org/emoreg-demo",
        tmp_path / "space",
        title="EmoReg demo",
        example_images=[(photo, "Random pixels (generated by the test, CC0)"), second],
        license="mit",
    )
    space = tmp_path / "space"
    names = sorted(p.relative_to(space).as_posix() for p in written)
    assert names == [
        "README.md",
        "app.py",
        "classifier.py",
        "emoreg_space.json",
        "examples/photo.png",
        "examples/photo_2.png",
        "requirements.txt",
    ]
    assert all(p.is_file() for p in written)
    assert (space / "app.py").read_bytes() == Path(app.__file__).read_bytes()  # one source for both
    assert (space / "examples" / "photo.png").read_bytes() == photo.read_bytes()

    card = SpaceCard.load(space / "README.md")
    data = card.data
    assert data.sdk == "gradio" and data.sdk_version == metadata.version("gradio")
    assert data.app_file == "app.py" and data.models == ["your-org/emoreg-demo"]
    assert data.title == "EmoReg demo" and data.license == "mit" and data.emoji
    assert data.python_version == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert len(data.short_description) <= 60
    assert "examples/photo.png`: Random pixels (generated by the test, CC0)" in card.text
    assert "examples/photo_2.png" in card.text

    requirements = (space / "requirements.txt").read_text().split()
    assert [line.split("==")[0] for line in requirements] == list(SPACE_PACKAGES)
    for line in requirements:
        name, version = line.split("==")
        assert version == metadata.version(name).split("+")[0]

    settings = json.loads((space / "emoreg_space.json").read_text())
    assert settings["model"] == "your-org/emoreg-demo" and settings["title"] == "EmoReg demo"
    assert settings["examples"][0] == {
        "path": "examples/photo.png",
        "caption": "Random pixels (generated by the test, CC0)",
    }

    with pytest.raises(ValueError, match="owner/name"):
        build_space_folder("not a repo id", tmp_path / "bad")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        build_space_folder("org/x", tmp_path / "bad", example_images=[tmp_path / "missing.png"])
    (tmp_path / "notes.png").write_text("text, not an image")
    with pytest.raises(ValueError, match="'.*notes.png' cannot be read as an image \\(not an image file\\)"):
        build_space_folder("org/x", tmp_path / "bad", example_images=[photo, tmp_path / "notes.png"])
    assert not (tmp_path / "bad").exists()  # checked before anything is written


SPACE_SCRIPT = """
import contextlib, io, json, os, sys
sys.path.insert(0, os.getcwd())
import app  # the Space's own app.py
settings = app.space_settings()
classifier = app.load_classifier(os.environ["EMOREG_MODEL"], device="cpu")
example = settings["examples"][0]["path"]
result = app.predict(example, classifier, top_k=2)
demo = app.build_demo(classifier, examples=[(example, "an example")])
stderr = io.StringIO()
os.environ.pop("EMOREG_MODEL")  # now the built-in default (emoreg_space.json) is used: not on this machine
with contextlib.redirect_stderr(stderr):
    code = app.main([])
json.dump({"result": result, "code": code, "stderr": stderr.getvalue(), "settings": settings,
           "emoreg_hf": "emoreg_hf" in sys.modules, "files": sorted(os.listdir("."))}, open("report.json", "w"))
"""


@pytest.mark.slow  # spawns processes or trains
def test_space_app_runs_without_the_package(checkpoints, tmp_path, photo):
    space = tmp_path / "space"
    build_space_folder("your-org/emoreg-demo", space, example_images=[(photo, "pixels")])
    before = sorted(p.name for p in space.iterdir())
    run = subprocess.run(
        [sys.executable, "-c", SPACE_SCRIPT],
        capture_output=True,
        text=True,
        cwd=space,
        env=offline_env(EMOREG_MODEL=str(checkpoints["emoreg"]), GRADIO_TEMP_DIR=str(tmp_path / "gradio")),
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads((space / "report.json").read_text())
    assert report["emoreg_hf"] is False
    assert len(report["result"]["labels"]) == 2 and 0.0 <= report["result"]["regulation"] <= 1.0
    assert report["code"] == 2 and "cannot load the checkpoint 'your-org/emoreg-demo'" in report["stderr"]
    assert [f for f in report["files"] if f not in ("report.json", "__pycache__")] == before  # wrote nothing


# -- served files ------------------------------------------------------------------------------------------


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.slow
def test_the_app_serves_its_example_copies_and_nothing_beside_them(checkpoints, tmp_path, photo):
    """`--example DIR/photo.png` must not turn DIR into a file server: a token next to the photo stays
    private, and so does the original photo; only the app's own copy of it is served."""
    token = photo.parent / ".cache" / "huggingface" / "token"
    token.parent.mkdir(parents=True)
    token.write_text("hf_" + "s" * 34)
    (photo.parent / "notes.txt").write_text("mine")
    with serve(checkpoints["emoreg"], tmp_path, "--example", str(photo)) as url:
        for neighbour in (token, photo.parent / "notes.txt", photo):
            assert http_status(f"{url}gradio_api/file={neighbour}") in (403, 404), neighbour
        with urllib.request.urlopen(f"{url}config", timeout=10) as response:
            config = json.loads(response.read())
        served = [
            value["path"]
            for component in config["components"]
            for sample in (component.get("props", {}).get("samples") or [])
            for value in sample
            if isinstance(value, dict) and "path" in value
        ]
        assert served and all(Path(path).name == "photo.png" for path in served), served
        assert all(Path(path).parent != photo.parent for path in served)
        with urllib.request.urlopen(f"{url}gradio_api/file={served[0]}", timeout=10) as response:
            assert response.read() == photo.read_bytes()


# -- in a real browser -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(model: Path | str, tmp_path: Path, *args: str):
    """`python -m emoreg_hf.space MODEL --port FREE` in a subprocess; yields the URL once the page answers."""
    port = free_port()
    log_path = tmp_path / f"server-{port}.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "emoreg_hf.space", str(model), "--port", str(port), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=offline_env(GRADIO_TEMP_DIR=str(tmp_path / "gradio")),
            cwd=tmp_path,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 600  # a deadline only: a dead app fails at once (poll above); a loaded
        # machine took over 180 s to import gradio and start it once
        while True:
            if server.poll() is not None:
                pytest.fail(f"the app exited with {server.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the app did not answer on {url}:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-4000:]


# Chromium's own test camera (a moving picture) and no permission prompt: the webcam source can be driven.
FAKE_CAMERA = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")


@contextmanager
def chromium(tmp_path: Path, monkeypatch, *extra_flags: str):
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the `dev` extra)")
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not download a browser or a driver
    monkeypatch.setenv("SE_AVOID_STATS", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, *extra_flags, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def upload_and_wait(driver, url: str, image: Path, until: str, timeout: float = 90) -> str:
    """Open the page, upload `image`, wait until `until` is on the page; return the page's text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=file]"))
    driver.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(image))
    WebDriverWait(driver, timeout).until(lambda d: until in d.find_element(By.TAG_NAME, "body").text)
    time.sleep(1.0)  # let the bar chart finish drawing
    return driver.find_element(By.TAG_NAME, "body").text


def text_of(driver, elem_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, elem_id).text


@pytest.mark.slow
@needs_chromium
def test_browser_upload_shows_classes_rho_and_errors(checkpoints, tmp_path, photo, monkeypatch):
    pytest.importorskip("selenium", reason="needs selenium (the `dev` extra)")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG but nothing else")
    with (
        serve(checkpoints["emoreg"], tmp_path, "--example", str(photo)) as url,
        chromium(tmp_path, monkeypatch) as driver,
    ):
        upload_and_wait(driver, url, photo, until="ρ =")
        classes, regulation = text_of(driver, "classes"), text_of(driver, "regulation")
        assert any(name in classes for name in CIFAR10), classes
        assert "the emotional response's logits weigh" in regulation and "%" in regulation
        assert "Non-emotional response" in text_of(driver, "responses")
        assert any(name in text_of(driver, "emotions") for name in EKMAN7)  # the bar chart's axis
        shot = tmp_path / "space.png"
        assert driver.save_screenshot(str(shot)) and shot.read_bytes()[:4] == b"\x89PNG"

        page = upload_and_wait(driver, url, broken, until="cannot read")
        assert "cannot read 'broken.png' as an image" in page
        assert "Traceback" not in driver.page_source

        driver.get(url)  # an example runs when clicked
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=file]"))
        next(b for b in driver.find_elements(By.TAG_NAME, "button") if b.text.strip() == "photo").click()
        WebDriverWait(driver, 60).until(lambda d: "ρ =" in text_of(d, "regulation"))


def button(driver, label: str):
    """The first button whose text or aria-label is `label` (None while there is none)."""
    from selenium.webdriver.common.by import By

    return next(
        (
            b
            for b in driver.find_elements(By.TAG_NAME, "button")
            if label in (b.text.strip(), b.get_attribute("aria-label"))
        ),
        None,
    )


@pytest.mark.slow
@needs_chromium
def test_browser_on_the_demo_checkpoint(demo_runs, tmp_path, monkeypatch):
    """The demo's real EmoReg run, launched as the README says (`python -m emoreg_hf.space outputs/demo/finetune`,
    nothing else): the default title, the demo's own synthetic images as examples, the note that the model
    knows only synthetic shapes, and the webcam (Chromium's fake camera) as a source.
    `EMOREG_UPDATE_DOCS_SCREENSHOT=1` also refreshes docs/images/space_demo.png; `=RUN_DIR` does it on that
    run folder (docs/usage.md's shot: a finished `make demo`, outputs/demo/finetune) instead of the tests' tiny one."""
    import shutil

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from emoreg_hf.data.demo import _target  # the demo's own drawing of a target-class image

    update = os.environ.get("EMOREG_UPDATE_DOCS_SCREENSHOT")
    run = Path(update) if update and update != "1" else demo_runs.finetune
    shutil.copytree(run, tmp_path / "outputs" / "demo" / "finetune")
    star = tmp_path / "star.png"
    _target(np.random.default_rng(0), "star", 128).save(star)
    config = json.loads((run / "config.json").read_text())
    classes = list(config["id2label"].values())
    with (
        serve("outputs/demo/finetune", tmp_path) as url,
        chromium(tmp_path, monkeypatch, *FAKE_CAMERA) as driver,
    ):
        driver.get(url)  # the webcam: open it, take a picture, and it is classified
        WebDriverWait(driver, 60).until(lambda d: button(d, "Capture from camera")).click()
        WebDriverWait(driver, 30).until(lambda d: button(d, "Click to Access Webcam")).click()
        WebDriverWait(driver, 30).until(lambda d: button(d, "capture photo")).click()
        WebDriverWait(driver, 90).until(lambda d: "ρ =" in text_of(d, "regulation"))

        page = upload_and_wait(driver, url, star, until="ρ =")
        assert driver.find_element(By.TAG_NAME, "h1").text == "EmoReg: outputs/demo/finetune"
        assert driver.title == "EmoReg: outputs/demo/finetune"
        note = text_of(driver, "synthetic-note")
        assert "Trained on synthetic data" in note and all(name in note for name in classes)
        assert "or pick an example" in page
        offered = [
            b.text.strip() for b in driver.find_elements(By.TAG_NAME, "button") if b.text.strip() in classes
        ]
        assert len(offered) >= 2, offered  # the demo's own test images, one per class
        assert any(name in text_of(driver, "classes") for name in classes)
        assert "the emotional response's logits weigh" in text_of(driver, "regulation")
        assert button(driver, "Capture from camera").is_displayed()
        shot = tmp_path / "space_demo.png"
        assert driver.save_screenshot(str(shot))
        if update:
            DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            DOCS_SCREENSHOT.write_bytes(shot.read_bytes())
