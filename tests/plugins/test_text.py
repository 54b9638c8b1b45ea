"""text plugin: byte ids, embeddings against a table lookup, masks and padding invariance, reported truncation,
WordPiece / BPE vocabularies through Hugging Face tokenizers (when installed), errors, the topic sentences."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import polymodal
from polymodal.core.component import ModalityInputError
from polymodal.data import from_table
from polymodal.plugins.text import (
    BYTE_VOCAB_SIZE,
    SHARED,
    TEXT_EXTENSIONS,
    TOPICS,
    TextTokenizer,
    TextTruncationWarning,
    TopicSentencesDataSource,
    read_text,
    word_vocabulary,
)
from polymodal.testing import check_data_source, check_tokenizer


def tokenizer(**overrides: object) -> TextTokenizer:
    torch.manual_seed(0)
    return TextTokenizer.from_config(**{"embed_dim": 8, **overrides}).eval()


def test_discovered_through_entry_point() -> None:
    assert "text" in polymodal.list_modalities()
    assert next(p for p in polymodal.list_plugins() if p.name == "text").status == "loaded"
    assert polymodal.get("tokenizer", "text") is TextTokenizer
    assert polymodal.get("data source", "topic_sentences") is TopicSentencesDataSource
    # the entry point names the package; its classes live in the package's modules
    assert TextTokenizer.__module__ == "polymodal.plugins.text.tokenizer"
    assert TopicSentencesDataSource.__module__ == "polymodal.plugins.text.data"


def test_conformance() -> None:
    tokens = check_tokenizer("text")
    assert tokens.embeddings.shape[0] == 2 and tokens.meta["truncated"].tolist() == [0, 0]
    check_data_source("topic_sentences")


def test_byte_ids_are_utf8_bytes_plus_three() -> None:
    tok = tokenizer()
    text = "aé日🙂"
    expected = [b + 3 for b in text.encode("utf-8")]
    assert tok.preprocess(text).tolist() == expected == [100, 198, 172, 233, 154, 168, 243, 162, 156, 133]
    assert tok.vocab_size == BYTE_VOCAB_SIZE == 259 and (tok.pad_id, tok.eos_id) == (0, 1)
    assert tok.preprocess("").tolist() == [1]  # an empty text is one end-of-sequence token
    assert tokenizer(add_eos=True).preprocess("hi").tolist() == [107, 108, 1]
    assert tok.decode(tok.preprocess(text)) == text
    assert tok(["hello world"]).num_tokens == 11 and tok(["日"]).num_tokens == 3


def test_forward_is_a_table_lookup_plus_positions_with_a_padding_mask() -> None:
    tok = tokenizer()
    texts = ["héllo", "hi", "the longest one"]
    out = tok(texts)
    assert tuple(out.embeddings.shape) == (3, 15, 8)
    lengths = [len(t.encode()) for t in texts]
    assert out.mask.sum(1).tolist() == lengths == [6, 2, 15]
    for b, text in enumerate(texts):
        for n, byte in enumerate(text.encode()):
            ref = tok.embed.weight[byte + 3] + tok.pos_embed[0, n]
            assert torch.allclose(out.embeddings[b, n], ref, atol=1e-7)
        assert bool((out.embeddings[b, lengths[b] :] == 0).all())
        assert not bool(out.mask[b, lengths[b] :].any())


def test_padding_never_changes_a_text() -> None:
    tok = tokenizer()
    texts = ["a", "ein längerer Satz", "短い"]
    batch = tok(texts)
    for b, text in enumerate(texts):
        alone = tok(text)
        assert bool(alone.mask.all())
        assert (alone.embeddings[0] - batch.embeddings[b][batch.mask[b]]).abs().max() <= 1e-6
    # preprocessed ids collate to the same batch as the strings
    collated = tok.collate([tok.preprocess(t) for t in texts])
    assert torch.equal(tok(collated).embeddings, batch.embeddings)


def test_truncation_is_counted_and_reported() -> None:
    tok = tokenizer(max_length=5)
    with pytest.warns(TextTruncationWarning) as record:
        out = tok(["abcdefgh", "abc", "abcdef"])
    assert str(record[0].message) == "text: truncated 2 of 3 texts to max_length=5 (4 tokens dropped)"
    assert out.meta["truncated"].tolist() == [3, 0, 1]
    assert out.num_tokens == 5 and out.mask.sum(1).tolist() == [5, 3, 5]
    assert torch.allclose(
        out.embeddings[0], tok("abcde").embeddings[0]
    )  # the first max_length bytes are kept
    with_eos = tokenizer(max_length=5, add_eos=True)
    with pytest.warns(TextTruncationWarning):
        batch = with_eos.collate(["abcdefgh"])
    assert batch["input_ids"][0].tolist() == [100, 101, 102, 103, 1]  # a b c d <eos>
    assert batch["truncated"].tolist() == [4]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tok(["short"])  # nothing truncated: no warning


WORDPIECE_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "un", "##aff", "##able", ",", "!"]


def write_vocab(path: Path, tokens: list[str]) -> str:
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return str(path)


def test_wordpiece_vocabulary(tmp_path: Path) -> None:
    pytest.importorskip("tokenizers")
    vocab = write_vocab(tmp_path / "vocab.txt", WORDPIECE_VOCAB)
    tok = tokenizer(vocabulary="wordpiece", vocab_file=vocab, add_eos=True)
    assert (tok.vocab_size, tok.pad_id, tok.eos_id) == (11, 0, 3)
    assert tok.preprocess("Hello, unaffable WORLD! zzz").tolist() == [4, 9, 6, 7, 8, 5, 10, 1, 3]
    out = tok(["hello world", "unaffable"])
    assert out.mask.sum(1).tolist() == [3, 4]
    assert torch.allclose(out.embeddings[0, :2], tok.embed.weight[[4, 5]] + tok.pos_embed[0, :2])
    assert tok.decode(tok.preprocess("hello unaffable")) == "hello unaffable"
    # a vocabulary without a padding token gets an extra row for it
    no_pad = tokenizer(
        vocabulary="wordpiece", vocab_file=write_vocab(tmp_path / "v2.txt", WORDPIECE_VOCAB[1:])
    )
    assert (no_pad.vocab_size, no_pad.pad_id) == (11, 10)
    assert no_pad.collate(["hello world", "hello"])["input_ids"][1].tolist() == [3, 10]


def test_bpe_vocabulary(tmp_path: Path) -> None:
    pytest.importorskip("tokenizers")
    vocab = {
        "<pad>": 0,
        "</s>": 1,
        "h": 2,
        "e": 3,
        "l": 4,
        "o": 5,
        "Ġ": 6,
        "he": 7,
        "ll": 8,
        "hell": 9,
        "hello": 10,
    }
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\nh e\nl l\nhe ll\nhell o\n")
    tok = tokenizer(
        vocabulary="bpe",
        vocab_file=str(tmp_path / "vocab.json"),
        merges_file=str(tmp_path / "merges.txt"),
        pad_token="<pad>",
        eos_token="</s>",
    )
    assert (tok.vocab_size, tok.pad_id, tok.eos_id) == (11, 0, 1)
    assert tok.preprocess("hello hell").tolist() == [10, 6, 9]
    assert tok.decode(torch.tensor([10, 6, 9])) == "hello hell"


def test_missing_tokenizers_package_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # import tokenizers now raises ImportError
    vocab = write_vocab(tmp_path / "vocab.txt", WORDPIECE_VOCAB)
    with pytest.raises(ImportError) as info:
        tokenizer(vocabulary="wordpiece", vocab_file=vocab)
    assert str(info.value) == (
        "text: vocabulary='wordpiece' needs Hugging Face tokenizers, which is not installed; install the optional "
        "extra: pip install 'polymodal[text]' (or: pip install tokenizers)"
    )


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="vocabulary='wordpiece' needs vocab_file"):
        TextTokenizer.default_config(vocabulary="wordpiece")
    with pytest.raises(ValueError, match="vocabulary='bpe' needs merges_file"):
        TextTokenizer.default_config(vocabulary="bpe", vocab_file="vocab.json")
    with pytest.raises(
        ValueError, match="vocab_file and merges_file apply to vocabulary='wordpiece' or 'bpe'"
    ):
        TextTokenizer.default_config(vocab_file="vocab.txt")
    pytest.importorskip("tokenizers")
    with pytest.raises(FileNotFoundError, match="text: vocabulary file"):
        tokenizer(vocabulary="wordpiece", vocab_file=str(tmp_path / "missing.txt"))
    vocab = write_vocab(tmp_path / "vocab.txt", WORDPIECE_VOCAB)
    with pytest.raises(ValueError, match=r"text: eos_token '</s>' is not in"):
        tokenizer(vocabulary="wordpiece", vocab_file=vocab, eos_token="</s>")


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (42, "text: expected a tensor (B, N) token ids in [0, 259) with N <= 512, got int"),
        (["ok", 3], "text: expected a string or a non-empty list of strings, got int"),
        ([], "text: expected a non-empty list of strings or id tensors, got list of 0 items"),
        (b"abc", "text: expected a tensor (B, N) token ids in [0, 259) with N <= 512, got bytes"),
        (
            torch.full((1, 3), 259),
            "text: expected (B, N) token ids in [0, 259) with N <= 512, got ids from 259 to 259",
        ),
        (
            torch.zeros(1, 3),
            "text: expected an integer tensor (B, N) token ids in [0, 259) with N <= 512, got tensor "
            "of shape (1, 3) and dtype float32",
        ),
        (
            {"input_ids": torch.zeros(1, 2, dtype=torch.long), "mask": torch.zeros(1, 2, dtype=torch.bool)},
            "text: expected at least one real token per text, got a row whose mask is all False",
        ),
        (
            {"tokens": torch.zeros(1, 2, dtype=torch.long)},
            "text: expected a string, a list of strings, or a dict with "
            "'input_ids' and 'mask', got a dict with keys ['tokens']",
        ),
        (
            [torch.zeros(2, 2, dtype=torch.long)],
            "text: expected strings or 1-D integer id tensors (from preprocess), "
            "got tensor of shape (2, 2) and dtype int64",
        ),
    ],
)
def test_errors(batch: object, message: str) -> None:
    with pytest.raises(ModalityInputError) as info:
        tokenizer()(batch)
    assert str(info.value) == message


def test_preprocess_errors() -> None:
    with pytest.raises(ModalityInputError, match=r"^text: expected a str \(decode bytes first\), got bytes$"):
        tokenizer().preprocess(b"abc")
    with pytest.raises(ModalityInputError, match=r"^text: expected a string, got NoneType$"):
        tokenizer().preprocess(None)


def test_topic_sentences() -> None:
    source = TopicSentencesDataSource.from_config(num_train=300, num_test=60)
    splits = source.splits()
    train = splits["train"]
    assert (len(train), len(splits["test"])) == (300, 60)
    assert np.bincount([y for _, y in train]).tolist() == [50] * 6
    assert [s for s, _ in train.items[:5]] == [s for s, _ in source.splits()["train"].items[:5]]  # seeded
    assert source.baseline() == pytest.approx(1 / 6)
    names = list(TOPICS)
    vocab = {t: {w for ws in TOPICS[t].values() for w in ws} for t in names}
    shared = {w for ws in SHARED.values() for w in ws}
    assert all(not (vocab[a] & vocab[b]) for a in names for b in names if a < b)  # disjoint topic words
    assert not any(vocab[t] & shared for t in names)
    own_counts = []
    for text, y in train:
        assert text[0].isupper() and text.endswith(".")
        words = text[:-1].lower().split()
        own = sum(w in vocab[names[y]] for w in words)
        assert own >= 1  # every sentence names its topic at least once
        own_counts.append(own)
    assert 3.0 < np.mean(own_counts) < 6.0  # topic_rate 0.7 of about 6 content slots
    assert source.task() == {"type": "classification", "num_classes": 6}
    assert TopicSentencesDataSource.from_config(num_topics=4).task()["num_classes"] == 4


def test_topic_sentences_splits_come_from_generate() -> None:
    source = TopicSentencesDataSource.from_config(num_train=12, num_test=6)
    splits = source.splits()
    assert [y for _, y in splits["train"]] == [3, 2, 1, 4, 5, 5, 0, 3, 0, 4, 2, 1]
    assert [y for _, y in splits["test"]] == [0, 3, 4, 2, 1, 5]
    assert splits["train"][0][0] == "Every bank funded the quarterly market."
    assert splits["test"][0][0] == "Every idea scored a referee with the year."
    assert list(splits["test"]) == source.generate(6, 1_000_003)  # the test split: seed + TEST_SEED_OFFSET
    assert "splits" not in TopicSentencesDataSource.__dict__  # the base class makes them


def test_demo_settings_fit_a_word_vocabulary(tmp_path: Path) -> None:
    demo = TopicSentencesDataSource.demo
    assert demo is not None and demo.fit is word_vocabulary
    assert (dict(demo.source), dict(demo.tokenizer), dict(demo.head)) == ({}, {}, {"pool": "mean"})
    pytest.importorskip("tokenizers")
    source = TopicSentencesDataSource.from_config(num_train=12, num_test=6)
    settings = demo.fit(source, tmp_path / "model")
    path = tmp_path / "model" / "text_vocab.txt"
    assert settings == {"vocabulary": "wordpiece", "vocab_file": str(path.resolve())}
    words = path.read_text().split("\n")
    assert words[:4] == ["[PAD]", "[UNK]", "[SEP]", "."] and words[-1] == ""
    seen = {w for text, _ in source.splits()["train"] for w in text[:-1].lower().split()}
    assert sorted(words[4:-1]) == words[4:-1] and set(words[4:-1]) == seen
    tok = TextTokenizer.from_config(embed_dim=8, **settings)
    assert tok.preprocess("Every bank funded the quarterly market.").tolist() == [
        words.index(w) for w in ("every", "bank", "funded", "the", "quarterly", "market", ".")
    ]


def test_files(tmp_path: Path) -> None:
    assert TextTokenizer.file_extensions == TEXT_EXTENSIONS == (".txt",)
    path = tmp_path / "note.txt"
    path.write_bytes("  héllo\nwörld \n".encode("latin-1"))
    config = TextTokenizer.default_config()
    assert (
        TextTokenizer.read_file(path, config, encoding="latin-1")
        == "héllo\nwörld"
        == read_text(path, "latin-1")
    )
    with pytest.raises(UnicodeDecodeError):
        TextTokenizer.read_file(path, config)  # utf-8 by default


def from_frame(frame: pd.DataFrame, **kwargs: object) -> object:
    """The plugin's dataset of a table, called as polymodal.data.from_table calls it."""
    given = {"target": None, "columns": None, "tokenizer": None, "task": None, "class_names": None, **kwargs}
    return TextTokenizer.dataset_from_table(frame, modality="text", on_error="raise", **given)


