"""Emotion label spaces and the mapping of source label names onto them.

Affective data sets disagree on vocabulary (FER-2013 says ``angry``/``happy``, Emotion6 and FI say
``anger``/``joy``/``amusement``). A :class:`LabelSpace` is the one vocabulary a run trains on; every
source label is normalised (spelling, part of speech), optionally overridden, and mapped onto it. Any
categorical emotion can also be mapped at valence level (``valence3``) through its valence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

VALENCES = ("negative", "neutral", "positive")

# Valence of every emotion concept this module knows, including ones no built-in space uses
# (contempt, love, ...) so that they still map onto valence3. Surprise is ambiguous in the literature;
# it is neutral here and can be overridden per source with ``label_map``.
CONCEPT_VALENCE: dict[str, str] = {
    "anger": "negative",
    "disgust": "negative",
    "fear": "negative",
    "sadness": "negative",
    "contempt": "negative",
    "anxiety": "negative",
    "happiness": "positive",
    "amusement": "positive",
    "awe": "positive",
    "contentment": "positive",
    "excitement": "positive",
    "love": "positive",
    "surprise": "neutral",
    "neutral": "neutral",
}

# Common spellings in public data sets -> the concept names above.
SYNONYMS: dict[str, str] = {
    "angry": "anger",
    "mad": "anger",
    "rage": "anger",
    "disgusted": "disgust",
    "disgusting": "disgust",
    "fearful": "fear",
    "afraid": "fear",
    "scared": "fear",
    "scary": "fear",
    "happy": "happiness",
    "joy": "happiness",
    "joyful": "happiness",
    "sad": "sadness",
    "sorrow": "sadness",
    "unhappy": "sadness",
    "surprised": "surprise",
    "surprising": "surprise",
    "contemptuous": "contempt",
    "amused": "amusement",
    "funny": "amusement",
    "awed": "awe",
    "awesome": "awe",
    "content": "contentment",
    "contented": "contentment",
    "calm": "contentment",
    "excited": "excitement",
    "exciting": "excitement",
    "anxious": "anxiety",
    "none": "neutral",
    "neg": "negative",
    "pos": "positive",
    "neu": "neutral",
}

BUILTIN_SPACES: dict[str, tuple[str, ...]] = {
    "ekman7": ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"),
    "mikels8": ("amusement", "anger", "awe", "contentment", "disgust", "excitement", "fear", "sadness"),
    "valence3": VALENCES,
    # FER+'s eight classes in its vote-column order (Barsoum et al. 2016): ekman7 and contempt
    "ferplus8": ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"),
}


class UnmappedLabelError(ValueError):
    """Raised with every source label that has no place in the taxonomy (not just the first one)."""

    def __init__(self, source: str, taxonomy: LabelSpace, unmapped: list[str]):
        self.source, self.taxonomy, self.unmapped = source, taxonomy.name, list(unmapped)
        super().__init__(
            f"source {source!r}: {len(unmapped)} label(s) not mapped onto taxonomy {taxonomy.name!r} "
            f"{list(taxonomy.names)}: {list(unmapped)}. Add them to the source's `label_map` "
            f"(e.g. label_map: {{{unmapped[0]!r}: {taxonomy.names[0]!r}}}; null drops a label) "
            f"or set `drop_unmapped: true`."
        )


def normalise(label: str) -> str:
    """Lower-case, ``-``/spaces to ``_``, then synonyms -> concept (``"Angry "`` -> ``"anger"``)."""
    key = re.sub(r"[\s\-]+", "_", str(label).strip().lower())
    return SYNONYMS.get(key, key)


@dataclass(frozen=True)
class LabelSpace:
    """One emotion vocabulary: ``names`` in ClassLabel order, each with a valence."""

    name: str
    names: list[str]
    valences: dict[str, str] = field(repr=False)

    def __post_init__(self):
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"taxonomy {self.name!r}: duplicate label names in {self.names}")
        for label in self.names:
            if self.valences.get(label) not in VALENCES:
                raise ValueError(
                    f"taxonomy {self.name!r}: label {label!r} has valence {self.valences.get(label)!r}; "
                    f"expected one of {list(VALENCES)}"
                )

    @property
    def num_labels(self) -> int:
        return len(self.names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    @property
    def is_valence(self) -> bool:
        """A space whose names are valence words: any categorical emotion maps onto it by valence."""
        return set(self.names) <= set(VALENCES)

    def valence_of(self, name: str) -> str:
        if name not in self.valences:
            raise KeyError(f"taxonomy {self.name!r} has no label {name!r}; labels: {self.names}")
        return self.valences[name]

    def class_label(self):
        """The ``datasets.ClassLabel`` feature of this space."""
        import datasets

        return datasets.ClassLabel(names=list(self.names))

    def resolve(self, label: str) -> str | None:
        """The space's label for one source label, or None if it has no place here."""
        if label in self.names:
            return label
        concept = normalise(label)
        if concept in self.names:
            return concept
        if self.is_valence:
            valence = CONCEPT_VALENCE.get(concept, concept if concept in VALENCES else None)
            if valence in self.names:
                return valence
        return None

    def map_labels(
        self,
        source_labels: Iterable,
        *,
        source: str = "<source>",
        label_map: Mapping | None = None,
        drop_unmapped: bool = False,
    ) -> dict[str, str | None]:
        """Map every source label name to a name of this space (None = dropped).

        ``label_map`` overrides win (a value of None drops that label). A value is a label of this space
        or any name that maps onto it, so one map can name a source's numbered classes once and serve
        every taxonomy (``{"1": happy}`` -> ``happiness`` on ekman7, ``positive`` on valence3). Unless
        ``drop_unmapped``, an :class:`UnmappedLabelError` lists every label that could not be mapped.
        """
        overrides: dict[str, str | None] = {}
        for src, dst in (label_map or {}).items():
            target = None if dst is None else self.resolve(str(dst))
            if dst is not None and target is None:
                raise ValueError(
                    f"source {source!r}: label_map sends {str(src)!r} to {dst!r}, which is not a label of "
                    f"taxonomy {self.name!r} {self.names} and does not map onto one"
                )
            overrides[str(src)] = target
        mapping: dict[str, str | None] = {}
        unmapped = []
        for label in source_labels:
            key = str(label)
            mapping[key] = overrides[key] if key in overrides else self.resolve(key)
            if mapping[key] is None and key not in overrides:
                unmapped.append(key)
        if unmapped and not drop_unmapped:
            raise UnmappedLabelError(source, self, unmapped)
        return mapping


