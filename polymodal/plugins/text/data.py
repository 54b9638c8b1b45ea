"""The ``topic_sentences`` data source: synthetic topic classification of English-like sentences (documented in
:class:`TopicSentencesDataSource`); no text data set ships with our dependencies. ``polymodal demo`` trains it with
a word vocabulary fitted on the training split (:func:`~polymodal.plugins.text.vocabulary.word_vocabulary`).

Shapes: samples ``str`` (one or two clauses), targets topic indices in ``range(num_topics)``, topics balanced.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field, model_validator

from polymodal.core.source import DataSource, DataSourceConfig, DemoSettings
from polymodal.plugins.text.vocabulary import word_vocabulary

__all__ = [
    "CONJUNCTIONS",
    "DETERMINERS",
    "PREPOSITIONS",
    "SHARED",
    "TOPICS",
    "TopicSentencesDataSource",
    "TopicSentencesDataSourceConfig",
]

# Per topic: nouns, verbs (past tense), adjectives. Shared words carry no topic information.
TOPICS: dict[str, dict[str, tuple[str, ...]]] = {
    "sports": {
        "noun": (
            "striker",
            "goal",
            "match",
            "coach",
            "stadium",
            "referee",
            "league",
            "team",
            "ball",
            "season",
        ),
        "verb": ("scored", "tackled", "defended", "trained", "kicked", "won"),
        "adj": ("athletic", "fast", "undefeated", "offside", "competitive"),
    },
    "cooking": {
        "noun": ("chef", "recipe", "oven", "soup", "garlic", "kitchen", "flour", "sauce", "pan", "butter"),
        "verb": ("baked", "stirred", "seasoned", "roasted", "chopped", "simmered"),
        "adj": ("spicy", "crispy", "savory", "tender", "sweet"),
    },
    "astronomy": {
        "noun": (
            "telescope",
            "galaxy",
            "planet",
            "comet",
            "orbit",
            "nebula",
            "astronomer",
            "star",
            "moon",
            "eclipse",
        ),
        "verb": ("observed", "orbited", "eclipsed", "charted", "detected", "rotated"),
        "adj": ("celestial", "lunar", "distant", "cosmic", "stellar"),
    },
    "finance": {
        "noun": (
            "bank",
            "stock",
            "investor",
            "loan",
            "market",
            "dividend",
            "budget",
            "bond",
            "profit",
            "tax",
        ),
        "verb": ("invested", "traded", "borrowed", "audited", "priced", "funded"),
        "adj": ("fiscal", "bullish", "quarterly", "liquid", "volatile"),
    },
    "medicine": {
        "noun": (
            "doctor",
            "patient",
            "vaccine",
            "clinic",
            "surgeon",
            "fever",
            "nurse",
            "dose",
            "therapy",
            "virus",
        ),
        "verb": ("diagnosed", "treated", "prescribed", "vaccinated", "healed", "examined"),
        "adj": ("clinical", "chronic", "sterile", "viral", "acute"),
    },
    "music": {
        "noun": (
            "guitar",
            "melody",
            "concert",
            "drummer",
            "chorus",
            "violin",
            "album",
            "rhythm",
            "band",
            "singer",
        ),
        "verb": ("played", "sang", "composed", "tuned", "recorded", "rehearsed"),
        "adj": ("melodic", "acoustic", "harmonic", "loud", "rhythmic"),
    },
}
SHARED = {
    "noun": ("people", "day", "year", "group", "city", "plan", "report", "morning", "friend", "idea"),
    "verb": ("saw", "made", "found", "had", "took", "liked"),
    "adj": ("new", "big", "good", "old", "small"),
}
DETERMINERS = ("the", "a", "this", "that", "every", "one")
PREPOSITIONS = ("in", "on", "with", "after", "before", "near", "for")
CONJUNCTIONS = ("and", "while", "because", "but")


class TopicSentencesDataSourceConfig(DataSourceConfig):
    type: str = "topic_sentences"
    num_train: int = Field(2000, gt=0, description="Training sentences.")
    num_test: int = Field(500, gt=0, description="Test sentences.")
    num_topics: int = Field(
        6, ge=2, le=len(TOPICS), description="Number of topics (classes), from the first."
    )
    topic_rate: float = Field(
        0.7, gt=0, le=1, description="Probability that a content slot takes a word of the sentence's topic."
    )
    confusion_rate: float = Field(
        0.1, ge=0, lt=1, description="Probability that a content slot takes a word of another topic (noise)."
    )

    @model_validator(mode="after")
    def _check_rates(self) -> TopicSentencesDataSourceConfig:
        if self.topic_rate + self.confusion_rate > 1:
            raise ValueError(
                f"topic_rate + confusion_rate must be <= 1, got {self.topic_rate + self.confusion_rate}"
            )
        return self


class TopicSentencesDataSource(DataSource):
    """Synthetic topic classification of English-like sentences (target = topic index).

    A sentence is one or two clauses ``DET [ADJ] NOUN VERB DET [ADJ] NOUN [PREP DET NOUN]`` joined by a
    conjunction. Each content slot (noun, verb, adjective) takes a word of the sentence's topic with probability
    ``topic_rate``, a word of another topic with probability ``confusion_rate``, and otherwise a topic-neutral word;
    function words (determiners, prepositions, conjunctions) are shared by all topics. Every sentence has at least
    one topic word. It is learnable because the topic vocabularies are disjoint, so the topic is the majority topic
    among the content words; it is not trivial because most words are shared or misleading and, at the byte level,
    words must be recognised from their spelling. Synthetic: no text data set ships with our dependencies.
    """

    name: ClassVar[str] = "topic_sentences"
    modality: ClassVar[str] = "text"
    config_class: ClassVar[type[TopicSentencesDataSourceConfig]] = TopicSentencesDataSourceConfig
    #: the demo: words of a vocabulary fitted on the training split (a bag of words learns in few steps), mean pooling
    demo: ClassVar[DemoSettings | None] = DemoSettings(head={"pool": "mean"}, fit=word_vocabulary)

    @property
    def topics(self) -> list[str]:
        return list(TOPICS)[: self.config.num_topics]

    def _word(
        self, kind: str, topic: int, rng: np.random.Generator, forced: bool = False
    ) -> tuple[str, bool]:
        c = self.config
        u = 1.0 if forced else rng.random()
        names = self.topics
        if forced or u < c.topic_rate:
            pool, own = TOPICS[names[topic]][kind], True
        elif u < c.topic_rate + c.confusion_rate:
            other = (topic + 1 + int(rng.integers(len(names) - 1))) % len(names)
            pool, own = TOPICS[names[other]][kind], False
        else:
            pool, own = SHARED[kind], False
        return pool[int(rng.integers(len(pool)))], own

    def sentence(self, topic: int, rng: np.random.Generator) -> str:
        """One sentence of topic ``topic``."""
        slots: list[tuple[str, str | None]] = []  # (kind or "", fixed word)
        for clause in range(1 + int(rng.random() < 0.4)):
            if clause:
                slots.append(("", CONJUNCTIONS[int(rng.integers(len(CONJUNCTIONS)))]))
            for part in ("subject", "verb", "object", "pp"):
                if part == "verb":
                    slots.append(("verb", None))
                    continue
                if part == "pp":
                    if rng.random() >= 0.5:
                        continue
                    slots.append(("", PREPOSITIONS[int(rng.integers(len(PREPOSITIONS)))]))
                slots.append(("", DETERMINERS[int(rng.integers(len(DETERMINERS)))]))
                if part != "pp" and rng.random() < 0.4:
                    slots.append(("adj", None))
                slots.append(("noun", None))
        content = [i for i, (kind, _) in enumerate(slots) if kind]
        words = [fixed or "" for _, fixed in slots]
        own = False
        for i in content:
            words[i], is_own = self._word(slots[i][0], topic, rng)
            own = own or is_own
        if not own:  # make sure the sentence says something about its topic
            i = content[int(rng.integers(len(content)))]
            words[i], _ = self._word(slots[i][0], topic, rng, forced=True)
        text = " ".join(words)
        return text[0].upper() + text[1:] + "."

    def generate(self, num: int, seed: int) -> list[tuple[str, int]]:
        """``num`` sentences ``(text, topic)``, topics balanced, in a seeded random order."""
        rng = np.random.default_rng(seed)
        labels = rng.permutation(np.arange(num) % self.config.num_topics)
        return [(self.sentence(int(y), rng), int(y)) for y in labels]

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return self.config.num_topics
