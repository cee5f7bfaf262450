"""Class imbalance: balanced loss weights (every cross-entropy term, EmoReg's three included, training only),
the class-balanced sampler, what the run record keeps and what the cards say."""

from __future__ import annotations

import json
from collections import Counter
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from demo_runs import run_recipe
from records import EMOTIONS, finetune_record, write_run
from test_modeling import LABELS, PIXELS, _trainer, make_model

from emoreg_hf.balance import (
    ClassBalancedSampler,
    balanced_sampler,
    balanced_weights,
    class_balance,
    class_counts,
    loss_weights,
)
from emoreg_hf.cli import RecipeArgumentParser
from emoreg_hf.configs import PretrainArguments
from emoreg_hf.publish import load_run_folder
from emoreg_hf.publish.card import build_model_card


def _split(labels: list[int], names: list[str]) -> datasets.Dataset:
    features = datasets.Features({"label": datasets.ClassLabel(names=names), "x": datasets.Value("int32")})
    return datasets.Dataset.from_dict({"label": labels, "x": list(range(len(labels)))}, features=features)


def test_balanced_weights_are_sklearns_and_come_from_the_training_counts():
    from sklearn.utils.class_weight import compute_class_weight

    labels = [0] * 80 + [1] * 15 + [2] * 5
    counts = class_counts(_split(labels, ["a", "b", "c"]).select(range(100)), 4)
    assert counts.tolist() == [80, 15, 5, 0]
    weights = balanced_weights(counts)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=np.asarray(labels))
    np.testing.assert_allclose(weights[:3], expected)
    assert weights[3] == 0  # never a training target
    args = SimpleNamespace(class_weighting="balanced", class_balanced_sampler=False)
    balance = class_balance(args, _split(labels, ["a", "b", "c"]), ["a", "b", "c"])
    assert balance["train_counts"] == {"a": 80, "b": 15, "c": 5} and balance["sampler"] == "shuffled"
    assert balance["loss_weights"]["c"] == pytest.approx(100 / (3 * 5))
    torch.testing.assert_close(loss_weights(balance), torch.tensor(expected, dtype=torch.float32))
    none = SimpleNamespace(class_weighting="none", class_balanced_sampler=False)
    assert class_balance(none, _split(labels, ["a", "b", "c"]), ["a", "b", "c"]) is None


def test_streamed_training_split_is_refused_with_the_reason():
    streamed = _split([0, 1], ["a", "b"]).to_iterable_dataset()
    with pytest.raises(ValueError, match="streamed source has none before it is read"):
        class_counts(streamed, 2)


def test_sampler_draws_each_class_equally_often_and_is_seeded_per_epoch():
    labels = np.asarray([0] * 950 + [1] * 50)
    sampler = ClassBalancedSampler(labels, np.bincount(labels), seed=3)
    first = list(sampler)
    assert len(first) == 1000
    share = Counter(labels[first].tolist())[1] / 1000
    assert 0.44 < share < 0.56  # 5 % of the rows, about half of the draws
    assert list(sampler) == first  # same epoch, same draws (a resumed run redraws them)
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first
    split = _split(labels.tolist(), ["a", "b"])
    balance = class_balance(
        SimpleNamespace(class_weighting="none", class_balanced_sampler=True), split, ["a", "b"]
    )
    assert balance["loss_weights"] is None and balance["sampler"] == "class_balanced"
    assert isinstance(balanced_sampler(balance, split, seed=0), ClassBalancedSampler)


def test_weighting_and_sampler_together_are_warned_about_once(caplog):
    """docs/usage.md's "use one of the two": together they correct the imbalance twice."""
    split = _split([0] * 9 + [1], ["a", "b"])
    with caplog.at_level("WARNING", logger="emoreg_hf.balance"):
        for weighting, sampler in (("balanced", False), ("none", True)):
            class_balance(
                SimpleNamespace(class_weighting=weighting, class_balanced_sampler=sampler), split, ["a", "b"]
            )
        assert "twice" not in caplog.text  # either one alone is what docs/usage.md recommends
        both = class_balance(
            SimpleNamespace(class_weighting="balanced", class_balanced_sampler=True), split, ["a", "b"]
        )
    assert caplog.text.count("correct the imbalance twice") == 1 and "use one of the two" in caplog.text
    assert both["sampler"] == "class_balanced" and both["loss_weights"]["b"] == pytest.approx(
        5.0
    )  # still both


