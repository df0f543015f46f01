"""The text data set, the language_model task, sampling and `minidl sample`, on tiny texts."""

import csv
import gzip
import hashlib
import io
import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers import invoke, meta, metrics, run_of, write_config

import minidl_cli
from minidl_cli.data import make_dataset
from minidl_cli.data.text import CORPORA, TEXTS, windows
from minidl_cli.sampling import contexts, generate
from minidl_cli.tasks import LanguageModel

NAMES = ["emma", "ava", "elena", "mara", "nora", "selma", "lena", "vera", "mona", "rosa",
         "alma", "anna", "sara", "nola", "eva", "lorena", "marlene", "salome", "ramona",
         "leonora"]  # nine letters, each in several names: every split trains on all of them
STORY = ("the cat sat on the mat. the dog sat on the log. a cat and a dog sat on a mat. "
         "the end of the tale is near; the cat, the dog and the log are all that is left. ") * 3

# A layer that takes token ids as the `embedding` does (a TypeError for floats): the one-hot
# code of each id, so that these tests build a language model from built-in layers after it.
PLUGIN = '''
import torch
from minidl_cli.nn import Module
from minidl_cli.registry import register


@register("layer", "one_hot")
class OneHot(Module):
    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.register_buffer("eye", torch.eye(num_classes))

    def output_shape(self, input_shape):
        return (*input_shape, self.num_classes)

    def forward(self, x):
        if x.is_floating_point():
            raise TypeError("one_hot takes token ids")
        return self.eye[x]

    def backward(self, grad_output):
        return None
'''


def text_config(tmp_path, text=None, mode="lines", target="next", block_size=3,
                vocabulary=None, **changes):
    """A tiny language model on `text` (NAMES as lines, STORY as a stream) in tmp_path."""
    text = text if text is not None else ("\n".join(NAMES) + "\n" if mode == "lines" else STORY)
    (tmp_path / "text.txt").write_text(text, encoding="utf-8")
    (tmp_path / "minidl_test_text_plugin.py").write_text(PLUGIN)
    vocabulary = vocabulary or len(set(text) | {"\n"} if mode == "lines" else set(text))
    model = [{"type": "one_hot", "num_classes": vocabulary}]
    if target == "next":
        model += ["flatten", {"type": "linear", "out_features": 16}, "tanh"]
    else:
        model += [{"type": "linear", "out_features": 16}, "tanh"]
    model += [{"type": "linear", "out_features": vocabulary}]
    config = {"name": "text", "seed": 0, "plugins": ["minidl_test_text_plugin"],
              "data": {"type": "text", "path": "text.txt", "mode": mode, "target": target,
                       "block_size": block_size, "test_fraction": 0.2},
              "model": model, "loss": "cross_entropy",
              "optimizer": {"type": "adam", "lr": 0.02},
              "train": {"epochs": 3, "batch_size": 16}}
    for key, value in changes.items():
        section, option = key.split("__")
        config[section] = {**config[section], option: value}
    return write_config(tmp_path, config, name="text.yaml")


def decode(ids, vocabulary):
    return "".join(vocabulary[i] for i in ids.reshape(-1).tolist())


def lines_dataset(tmp_path, text, **options):
    path = tmp_path / "lines.txt"
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return make_dataset("text", {"path": path, **options}, seed=0)


# ---------------------------------------------------------------- the data set


def examples_of(word, block_size):
    """makemore's examples of one item: each context of block_size tokens (boundary tokens
    before the first character) and the token after it, ending with the boundary token."""
    framed = "\n" * block_size + word + "\n"
    return [(framed[i:i + block_size], framed[i + block_size]) for i in range(len(word) + 1)]


def test_lines_mode_frames_each_line_as_makemore_does(tmp_path):
    # a context longer than any name: an item's last example (all of it) names the item
    ds = lines_dataset(tmp_path, "\n".join(NAMES) + "\n\n", block_size=8, test_fraction=0.25)
    vocab = ds.vocabulary
    assert vocab[0] == "\n" and vocab[1:] == sorted(set("".join(vocab[1:])))
    assert ds.task == "language_model" and ds.x_train.dtype == torch.int64
    got = {}
    for part, (x, y) in {"train": (ds.x_train, ds.y_train), "test": (ds.x_test, ds.y_test)
                         }.items():
        assert x.shape == (len(y), 8) and y.shape == (len(y),)
        got[part] = sorted((decode(row, vocab), vocab[t]) for row, t in zip(x, y, strict=True))
    # every item whole in one part: its examples, from 3 boundary tokens to its end
    items = {part: [w for w in NAMES if examples_of(w, 8)[-1] in got[part]] for part in got}
    assert sorted(items["train"] + items["test"]) == sorted(NAMES)
    assert len(items["test"]) == 5  # 25% of the 20 lines (the blank line is not an item)
    for part in got:
        assert got[part] == sorted(e for w in items[part] for e in examples_of(w, 8))
    assert set("".join(items["train"])) == set(vocab[1:])  # the training text's characters


def test_lines_split_follows_the_seed(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(NAMES))
    split = [make_dataset("text", {"path": path, "block_size": 2}, seed=s).x_test
             for s in (0, 0, 1)]
    assert torch.equal(split[0], split[1]) and not torch.equal(split[0], split[2])


def test_target_sequence_is_the_context_shifted_by_one(tmp_path):
    ds = lines_dataset(tmp_path, "\n".join(NAMES), block_size=4, target="sequence")
    nxt = lines_dataset(tmp_path, "\n".join(NAMES), block_size=4, target="next")
    assert ds.y_train.shape == ds.x_train.shape and torch.equal(ds.x_train, nxt.x_train)
    # a boundary token after a boundary token is padding (-100, cross-entropy's ignore_index,
    # as makemore's -1): no prediction; every other position is the next character
    shifted = torch.cat([ds.x_train[:, 1:], nxt.y_train[:, None]], 1)
    padding = (ds.x_train == 0) & (shifted == 0)
    assert torch.equal(ds.y_train, shifted.masked_fill(padding, -100))
    assert padding.any() and not padding[:, -1].any()  # the last position predicts a token