def get_label_space(spec: str | Mapping | LabelSpace) -> LabelSpace:
    """``"ekman7"`` | ``"mikels8"`` | ``"valence3"``, or a user space from config.

    A user space is ``{"name": ..., "labels": {label: valence, ...}}`` or ``{"name": ..., "labels":
    [{"name": label, "valence": valence}, ...]}``; a label that is a known concept may omit its valence.
    """
    if isinstance(spec, LabelSpace):
        return spec
    if isinstance(spec, str):
        if spec not in BUILTIN_SPACES:
            raise ValueError(
                f"unknown taxonomy {spec!r}; built-in: {sorted(BUILTIN_SPACES)} "
                "(or give {'name': ..., 'labels': {label: valence}})"
            )
        names = list(BUILTIN_SPACES[spec])
        valences = {n: CONCEPT_VALENCE.get(n, n) for n in names}
        return LabelSpace(spec, names, valences)
    if not isinstance(spec, Mapping) or "labels" not in spec:
        raise ValueError(f"a taxonomy is a name or a mapping with 'name' and 'labels'; got {spec!r}")
    labels = spec["labels"]
    if isinstance(labels, Mapping):
        items = list(labels.items())
    else:
        items = [(d["name"], d.get("valence")) if isinstance(d, Mapping) else (d, None) for d in labels]
    valences = {}
    for label, valence in items:
        valence = valence or CONCEPT_VALENCE.get(normalise(label)) or (label if label in VALENCES else None)
        valences[str(label)] = valence
    return LabelSpace(str(spec.get("name", "custom")), [str(k) for k, _ in items], valences)


def taxonomy_name(taxonomy: object) -> str | None:
    """The taxonomy's name from a stage-1 config's `emotion_taxonomy`: a name (`ekman7`), or, as stage 1 writes
    it since the label space travels with the checkpoint, `{"name": ..., "names": [...]}`."""
    return taxonomy.get("name") if isinstance(taxonomy, dict) else taxonomy
