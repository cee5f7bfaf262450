import pytest

from emoreg_hf.taxonomy import LabelSpace, UnmappedLabelError, get_label_space

FER = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def test_builtin_spaces():
    assert get_label_space("ekman7").names == [
        "anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral",
    ]  # fmt: skip
    mikels = get_label_space("mikels8")
    assert mikels.names[0] == "amusement" and len(mikels.names) == 8
    assert mikels.valence_of("awe") == "positive" and mikels.valence_of("fear") == "negative"
    v = get_label_space("valence3")
    assert isinstance(v, LabelSpace) and v.names == ["negative", "neutral", "positive"]
    assert v.class_label().names == v.names and v.id2label[2] == "positive"
    with pytest.raises(ValueError, match="unknown taxonomy 'plutchik'"):
        get_label_space("plutchik")


def test_fer_adjectives_map_onto_ekman7():
    mapping = get_label_space("ekman7").map_labels(FER, source="fer")
    assert mapping == {
        "angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness",
        "neutral": "neutral", "sad": "sadness", "surprise": "surprise",
    }  # fmt: skip
    assert get_label_space("ekman7").map_labels(["Fearful", "JOY", "surprised"]) == {
        "Fearful": "fear", "JOY": "happiness", "surprised": "surprise",
    }  # fmt: skip


def test_any_categorical_label_maps_to_valence3():
    space = get_label_space("valence3")
    mikels = space.map_labels(get_label_space("mikels8").names, source="mikels")
    assert (
        mikels["amusement"] == "positive" and mikels["sadness"] == "negative" and mikels["awe"] == "positive"
    )
    assert space.map_labels(FER)["happy"] == "positive"
    assert space.map_labels(["pos", "neg", "neutral", "contempt"]) == {
        "pos": "positive", "neg": "negative", "neutral": "neutral", "contempt": "negative",
    }  # fmt: skip


def test_unmapped_error_lists_every_label_source_and_taxonomy():
    with pytest.raises(UnmappedLabelError) as info:
        get_label_space("mikels8").map_labels(FER + ["blah"], source="fer2013")
    msg = str(info.value)
    assert "fer2013" in msg and "mikels8" in msg
    for label in ("happy", "neutral", "surprise", "blah"):
        assert repr(label) in msg
    assert info.value.unmapped == ["happy", "neutral", "surprise", "blah"]


def test_overrides_and_drop_unmapped():
    space = get_label_space("mikels8")
    mapping = space.map_labels(
        FER, source="fer", label_map={"happy": "amusement", "neutral": None}, drop_unmapped=True
    )
    assert mapping["happy"] == "amusement" and mapping["neutral"] is None and mapping["surprise"] is None
    assert mapping["angry"] == "anger"
    with pytest.raises(ValueError, match="'joyful'.*not a label of taxonomy 'mikels8'"):
        space.map_labels(FER, source="fer", label_map={"happy": "joyful"})
    assert get_label_space("valence3").map_labels(["surprise"], label_map={"surprise": "positive"}) == {
        "surprise": "positive"
    }


def test_label_map_values_may_be_any_name_that_maps():
    """One map names numbered classes (AffectNet's 0..7) once; each taxonomy resolves the names."""
    affectnet = {0: "neutral", 1: "happy", 2: "sad", 3: "surprise", 4: "fear", 5: "disgust", 6: "anger"}
    numbered = [str(i) for i in range(8)]
    valence = get_label_space("valence3").map_labels(numbered, label_map={**affectnet, 7: "contempt"})
    assert valence["1"] == "positive" and valence["7"] == "negative" and valence["3"] == "neutral"
    ekman = get_label_space("ekman7").map_labels(numbered, label_map={**affectnet, 7: None})
    assert ekman["1"] == "happiness" and ekman["2"] == "sadness" and ekman["7"] is None
    with pytest.raises(ValueError, match="'7' to 'contempt'.*taxonomy 'ekman7'.*does not map onto one"):
        get_label_space("ekman7").map_labels(numbered, label_map={**affectnet, 7: "contempt"})


def test_user_defined_space():
    mine = get_label_space(
        {"name": "mine", "labels": {"anger": "negative", "calm": "positive", "meh": "neutral"}}
    )
    assert (
        mine.name == "mine"
        and mine.names == ["anger", "calm", "meh"]
        and mine.valence_of("calm") == "positive"
    )
    assert mine.map_labels(["angry", "calm"]) == {"angry": "anger", "calm": "calm"}
    listed = get_label_space({"name": "l", "labels": [{"name": "fear", "valence": "negative"}, "happiness"]})
    assert listed.valence_of("happiness") == "positive"  # known concept: valence may be omitted
    with pytest.raises(ValueError, match="label 'blob' has valence None"):
        get_label_space({"name": "bad", "labels": ["blob"]})