def test_stream_mode_windows_and_the_end_of_the_text_as_test(tmp_path):
    path = tmp_path / "story.txt"
    path.write_text(STORY)
    options = {"path": path, "mode": "stream", "block_size": 5, "test_fraction": 0.1}
    ds = make_dataset("text", options, seed=0)
    n_test = round(0.1 * len(STORY))
    train, test = STORY[:-n_test], STORY[-n_test:]
    assert ds.vocabulary == sorted(set(train))  # no boundary token in a stream
    assert len(ds.x_train) == len(train) - 5 and len(ds.x_test) == len(test) - 5
    for i in (0, 7, len(ds.x_train) - 1):  # one window per character: target next
        assert decode(ds.x_train[i], ds.vocabulary) == train[i:i + 5]
        assert ds.vocabulary[ds.y_train[i]] == train[i + 5]
    assert decode(ds.x_test[0], ds.vocabulary) == test[:5]
    seq = make_dataset("text", {**options, "target": "sequence"}, seed=0)
    assert decode(seq.x_train, ds.vocabulary) == train[:len(seq.x_train) * 5]  # no overlap
    assert decode(seq.y_train, ds.vocabulary) == train[1:len(seq.x_train) * 5 + 1]


def test_stream_windows_are_views_of_the_text_not_copies(tmp_path):
    """A long text's windows cost its ids once, not block_size times."""
    path = tmp_path / "story.txt"
    path.write_text(STORY * 20)
    ds = make_dataset("text", {"path": path, "mode": "stream", "block_size": 64}, seed=0)
    assert len(ds.x_train) > 1000
    text_bytes = len(STORY * 20) * 8
    assert ds.x_train.untyped_storage().nbytes() <= text_bytes
    assert ds.x_train.untyped_storage().data_ptr() == ds.y_train.untyped_storage().data_ptr()


def test_gzipped_text_and_windows_line_ends(tmp_path):
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress("\r\n".join(NAMES).encode()))
    (tmp_path / "b.txt").write_text("\n".join(NAMES))
    a, b = (make_dataset("text", {"path": tmp_path / f, "block_size": 3}, seed=0)
            for f in ("a.txt.gz", "b.txt"))
    assert a.vocabulary == b.vocabulary and torch.equal(a.x_train, b.x_train)
    assert "\r" not in a.vocabulary


def test_a_line_of_spaces_is_no_item_as_a_file_of_spaces_is_no_text(tmp_path):
    plain = lines_dataset(tmp_path, "\n".join(NAMES) + "\n", block_size=3)
    spaced = lines_dataset(tmp_path, "\n  \n".join(NAMES) + "\n \t\n", block_size=3)
    assert spaced.vocabulary == plain.vocabulary and " " not in spaced.vocabulary
    assert torch.equal(spaced.x_train, plain.x_train)


def test_windows_and_old_mac_line_ends_are_line_ends(tmp_path):
    unix = lines_dataset(tmp_path, "\n".join(NAMES) + "\n", block_size=3)
    for end in ("\r\n", "\r"):
        other = lines_dataset(tmp_path, end.join(NAMES) + end, block_size=3)
        assert other.vocabulary == unix.vocabulary and torch.equal(other.x_train, unix.x_train)


def test_shipped_corpora_are_the_documented_files():
    readme = (TEXTS / "README.md").read_text()
    for name, path in CORPORA.items():
        digest = hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()
        assert digest in readme, name
    names = make_dataset("text", {"corpus": "names", "block_size": 3}, seed=0)
    assert names.vocabulary == ["\n", *"abcdefghijklmnopqrstuvwxyz"]
    assert names.data_files == {}  # shipped with minidl, like the digits


# ---------------------------------------------------------------- bad input: one line, exit 2


def bad(tmp_path, *args):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.mark.parametrize(("content", "expected"), [
    (b"", "holds no text"),
    (b"  \n\n \n", "holds no text"),
    (b"caf\xe9\nna\xefve\n", r"not UTF-8 text \(byte 0xe9 at offset 3\)"),
    (b"onlyoneline\n\n", "non-blank line in lines mode"),
    (b"onlyoneline\n   \n\t\n", "has 1 non-blank line in lines mode"),  # spaces: no item
])
def test_unusable_text_files(tmp_path, content, expected):
    path = text_config(tmp_path)
    (tmp_path / "text.txt").write_bytes(content)
    message = bad(tmp_path, "train", path)
    assert re.search(expected, message) and "text.txt" in message
    assert not (tmp_path / "runs").exists()


def test_a_wrong_text_option_is_told_only_the_options_text_takes(tmp_path):
    path = text_config(tmp_path)
    accepted = "block_size, path, corpus, mode, target, test_fraction"
    for typo in ("data.standardise=true", "data.shufle=true"):
        assert bad(tmp_path, "train", path, typo).endswith(f"unknown option (options: "
                                                           f"{accepted})")
    assert "did you mean 'block_size'" in bad(tmp_path, "train", path, "data.blok_size=3")
    assert "token ids, not numbers to z-score" in bad(tmp_path, "train", path,
                                                      "data.standardize=true")
    message = bad(tmp_path, "train", path, "data.standardize_target=true")
    assert "only regression has targets" in message and "data.task" not in message
    listing = invoke("list", "data").stdout
    assert "every data set but text takes these" in listing and "standardize:" in listing
    run = run_of(invoke("train", path, "--quiet"))  # its config keeps standardize: false
    assert "standardize: false" in (run / "config.yaml").read_text()
    assert invoke("train", "--resume", run, "train.epochs=4", "--quiet").exit_code == 0