def test_dataset_from_table() -> None:
    frame = pd.DataFrame(
        {"text": ["fine day", "awful day", 42], "review": ["a", "b", "c"], "stars": [5, 1, 3]}
    )
    data = from_frame(frame, target="stars", tokenizer={"max_length": 16})
    theirs = from_table(frame, "text", target="stars", tokenizer={"max_length": 16})
    assert len(data) == len(theirs) == 3 and data.task == theirs.task and data.task.kind == "classification"
    assert data.targets.tolist() == theirs.targets.tolist() == [5, 1, 3]
    assert data.tokenizer_config == theirs.tokenizer_config and data.tokenizer_config["max_length"] == 16
    assert data.raw(2) == "42" and data.inputs == theirs.inputs  # values become strings
    other = from_frame(frame, target="stars", columns=["review"], task="regression")
    assert other.inputs == ["a", "b", "c"] and other.task.kind == "regression"
    with pytest.raises(
        ValueError, match=r"^text: pass target=<column> \(columns: \['text', 'review', 'stars'\]\)$"
    ):
        from_frame(frame)
    with pytest.raises(KeyError, match=r"text: expected one column of samples, got \['body'\]"):
        from_frame(frame, target="stars", columns=["body"])
    with pytest.raises(KeyError, match=r"text: target column\(s\) \['score'\] not in the table"):
        from_frame(frame, target="score")


def test_word_vocabulary_without_tokenizers_keeps_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    source = TopicSentencesDataSource.from_config(num_train=12, num_test=6)
    with pytest.warns(UserWarning, match=r"demo: text keeps UTF-8 byte tokens \(install polymodal\[text\]"):
        assert word_vocabulary(source, tmp_path) == {}
    assert not (tmp_path / "text_vocab.txt").exists()