def test_emoreg_weights_all_three_loss_terms():
    model = make_model(aux_loss_weight=0.5).eval()
    weights = torch.linspace(0.2, 3.0, 10)
    with torch.no_grad():
        plain = model(PIXELS, labels=LABELS)
        weighted = model(PIXELS, labels=LABELS, class_weights=weights)
        uniform = model(PIXELS, labels=LABELS, class_weights=torch.ones(10))
    expected = F.cross_entropy(weighted.logits, LABELS, weight=weights) + 0.25 * (
        F.cross_entropy(weighted.logits_non_emotional, LABELS, weight=weights)
        + F.cross_entropy(weighted.logits_emotional, LABELS, weight=weights)
    )
    torch.testing.assert_close(weighted.loss, expected)
    torch.testing.assert_close(uniform.loss, plain.loss)
    assert not torch.isclose(plain.loss, weighted.loss)


def test_trainer_weights_the_training_loss_only_and_uses_the_sampler(tmp_path):
    weights = torch.linspace(0.2, 3.0, 10)
    trainer = _trainer(make_model(), tmp_path / "w", dataloader_num_workers=0)
    plain = _trainer(make_model(), tmp_path / "p")
    trainer.class_weights = weights
    batch = trainer.finish_batch(next(iter(plain.get_eval_dataloader(plain.train_dataset))))
    losses = {}
    for name, t in (("weighted", trainer), ("plain", plain)):
        t.model.train()
        with torch.no_grad():
            losses[name] = t.compute_loss(t.model, batch).item()
        t.model.eval()
        with torch.no_grad():
            losses[name + "_eval"] = t.compute_loss(t.model, batch).item()
    assert losses["weighted"] != pytest.approx(losses["plain"])
    assert losses["weighted_eval"] == pytest.approx(losses["plain_eval"])  # evaluation: plain CE
    sampler = ClassBalancedSampler(np.asarray([0, 3, 7, 9]), np.bincount([0, 3, 7, 9], minlength=10), seed=0)
    trainer.train_sampler = sampler
    assert trainer._get_train_sampler() is sampler


def test_bad_class_weighting_is_refused_at_parse_time(tmp_path):
    parser = RecipeArgumentParser(PretrainArguments, None)
    with pytest.raises(
        ValueError, match=r"--class_weighting 'inverse' is not valid; allowed values: none, balanced"
    ):
        parser.parse(
            ["--affective_sources", "[{path: 'demo:synthetic-faces'}]", "--class_weighting", "inverse",
             "--output_dir", str(tmp_path)]
        )  # fmt: skip


def test_cards_say_what_was_done_about_imbalance(tmp_path):
    balance = {
        "class_weighting": "balanced",
        "sampler": "class_balanced",
        "train_counts": {name: 10 * (i + 1) for i, name in enumerate(finetune_record().label_names)},
        "loss_weights": {name: 1.0 / (i + 1) for i, name in enumerate(finetune_record().label_names)},
    }
    weighted = build_model_card(
        load_run_folder(write_run(tmp_path / "w", finetune_record(class_balance=balance)))
    )
    text = str(weighted)
    assert (
        "| class imbalance | loss weights n/(K·n_c) from the training counts on all three cross-entropy terms; "
        "class-balanced sampler |" in text
    )
    assert "| airplane | 10 | 1.000 |" in text and "| truck | 100 | 0.100 |" in text
    plain = str(build_model_card(load_run_folder(write_run(tmp_path / "p", finetune_record()))))
    assert "| class imbalance | none (unweighted loss, shuffled sampling) |" in plain


@pytest.mark.slow
def test_pretrain_with_both_records_them_and_reports_per_class_recall(tmp_path):
    out = tmp_path / "pretrain"
    log = run_recipe("pretrain.py", out, "--class_weighting", "balanced", "--class_balanced_sampler", "true")
    twice = (
        "--class_weighting balanced and --class_balanced_sampler true together correct the imbalance twice"
    )
    assert log.count(twice) == 1 and log.index(twice) < log.index(
        "Input path:"
    )  # once, before the trainer is built
    record = json.loads((out / "run_info.json").read_text())
    balance = record["class_balance"]
    assert balance["class_weighting"] == "balanced" and balance["sampler"] == "class_balanced"
    assert sum(balance["train_counts"].values()) == 128 and list(balance["train_counts"]) == EMOTIONS
    counts = np.asarray(list(balance["train_counts"].values()))
    np.testing.assert_allclose(list(balance["loss_weights"].values()), balanced_weights(counts), rtol=1e-5)
    card = (out / "README.md").read_text()
    assert "loss weights n/(K·n_c) from the training counts; class-balanced sampler |" in card
    predictions = json.loads((out / record["files"]["predictions"]).read_text())  # its last evaluated split
    assert f"share of each emotion's {predictions['split']} images" in card
    for index, name in enumerate(EMOTIONS):
        hits = [p == index for y, p in zip(predictions["labels"], predictions["predictions"]) if y == index]
        assert f"| {name} | {len(hits)} | {sum(hits) / len(hits):.3f} |" in card