def test_a_gzipped_text_that_is_truncated_corrupt_or_not_gzip_says_which(tmp_path):
    packed = gzip.compress(("\n".join(NAMES) + "\n").encode() * 20)
    for content, expected in (
            (packed[:len(packed) // 2], "is a truncated gzip file (it ends before its "
                                        "end-of-stream marker); copy or download it again"),
            (packed[:10] + bytes(20) + packed[30:], "is a corrupt gzip file (Error -3 "),
            (b"plain text\n", "ends in .gz but is not a gzip file (")):
        (tmp_path / "text.txt.gz").write_bytes(content)
        message = bad(tmp_path, "train", text_config(tmp_path), "data.path=text.txt.gz")
        assert f"{tmp_path / 'text.txt.gz'} {expected}" in message, message


def test_block_size_longer_than_the_whole_text(tmp_path):
    path = text_config(tmp_path, text="to be or not", mode="stream", block_size=20,
                       vocabulary=9)
    message = bad(tmp_path, "train", path)
    assert "data.block_size 20 needs windows of 21 characters (the context and the character " \
           "after it), more than the whole text" in message
    assert "(12 characters" in message and "set data.block_size to at most 1" in message


@pytest.mark.parametrize("mode", ["lines", "stream"])
def test_windows_beyond_memory_are_an_error_with_the_block_size_fix(tmp_path, monkeypatch,
                                                                     mode):
    """Cutting the windows runs out of memory: a ValueError naming data.block_size and the
    file (lines: its size estimate and its longest line), not a MemoryError's traceback."""
    import minidl_cli.data.text as text_module

    def out_of_memory(*args):
        raise MemoryError

    monkeypatch.setattr(text_module, "examples", out_of_memory)
    with pytest.raises(ValueError) as error:
        lines_dataset(tmp_path, "\n".join(NAMES), block_size=4, mode=mode)
    message = str(error.value)
    assert "data.block_size 4" in message and "lines.txt" in message
    if mode == "lines":
        longest = max(map(len, NAMES))
        assert "more than memory holds; lower it (its longest line has " \
               f"{longest} characters: a context beyond {longest + 1} holds only" in message
    else:
        assert message.endswith("does not fit in memory; lower block_size or use a shorter text")


def test_the_block_size_advice_counts_both_parts_of_the_text(tmp_path):
    """The largest block_size offered leaves a window in the training and the test part
    (the end of the text): following the advice trains."""
    from minidl_cli.data import make_dataset

    (tmp_path / "t.txt").write_text("to be or not to be " * 3)  # 57 characters: 6 for test
    options = {"path": str(tmp_path / "t.txt"), "mode": "stream", "block_size": 30}
    with pytest.raises(ValueError, match=r"6 test characters.*at most 5") as info:
        make_dataset("text", options, seed=0)
    assert "whole text" not in str(info.value)
    dataset = make_dataset("text", {**options, "block_size": 5}, seed=0)
    assert len(dataset.x_test) >= 1


def test_a_test_character_the_training_text_never_has(tmp_path):
    """The message says why (the vocabulary is the training part's) and how to fix it; the
    data.test_fraction it proposes for a stream leaves the character in the training part."""
    path = text_config(tmp_path, text=STORY + "Z" * 3, mode="stream")
    message = bad(tmp_path, "train", path)
    assert "the character 'Z' (3 times)" in message and "not in the vocabulary" in message
    assert f"the test part is the text's end (its last {round(0.2 * (len(STORY) + 3))} " \
           f"characters), where 'Z' first appears at character {len(STORY) + 1} of " \
           f"{len(STORY) + 3}: put text holding it earlier in the file" in message
    assert "data.test_fraction" not in message  # 2 test characters make no window of 3 + 1
    text = STORY[:-60] + "Z" + STORY[-60:]
    message = bad(tmp_path, "train", text_config(tmp_path, text=text, mode="stream"))
    fraction = re.search(r"data\.test_fraction to at most ([0-9.]+)$", message.strip())[1]
    options = {"path": str(tmp_path / "text.txt"), "mode": "stream", "block_size": 3}
    dataset = make_dataset("text", {**options, "test_fraction": float(fraction)}, seed=0)
    assert "Z" in dataset.vocabulary
    # a paragraph ending in a newline: the newline is the text's last character
    message = bad(tmp_path, "train", text_config(tmp_path, text=STORY + "\n", mode="stream"))
    assert "holds the character '\\n' (1 time)" in message
    assert "the last: remove it from the end of the file (a final newline, say)" in message


def test_a_block_size_beyond_memory_in_lines_mode_says_how_big(tmp_path, monkeypatch):
    """Lines mode keeps a window of block_size ids per predicted token: block_size 10⁹ on a
    few names asks for terabytes. MemoryError (here raised where the lines are framed, as
    it would be) is one line naming the size and the longest line."""
    from minidl_cli.data import text as text_module

    def out_of_memory(lines, block_size):
        raise MemoryError

    monkeypatch.setattr(text_module, "frame", out_of_memory)
    message = bad(tmp_path, "train", text_config(tmp_path), "data.block_size=1000000000")
    size = 8 * (len("\n".join(NAMES)) + 1 + len(NAMES)) * 10**9 / 1e9
    assert f"data.block_size 1000000000 cuts {tmp_path / 'text.txt'} in lines mode into " \
           f"about {size:.3g} GB of windows" in message
    assert f"its longest line has {max(map(len, NAMES))} characters" in message


def test_a_seed_group_checks_every_seed_split_before_training(tmp_path):
    """The seed draws the lines split: a seed that puts a character's only line into the test
    part is refused before any seed trains (a seed group, a sweep of seed groups)."""
    text = "\n".join([*NAMES, "quiz"]) + "\n"  # q, u, i, z: only in that line
    path = text_config(tmp_path, text=text)

    def splits(seed):
        try:
            make_dataset("text", {"path": tmp_path / "text.txt", "block_size": 3,
                                  "test_fraction": 0.2}, seed=seed)
            return True
        except ValueError:
            return False

    good = [seed for seed in range(40) if splits(seed)]
    bad_seed = next(seed for seed in range(40) if seed not in good)
    path.write_text(path.read_text().replace("\nseed: 0\n", f"\nseed: {good[0]}\n"))
    assert invoke("train", path, "--print-config").stdout.count(f"seed: {good[0]}\n") == 1
    seeds = f"{good[0]},{bad_seed}"
    for args in ([], ["--sweep", "optimizer.lr=0.01,0.02"]):
        message = bad(tmp_path, "train", path, "--seeds", seeds, *args)
        assert message.startswith(f"error: seed {bad_seed}: data: text dataset: the test part")
        assert not (tmp_path / "runs").exists()  # nothing trained, nothing written
    group = run_of(invoke("train", path, "--seeds", f"{good[0]},{good[1]}", "-q"))
    assert json.loads((group / "group.json").read_text())["status"] == "completed"


def test_a_character_only_in_the_test_lines_proposes_another_split(tmp_path):
    (tmp_path / "n.txt").write_text("\n".join(NAMES + ["qiq"]) + "\n")
    seeds = {}
    for seed in range(8):  # lines drawn into the test part differ by seed
        try:
            make_dataset("text", {"path": str(tmp_path / "n.txt"), "block_size": 2}, seed=seed)
            seeds[seed] = ""
        except ValueError as e:
            seeds[seed] = str(e)
    refused = [m for m in seeds.values() if "'q'" in m]
    assert refused and any(m == "" for m in seeds.values())  # another seed is a real fix
    assert refused[0].startswith(f"text dataset: the test part (2 lines) of {tmp_path / 'n.txt'} "
                                 "holds the character 'q' (2 times), which is not in")
    assert refused[0].endswith("the seed drew the one line holding it into the test part: set "
                               "another seed or a smaller data.test_fraction (now 0.1), or "
                               "remove that line")


def test_token_ids_into_a_layer_that_wants_floats(tmp_path):
    path = text_config(tmp_path)
    config = __import__("yaml").safe_load(path.read_text())
    config["model"] = config["model"][1:]  # flatten, linear... without the one-hot
    path.write_text(__import__("yaml").safe_dump(config))
    message = bad(tmp_path, "train", path)
    assert message.startswith("error: model[1]: linear takes float features, but the data "
                              "gives token ids (N, 3) int64; put an embedding first")


@pytest.mark.parametrize(("first", "named"), [
    ("relu", "model[0]: relu takes float features, but the data gives token ids (N, 3) int64"),
    ({"type": "residual", "body": ["identity"]},
     "model[0]: residual adds token ids (N, 3) int64 from model[0].body as numbers"),
])
def test_a_layer_computing_with_token_ids_is_refused_before_a_run_starts(tmp_path, first,
                                                                          named):
    """A relu (it keeps int64) or a residual (ids + ids) before the one-hot crashed at the
    first step, or fed it doubled ids; now a build error, and no run directory is made."""
    path = text_config(tmp_path)
    config = yaml.safe_load(path.read_text())
    config["model"] = [first, *config["model"]]
    path.write_text(yaml.safe_dump(config))
    assert bad(tmp_path, "train", path).startswith(f"error: {named}")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_language_model_needs_cross_entropy(tmp_path):
    message = bad(tmp_path, "train", text_config(tmp_path), "loss=mse")
    assert "cannot train a language model" in message and "cross_entropy" in message


@pytest.mark.parametrize(("layers", "named"), [
    ([{"type": "self_attention", "num_heads": 2, "causal": False}],
     ", e.g. model[1] (self_attention with causal: false)"),
    ([{"type": "gru", "hidden_size": 4, "bidirectional": True}, {"type": "linear",
                                                                 "out_features": 4}],
     ", e.g. model[1] (a bidirectional gru)"),
    (["flatten", {"type": "linear", "out_features": 16},
      {"type": "unflatten", "unflattened_size": [4, 4]}], ""),  # mixes positions: no option
])
def test_a_sequence_target_refuses_a_network_that_sees_later_tokens(tmp_path, layers, named):
    """With target: sequence position i is asked for token i + 1: a network whose output
    there reads later positions copies it (a loss near 0 that means nothing)."""
    config = yaml.safe_load(text_config(tmp_path, mode="stream", target="sequence",
                                        block_size=4).read_text())
    vocabulary = len(set(STORY))
    config["model"] = [{"type": "embedding", "embedding_dim": 4}, *layers,
                       {"type": "linear", "out_features": vocabulary}]
    path = write_config(tmp_path, config, name="seeing.yaml")
    message = bad(tmp_path, "train", path)
    assert message == ("error: model: with data.target: sequence the output at each position "
                       "must depend only on the tokens up to it, but this network's changes "
                       f"with later tokens{named}; make it causal, or use data.target: next")
    assert not (tmp_path / "runs").exists()
    causal = [{"type": "self_attention", "num_heads": 2, "causal": True}]  # the same, masked
    config["model"][1:-1] = causal
    assert invoke("train", write_config(tmp_path, config, name="causal.yaml"), "-q",
                  "train.epochs=1").exit_code == 0


# ---------------------------------------------------------------- training, evaluation, pictures


def test_a_text_run_end_to_end(tmp_path):
    run = run_of(invoke("train", text_config(tmp_path), "--quiet"))
    rows = metrics(run)
    assert list(rows[0])[:5] == ["epoch", "train_loss", "train_accuracy", "test_loss",
                                 "test_accuracy"]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert sorted(p.name for p in (run / "plots").iterdir()) == ["accuracy.png", "loss.png"]
    samples = (run / "samples.txt").read_text().splitlines()
    assert len(samples) == 10 and all(set(s) <= set("".join(NAMES)) for s in samples)
    assert meta(run)["task"] == "language_model"
    assert meta(run)["vocabulary"][0] == "\n"
    result = invoke("evaluate", run, "--json")
    assert result.exit_code == 0, result.output
    evaluation = json.loads(result.stdout)
    for split in ("train", "test"):
        assert evaluation[split]["loss"] == pytest.approx(float(rows[-1][f"{split}_loss"]))
        assert evaluation[split]["accuracy"] == pytest.approx(
            float(rows[-1][f"{split}_accuracy"]))
    (run / "plots" / "loss.png").unlink()
    assert invoke("plot", run).exit_code == 0 and (run / "plots" / "loss.png").exists()
    resumed = invoke("train", "--resume", run, "train.epochs=4", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert len(metrics(run)) == 4


def test_a_split_too_big_to_copy_is_shuffled_batch_by_batch_to_the_same_weights(tmp_path,
                                                                              monkeypatch):
    """A stream text's windows with target next are views, block_size times the text when
    copied: above train.EPOCH_GATHER_BYTES each batch is gathered on its own, and training
    is bit for bit the same as with the epoch's one copy."""
    from minidl_cli import train

    path = text_config(tmp_path, mode="stream", block_size=8)
    whole = run_of(invoke("train", path, "--quiet"))
    gathered = []

    def counting(x, targets, order, size):
        gathered.append(len(x))
        yield from batch_by_batch(x, targets, order, size)

    batch_by_batch = train.batch_by_batch
    monkeypatch.setattr(train, "EPOCH_GATHER_BYTES", 0)
    monkeypatch.setattr(train, "batch_by_batch", counting)
    batched = run_of(invoke("train", path, "--quiet"))
    assert len(gathered) == 3  # one a epoch
    drop = [{k: v for k, v in row.items() if k != "elapsed_s"} for row in metrics(whole)]
    assert drop == [{k: v for k, v in row.items() if k != "elapsed_s"}
                    for row in metrics(batched)]
    weights = [torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
               for run in (whole, batched)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_loss_is_nats_per_token_and_accuracy_per_position(tmp_path):
    """The loss is torch's mean cross-entropy over every predicted token; with reduction
    sum it is divided by the tokens, not the rows."""
    from minidl_cli import nn
    from minidl_cli.config import load_config
    from minidl_cli.train import Trainer

    trainer = Trainer(load_config(text_config(tmp_path, mode="stream", target="sequence")))
    test = trainer.splits["test"]
    loss, outputs = trainer.evaluate("test")
    assert outputs.shape == (*test.y.shape, len(trainer.dataset.vocabulary))
    assert loss == pytest.approx(F.cross_entropy(outputs.transpose(1, 2), test.y).item())
    accuracy = trainer.task.metrics(outputs, test.y)["accuracy"]
    assert accuracy == pytest.approx((outputs.argmax(-1) == test.y).double().mean().item())
    trainer.loss_fn = nn.CrossEntropyLoss(reduction="sum")
    assert trainer.evaluate("test")[0] == pytest.approx(loss)


def test_seed_group_summary_of_a_language_model(tmp_path):
    result = invoke("train", text_config(tmp_path, train__epochs=1), "--quiet", "--seeds", "0-1")
    group = run_of(result)
    with open(group / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    assert {"train_loss", "test_loss", "train_accuracy", "test_accuracy"} <= set(rows[0])
    assert "test_error" not in rows[0]


# ---------------------------------------------------------------- sampling


class Scripted:
    """A stand-in language model: always the same logits, and the contexts it was given."""

    def __init__(self, logits):
        self.logits, self.seen = torch.tensor(logits, dtype=torch.float64), []

    def parameters(self):
        return []

    def __call__(self, x):
        self.seen.append(x.clone())
        return self.logits.expand(len(x), -1)


def lines_task(block_size=3):
    return LanguageModel(["\n", "a", "b", "c"], {"mode": "lines", "boundary": "\n"},
                         block_size, "next")


def test_sampling_feeds_the_last_block_size_tokens_and_stops_at_the_boundary():
    model = Scripted([0.0, 0.0, 0.0, 50.0])  # always "c"
    texts = generate(model, lines_task(), num=2, max_tokens=4, prompt="ab", seed=0)
    assert texts == ["abcccc", "abcccc"]  # no boundary drawn: max_tokens ends the item
    assert model.seen[0].tolist() == [[0, 1, 2]] * 2  # "\n" + "ab": boundary padding
    assert model.seen[2].tolist() == [[2, 3, 3]] * 2  # "bcc": the last three tokens
    ends = Scripted([50.0, 0.0, 0.0, 0.0])  # the boundary token at once
    assert generate(ends, lines_task(), num=3, prompt="b", seed=0) == ["b"] * 3
    assert len(ends.seen) == 1  # every item ended: no more steps


def test_sampling_is_seeded_and_temperature_sharpens():
    flat = Scripted([0.0, 1.0, 1.0, 1.2])
    first, again = (generate(flat, lines_task(), num=5, max_tokens=20, seed=3)
                    for _ in range(2))
    assert first == again and len(set(first)) > 1
    cold = generate(flat, lines_task(), num=5, max_tokens=20, seed=3, temperature=0.01)
    assert cold == ["c" * 20] * 5  # the most likely token, every time
    # logits / T beyond float64 (inf − inf in the softmax): still the most likely token
    frozen = generate(flat, lines_task(), num=5, max_tokens=20, seed=3, temperature=1e-320)
    assert frozen == ["c" * 20] * 5
    tied = Scripted([0.0, 1.2, 1.0, 1.2])  # two likeliest: each drawn, nothing else
    assert set("".join(generate(tied, lines_task(), num=5, max_tokens=20, seed=3,
                                temperature=1e-320))) == {"a", "c"}


def test_a_character_outside_the_vocabulary_says_how_it_may_be_written_inside():
    with pytest.raises(ValueError, match=r"the character 'B' .*\(4 characters\); the "
                                         r"vocabulary has 'b': the run was trained on text in "
                                         r"that case$"):
        contexts(lines_task(), ["aB"])
    accents = LanguageModel(["\n", "e", "é"], {"mode": "lines", "boundary": "\n"}, 3, "next")
    with pytest.raises(ValueError, match=r"it is a combining mark \(COMBINING ACUTE ACCENT\) "
                                         r"of a decomposed accent: compose the text \(Unicode "
                                         r"NFC"):
        contexts(accents, ["e\u0301"])  # é decomposed: e + U+0301
    assert contexts(accents, ["\u00e9"]).tolist() == [[0, 0, 2]]  # composed: in it
    with pytest.raises(ValueError, match=r"\(4 characters\)$"):  # no hint to give
        contexts(lines_task(), ["aX"])


def test_a_prompt_that_is_not_text_is_a_type_error():
    with pytest.raises(TypeError, match="sample: the prompt must be a str .*, got int"):
        generate(Scripted([0.0, 1.0, 1.0, 1.2]), lines_task(), prompt=5, seed=0)


@pytest.mark.parametrize("prompt", ["a\nb", "a\r\nb", "a\rb", "ann\r"])
def test_a_lines_prompt_holding_a_line_end_is_refused(prompt):
    """Any line end a text file's lines may end with ("\\n", "\\r\\n", "\\r") ends an item."""
    with pytest.raises(ValueError, match=r"the prompt .* holds a line end"):
        generate(Scripted([0.0, 1.0, 1.0, 1.2]), lines_task(), num=2, prompt=prompt, seed=0)


@pytest.mark.parametrize("seed", [True, -1, 2**63, 1.5, "3"])
def test_a_sample_seed_outside_a_configs_seeds_is_refused(seed):
    with pytest.raises(ValueError, match=r"sample: the seed must be an integer from 0 to "
                                         r"2\*\*63 - 1"):
        generate(Scripted([0.0, 1.0, 1.0, 1.2]), lines_task(), num=1, prompt="a", seed=seed)


def test_a_prompt_outside_the_vocabulary_is_named():
    with pytest.raises(ValueError, match=r"the character 'X' \(1 time\).*'\\nabc' "
                                         r"\(4 characters\)"):
        contexts(lines_task(), ["aXb"])


def test_sample_command_and_python_sample(tmp_path):
    run = run_of(invoke("train", text_config(tmp_path), "--quiet"))
    (tmp_path / "text.txt").unlink()  # everything comes from the checkpoint
    result = invoke("sample", run, "--num", "4", "--prompt", "em", "--seed", "1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and all(line.startswith("em") for line in lines)
    assert lines == minidl_cli.load(run).sample(num=4, prompt="em", seed=1)
    assert invoke("sample", run, "--num", "4", "--prompt", "em", "--seed", "1").stdout \
        == result.stdout
    message = bad(tmp_path, "sample", run, "--prompt", "eM")
    vocabulary = "".join(meta(run)["vocabulary"])
    assert minidl_cli.load(run).vocabulary == meta(run)["vocabulary"]
    assert f"the character 'M' (1 time), which is not in the vocabulary {vocabulary!r} " \
           f"({len(vocabulary)} characters)" in message
    predictions = minidl_cli.load(run).predict(["emm", "sal"])
    assert predictions.shape == (2,) and set(predictions) <= set(meta(run)["vocabulary"])


def test_sample_from_a_stream_run_prints_max_tokens(tmp_path):
    run = run_of(invoke("train", text_config(tmp_path, mode="stream", target="sequence",
                                             block_size=8), "--quiet"))
    assert len((run / "samples.txt").read_text()) == 500 + 1
    result = invoke("sample", run, "--max-tokens", "30", "--prompt", "the ", "--seed", "0")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("the ") and len(result.stdout) == 4 + 30 + 1


def test_stream_samples_are_told_apart_by_a_line_of_dashes(tmp_path):
    story = STORY.replace(". ", ".\n")  # texts with line breaks of their own
    run = run_of(invoke("train", text_config(tmp_path, text=story, mode="stream",
                                             target="sequence", block_size=8), "--quiet"))
    result = invoke("sample", run, "--num", "3", "--max-tokens", "40", "--seed", "0")
    assert result.exit_code == 0, result.output
    texts = minidl_cli.load(run).sample(num=3, max_tokens=40, seed=0)
    assert result.stdout == "\n---------------\n".join(texts) + "\n"
    assert any("\n" in text for text in texts)  # a bare line end could not tell them apart
    one = invoke("sample", run, "--max-tokens", "40", "--seed", "0").stdout
    assert one == minidl_cli.load(run).sample(max_tokens=40, seed=0)[0] + "\n"


def test_sample_names_a_seed_out_of_range_and_a_prompt_not_utf8(tmp_path):
    import importlib

    from minidl_cli.config import SEED_LIMIT

    sample = importlib.import_module("minidl_cli.cli.sample")  # the module, not the command
    assert sample.SEED_LIMIT == SEED_LIMIT  # the same seeds as a config's
    run = run_of(invoke("train", text_config(tmp_path), "--quiet"))
    for seed in (SEED_LIMIT, -1):
        result = invoke("sample", run, "--seed", seed)
        assert result.exit_code == 2 and "'--seed'" in result.output
        assert f"{seed} is not in the range 0<=x<={SEED_LIMIT - 1}" in result.output
    assert invoke("sample", run, "--seed", SEED_LIMIT - 1, "--num", "1").exit_code == 0
    message = bad(tmp_path, "sample", run, "--prompt", b"a\xff".decode("utf-8",
                                                                     "surrogateescape"))
    assert message == ("error: Invalid value for '--prompt': is not UTF-8 text (byte 0xff at "
                       "offset 1); give the prompt in UTF-8")


def test_sample_refuses_a_run_that_is_not_a_language_model(tmp_path):
    from helpers import train_tiny

    run = train_tiny(tmp_path)
    assert "only a language model" in bad(tmp_path, "sample", run)


def test_predict_command_reads_one_context_per_line(tmp_path):
    run = run_of(invoke("train", text_config(tmp_path), "--quiet"))
    (tmp_path / "contexts.txt").write_text("emm\nsal\n")
    result = invoke("predict", run, tmp_path / "contexts.txt")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(result.stdout.splitlines()))
    assert len(rows) == 2 and all(r["prediction"] in meta(run)["vocabulary"] for r in rows)
    # one row per line, blank lines (the empty context: a name's start) included, in order
    (tmp_path / "contexts.txt").write_text("emm\nal\n\nlenaa")
    result = invoke("predict", run, tmp_path / "contexts.txt")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))  # a predicted boundary is \n
    expected = minidl_cli.load(run).predict(["emm", "al", "", "lenaa"])
    assert [r["prediction"] for r in rows] == [c.replace("\n", "\\n") for c in expected]
    assert len(expected) == 4 and len(result.stdout.splitlines()) == 1 + 4  # a row a line
    (tmp_path / "contexts.txt").write_text("emm\nal\n\nlenaa\n")  # the last newline: no line
    assert invoke("predict", run, tmp_path / "contexts.txt").stdout == result.stdout

    # a character outside the vocabulary: the error names the file's line (blank lines count)
    (tmp_path / "contexts.txt").write_text("emm\n\nsaM\n")
    message = bad(tmp_path, "predict", run, tmp_path / "contexts.txt")
    assert message.startswith(f"error: {tmp_path / 'contexts.txt'} line 3: the text 'saM' "
                              "holds the character 'M'"), message


def test_a_line_of_spaces_is_a_text_of_spaces_to_predict(tmp_path):
    text = "\n".join([*NAMES, "anna maria", "eva lena"]) + "\n"
    run = run_of(invoke("train", text_config(tmp_path, text=text), "--quiet"))
    assert " " in meta(run)["vocabulary"]
    contexts_file = tmp_path / "contexts.txt"
    contexts_file.write_text("   \n")  # a file of nothing but spaces: one context
    result = invoke("predict", run, contexts_file)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["prediction"] for r in rows] == list(minidl_cli.load(run).predict(["   "]))
    contexts_file.write_text("\t\n")  # whitespace outside the vocabulary: named as others
    assert "line 1: the text '\\t' holds the character '\\t' (1 time), which is not in the " \
           "vocabulary" in bad(tmp_path, "predict", run, contexts_file)
    contexts_file.write_text("")
    assert bad(tmp_path, "predict", run, contexts_file).startswith(
        f"error: predict: {contexts_file} holds no text (0 bytes)")


def test_predict_on_token_ids_names_the_shape_they_need(tmp_path):
    predictor = minidl_cli.load(run_of(invoke("train", text_config(tmp_path), "--quiet")))
    ids = torch.tensor([[0, 1, 2]])
    assert list(predictor.predict(ids)) == list(predictor.predict(
        ["".join(predictor.vocabulary[i] for i in (1, 2))]))  # "\n" pads: the same context
    for wrong, got in ((ids[:, :2], "int64 of shape (1, 2)"),
                       (ids.double(), "float64 of shape (1, 3)")):
        with pytest.raises(ValueError, match=re.escape(
                f"token ids are an int64 tensor of shape (n, 3) (n contexts of the run's "
                f"block_size); got {got}")):
            predictor.predict(wrong)
    size = len(predictor.vocabulary)
    with pytest.raises(ValueError, match=rf"token id {size} is outside the vocabulary's ids "
                                         rf"0\.\.{size - 1}"):
        predictor.predict(torch.tensor([[0, 1, size]]))
    with pytest.raises(ValueError, match=r"or token ids \(an int64 tensor \(n, 3\)\); got a "
                                         r"list holding int"):
        predictor.predict(["ab", 3])


def test_predicting_no_text_gives_no_prediction(tmp_path):
    """As for a table's zero rows: an empty list in, empty predictions out, whatever the
    layers (attention cannot reshape a batch of 0 windows)."""
    config = yaml.safe_load(text_config(tmp_path, mode="stream", target="sequence",
                                        block_size=4).read_text())
    config["model"] = [{"type": "embedding", "embedding_dim": 4},
                       {"type": "self_attention", "num_heads": 2, "causal": True},
                       {"type": "linear", "out_features": len(set(STORY))}]
    run = run_of(invoke("train", write_config(tmp_path, config, name="attention.yaml"), "-q",
                        "train.epochs=1"))
    predictor = minidl_cli.load(run)
    assert predictor.predict([]).shape == (0,)
    assert predictor.predict_proba([]).shape == (0, len(set(STORY)))
    assert predictor.predict_columns([]) == {"prediction": []}


def test_predict_writes_a_character_that_does_not_print_as_its_escape():
    """One prediction, one CSV line: the boundary token (the line end) is written \\n."""
    task = LanguageModel(["\n", "a", "\t", " ", "é"], {"mode": "lines", "boundary": "\n"},
                         3, "next")
    outputs = torch.eye(5, dtype=torch.float64)  # row i predicts token i
    assert task.prediction_columns(outputs) == {"prediction": ["\\n", "a", "\\t", " ", "é"]}
    assert list(task.predictions(outputs)) == ["\n", "a", "\t", " ", "é"]  # Python: as is


def test_a_text_run_loss_is_labelled_nats_per_token(tmp_path, monkeypatch):
    from minidl_cli import plots
    from minidl_cli.plots import curves

    run = run_of(invoke("train", text_config(tmp_path), "--quiet"))
    assert plots.run_loss_name(run) == "cross_entropy, nats per token"  # overlays' label
    labels = []
    monkeypatch.setattr(curves, "plot_curves",
                        lambda metrics, quantity, path, loss_name=None: labels.append(
                            (quantity, loss_name)) or path)
    assert invoke("plot", run).exit_code == 0
    assert labels == [("loss", "cross_entropy, nats per token"), ("accuracy", None)]
    assert curves.axis_label("loss", labels[0][1]) == "loss (cross_entropy, nats per token)"


def test_a_missing_epoch_checkpoint_and_a_finished_resume_say_what_to_pass(tmp_path):
    run = run_of(invoke("train", text_config(tmp_path), "--quiet"))  # 3 epochs, none kept
    message = bad(tmp_path, "sample", run, "--checkpoint", "1")
    assert message.endswith("a run keeps an epoch's checkpoint only every "
                            "train.checkpoint_every epochs (0, the default: none), and this one "
                            "keeps none; pass one of them, last or best")
    kept = run_of(invoke("train", text_config(tmp_path), "--quiet",
                         "train.checkpoint_every=2", "train.epochs=4"))
    assert "this one keeps epochs 2, 4;" in bad(tmp_path, "sample", kept, "--checkpoint", "3")
    assert invoke("sample", kept, "--checkpoint", "2", "--num", "1").exit_code == 0
    message = bad(tmp_path, "train", "--resume", run, "train.epochs=2")
    assert message.endswith(f"{run} has already trained 3 epochs, and train.epochs is 2: "
                            "nothing to resume; pass train.epochs=N with N > 3 to train longer")


def test_predict_help_tells_of_text_runs():
    text = " ".join(invoke("predict", "--help").stdout.split())
    assert "for a text run, a text file of one context per line" in text
    assert "the most likely next character after each line" in text


def test_list_shows_the_text_data_set():
    text = invoke("list", "dataset").stdout
    assert "\n  text " in text
    for option in ("block_size", "mode", "target", "test_fraction", "corpus", "path"):
        assert option in text[text.index("\n  text "):]


def test_vocabulary_travels_in_the_checkpoint(tmp_path):
    run = run_of(invoke("train", text_config(tmp_path), "--quiet"))
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["task"]["vocabulary"] == meta(run)["vocabulary"]
    assert Path(run / "config.yaml").exists()


def test_evaluate_on_another_text_cuts_it_as_the_run_does(tmp_path):
    """All of the training text, evaluated as new data, is the train and test examples
    together: its loss is their token-weighted mean."""
    run = run_of(invoke("train", text_config(tmp_path), "--quiet"))
    result = invoke("evaluate", run, "--json")
    splits = json.loads(result.stdout)
    from minidl_cli.config import load_config
    from minidl_cli.train import Trainer

    trainer = Trainer(load_config(run / "config.yaml"))
    counts = {s: trainer.splits[s].y.numel() for s in ("train", "test")}
    expected = sum(splits[s]["loss"] * counts[s] for s in counts) / sum(counts.values())
    other = invoke("evaluate", run, "--data", tmp_path / "text.txt", "--json")
    assert other.exit_code == 0, other.output
    assert json.loads(other.stdout)["file"]["loss"] == pytest.approx(expected, rel=1e-5)
    (tmp_path / "odd.txt").write_text("emma\nQuinn\n")
    assert "the character 'Q'" in bad(tmp_path, "evaluate", run, "--data", tmp_path / "odd.txt")


def test_evaluate_on_a_text_shorter_than_one_window_of_a_stream_run(tmp_path):
    run = run_of(invoke("train", text_config(tmp_path, mode="stream", target="sequence",
                                             block_size=8), "--quiet"))
    for target, stride in (("sequence", 8), ("next", 1)):  # no window: no example
        x, y = windows(torch.arange(7), 8, stride, target)
        assert x.shape == (0, 8) and y.shape[0] == 0
    (tmp_path / "short.txt").write_text("the cat")  # 7 characters: a window needs 9
    message = bad(tmp_path, "evaluate", run, "--data", tmp_path / "short.txt")
    assert message == (f"error: evaluate: {tmp_path / 'short.txt'} has no example: a window "
                       "needs block_size + 1 = 9 characters")


def test_a_text_gone_or_changed_since_training_says_which_and_what_still_works(tmp_path):
    run = run_of(invoke("train", text_config(tmp_path), "--quiet"))
    text = tmp_path / "text.txt"
    content = text.read_text()
    text.unlink()
    gone = bad(tmp_path, "evaluate", run)
    assert gone.startswith(f"error: {text} is gone since {run} was trained on it, so its "
                           "train/test split cannot be rebuilt; sample from it with: minidl "
                           f"sample {run}, or evaluate it on a text with: minidl evaluate "
                           f"{run} --data FILE"), gone
    text.write_text(content.upper())
    changed = bad(tmp_path, "evaluate", run)
    assert f"{text} has changed since {run} was trained on it (its SHA-256 is not " in changed
    text.write_text(content)  # what the message offers works
    assert invoke("evaluate", run, "--data", text).exit_code == 0


def test_names_mlp_config_trains_samples_and_gradchecks_at_tiny_size(tmp_path):
    """configs/names-mlp.yaml (embedding -> flatten -> linear -> batch norm -> tanh -> linear)
    on a tiny file of the same 27-token vocabulary, one epoch."""
    import yaml

    letters = "abcdefghijklmnopqrstuvwxyz"
    lines = [(letters * 2)[k % 26:k % 26 + 4 + k % 5] for k in range(0, 120, 3)]
    (tmp_path / "names.txt").write_text("\n".join(lines) + "\n")
    config = yaml.safe_load((Path(__file__).parent.parent / "configs" / "names-mlp.yaml")
                            .read_text())
    config["data"] = {**config["data"], "corpus": None, "path": "names.txt"}
    config["train"] = {**config["train"], "epochs": 2}
    path = write_config(tmp_path, config, name="names.yaml")
    run = run_of(invoke("train", path, "--quiet"))
    assert len((run / "samples.txt").read_text().splitlines()) == 10
    assert yaml.safe_load((run / "config.yaml").read_text())["model"][0]["num_embeddings"] == 27
    assert invoke("gradcheck", path).exit_code == 0
    result = invoke("sample", run, "--num", "3", "--seed", "0", "--prompt", "ab")
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 3
