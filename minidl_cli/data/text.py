"""The `text` data set: the characters of a UTF-8 text as int64 token ids, for language models.

Two ways to cut a text into examples, each a context x of `block_size` ids and what follows it:

- `lines`, as Karpathy's makemore: every non-blank line is one item (blank lines and lines
  of spaces are not items; lines may have any length), framed by a boundary token, id 0,
  which the vocabulary shows as the line end "\\n". An item of n characters gives n + 1
  examples: the context before its first character is block_size boundary tokens, each
  position predicts the next character, and the last one predicts the boundary token that
  ends the item. The test set is a seeded random `test_fraction` of the lines (makemore
  shuffles, then splits).
- `stream`, as nanoGPT: the text is one sequence and an example is a window of it. The test
  set is the END of the text (its last `test_fraction` of characters), so that no test
  window overlaps a training one.

`target: next`: y is the one token after the context, (N,); `sequence`: y is the context
shifted by one, (N, T), a prediction at every position (nanoGPT's targets).

Memory of `stream` mode: the windows are strided views into one tensor of the text's ids
(Tensor.unfold: no copy), never N×T copies of it. With `target: sequence` they do not
overlap (stride block_size), with `target: next` there is one per character (stride 1);
either way an epoch predicts every character once. The trainer's shuffle gathers an
epoch's windows into one tensor: N×T ids, the text's size for `sequence` (tiny
Shakespeare: 8 MB) but block_size times it for `next` (tiny Shakespeare with block 64:
512 MB); beyond train.EPOCH_GATHER_BYTES it gathers batch by batch instead (the same
batches). A validation split (train.val_fraction) copies the training windows once. Train
long texts with `target: sequence`.

The vocabulary is the sorted characters of the training text (after the boundary token in
`lines` mode); a test character outside it is an error. Runs keep it in their checkpoint.
"""

from __future__ import annotations

import gzip
import math
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

import torch
from torch import Tensor

from minidl_cli.data.base import Dataset, file_sha256
from minidl_cli.nn.losses import IGNORE_INDEX
from minidl_cli.registry import Range, register

TEXTS = Path(__file__).parent / "texts"  # shipped corpora, with their provenance (README.md)
CORPORA = {"names": TEXTS / "names.txt.gz", "tinyshakespeare": TEXTS / "tinyshakespeare.txt.gz"}
BOUNDARY = "\n"  # the boundary token of `lines` mode: id 0, shown as the end of a line
WHERE = "text dataset"


@register("dataset", "text")
def text(
    block_size: Annotated[int, Range(ge=1)],
    path: Path | None = None,
    corpus: Literal["names", "tinyshakespeare"] | None = None,
    mode: Literal["lines", "stream"] = "lines",
    target: Literal["next", "sequence"] = "next",
    test_fraction: Annotated[float, Range(gt=0, lt=1)] = 0.1,
    *,
    generator: torch.Generator,
) -> Dataset:
    """The characters of a text as token ids, for a language model (lines or stream mode).

    The text is `path` (a UTF-8 text file, gzipped when it ends in .gz) or a `corpus`
    shipped with minidl (names, tinyshakespeare: see data/texts/); `mode`, `target` and
    the split as the module docstring says.

    Shape: x (N, block_size) int64 ids; y (N,) int64 for target next, (N, block_size) for
    target sequence. Raises FileNotFoundError for a missing file; ValueError, naming the
    file, for a file that is not UTF-8 or has no text, a block_size longer than the text,
    a split that leaves a part without examples, or a test character the training text
    never has.
    """
    if (path is None) == (corpus is None):
        raise ValueError(f"{WHERE}: give data.path (a UTF-8 text file) or data.corpus (names "
                         "or tinyshakespeare, shipped with minidl), exactly one of them")
    source = Path(path) if path is not None else CORPORA[corpus]
    content = read_text(source)
    try:
        if mode == "lines":
            train_ids, test_ids, vocabulary = _lines(content, source, test_fraction,
                                                     block_size, generator)
            start = None
        else:
            train_ids, test_ids, vocabulary = _stream(content, source, test_fraction,
                                                      block_size)
            start = "".join(vocabulary[i] for i in train_ids[:block_size].tolist())
        x_train, y_train = examples(train_ids, block_size, target, mode)
        x_test, y_test = examples(test_ids, block_size, target, mode)
    except MemoryError:
        raise ValueError(too_big(content, source, mode, block_size)) from None
    return Dataset(x_train, y_train, x_test, y_test, num_classes=len(vocabulary),
                   feature_names=[], task="language_model", vocabulary=vocabulary,
                   text={"mode": mode, "boundary": BOUNDARY if mode == "lines" else None,
                         "start": start},
                   data_files={} if corpus else {str(source.absolute()): file_sha256(source)})


# the options every other data set takes: a language model's inputs are token ids and its
# targets tokens, nothing to z-score (the config check refuses them; hints never offer them)
text.refused_options = ("standardize", "standardize_target")


def too_big(content: str, source: Path, mode: str, block_size: int) -> str:
    """Why cutting `content` ran out of memory, with the fix. Lines mode frames each line
    after block_size boundary tokens and keeps a window of block_size ids per predicted
    token: about (characters + lines) × block_size ids of 8 bytes."""
    lines = items(content)
    if mode == "lines":
        longest = max(map(len, lines), default=0)
        size = 8 * (len(content) + len(lines)) * block_size
        return (f"{WHERE}: data.block_size {block_size} cuts {source} in lines mode into "
                f"about {size / 1e9:.3g} GB of windows, more than memory holds; lower it (its "
                f"longest line has {longest} characters: a context beyond {longest + 1} "
                "holds only boundary tokens)")
    return (f"{WHERE}: {source} with data.block_size {block_size} does not fit in memory; "
            "lower block_size or use a shorter text")


def read_text(path: Path, blank: bool = False, where: str = WHERE) -> str:
    """The text of a UTF-8 file (gunzipped when its name ends in .gz), without a byte-order
    mark and with Windows ("\\r\\n") and old Mac ("\\r") line ends as "\\n".
    FileNotFoundError, or ValueError naming the file: not gzip, not UTF-8 (the first bad
    byte and its offset), no text at all (nothing, or only whitespace unless `blank`:
    predict's contexts, where a line of spaces is a text of spaces). `where` starts the
    messages."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{where}: {path} not found; data.path is relative to the "
                                "config file") from None
    except IsADirectoryError:
        raise ValueError(f"{where}: {path} is a folder; data.path names one text file") from None
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except EOFError:
            raise ValueError(f"{where}: {path} is a truncated gzip file (it ends before its "
                             "end-of-stream marker); copy or download it again") from None
        except zlib.error as e:
            raise ValueError(f"{where}: {path} is a corrupt gzip file ({e}); copy or download "
                             "it again") from None
        except OSError as e:
            raise ValueError(f"{where}: {path} ends in .gz but is not a gzip file ({e}); "
                             "gunzip it or rename it") from None
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: {path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at "
                         f"offset {e.start}); convert it, e.g. iconv -f latin1 -t utf-8 "
                         f"{path.name}") from None
    # line ends as Python's universal newlines (makemore's and nanoGPT's open()) read them
    content = content.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not (content if blank else content.strip()):
        raise ValueError(f"{where}: {path} holds no text ({len(raw)} bytes"
                         f"{', all whitespace' if raw else ''}); give a file with text in it")
    return content


def encode(content: str, vocabulary: list[str], what: str,
           advice: Callable[[str], str] | None = None) -> Tensor:
    """The id of each character of `content` in `vocabulary` (one character per entry).

    Shape: -> (len(content),) int64. Raises ValueError naming the first character that the
    vocabulary lacks, how often it occurs, and the vocabulary; `what` says whose text it is
    (the subject of "holds"), `advice(character)` how to fix it (appended after "; "; by
    default `spelling`'s hint, if any).
    """
    codes = _code_points(content)
    vocab = _code_points("".join(vocabulary))
    sorted_codes, order = vocab.sort()
    at = torch.searchsorted(sorted_codes, codes).clamp_(max=len(vocab) - 1)
    found = sorted_codes[at] == codes
    if not bool(found.all()):
        missing = chr(int(codes[~found][0]))
        count = int((codes == ord(missing)).sum())
        fix = advice(missing) if advice else spelling(missing, vocabulary)
        raise ValueError(f"{what} holds the character {missing!r} ({count} time"
                         f"{'s' * (count != 1)}), which is not in the vocabulary "
                         f"{show_vocabulary(vocabulary)}" + (f"; {fix}" if fix else ""))
    return order[at]


def spelling(character: str, vocabulary: list[str]) -> str:
    """How a character outside the vocabulary may be written inside it, or '': a combining
    mark (a decomposed accent, Unicode NFD: e + U+0301 for é) is to be composed (NFC); a
    letter whose other case the vocabulary holds is in that case there."""
    import unicodedata

    if unicodedata.combining(character):
        name = unicodedata.name(character, f"U+{ord(character):04X}")
        return (f"it is a combining mark ({name}) of a decomposed accent: compose the text "
                "(Unicode NFC, e.g. unicodedata.normalize('NFC', text)); a vocabulary holds "
                "each accented letter as one character")
    other = character.swapcase()
    if other != character and other in vocabulary:
        return f"the vocabulary has {other!r}: the run was trained on text in that case"
    return ""


def show_vocabulary(vocabulary: list[str]) -> str:
    """The vocabulary for a message: its characters as one Python string literal, and their
    number (`"\\nabc" (4 characters)`)."""
    return f"{''.join(vocabulary)!r} ({len(vocabulary)} characters)"


def examples(ids: Tensor, block_size: int, target: str, mode: str) -> tuple[Tensor, Tensor]:
    """The examples of a part's ids: a stream's windows, or (lines mode) the windows of the
    framed items (see `frame`) that predict a token of an item.

    Shape: ids (L,) -> x (N, T), y (N,) or (N, T).
    """
    if mode == "lines":
        x, y = windows(ids, block_size, 1, target)
        return _keep(x, y, ids, block_size)
    return windows(ids, block_size, 1 if target == "next" else block_size, target)


def items(content: str) -> list[str]:
    """A lines-mode text's items: its lines holding a character other than whitespace (a
    blank line, or one of spaces only, is no item, as a file of whitespace is no text)."""
    return [line for line in content.split("\n") if line.strip()]


def frame(lines: list[str], block_size: int) -> str:
    """Lines as lines mode cuts them: each after block_size boundary tokens, and block_size
    more at the end; every example is a window of it (`examples`)."""
    pad = BOUNDARY * block_size
    return pad + pad.join(lines) + pad


def text_examples(content: str, vocabulary: list[str], mode: str, block_size: int,
                  target: str, what: str) -> tuple[Tensor, Tensor]:
    """Every example of a whole text, cut as a run of this `mode`, `block_size` and `target`
    cuts its data, with the run's vocabulary (evaluating a run on another text).

    Shape: -> x (N, T), y (N,) or (N, T). Raises ValueError, naming `what`, for a character
    outside the vocabulary or a text without one example.
    """
    if mode == "lines":
        ids = encode(frame(items(content), block_size),
                     vocabulary, what)
    else:
        ids = encode(content, vocabulary, what)
    x, y = examples(ids, block_size, target, mode)
    if not len(x):
        raise ValueError(f"{what} has no example: a window needs block_size + 1 = "
                         f"{block_size + 1} characters")
    return x, y


def windows(ids: Tensor, block_size: int, stride: int, target: str) -> tuple[Tensor, Tensor]:
    """Every `stride`-th window of `block_size` ids that has a token after it, and its target:
    the next id (target next) or the window shifted by one (target sequence). Views of `ids`
    (Tensor.unfold), no copy.

    Shape: ids (L,) -> x (N, T), y (N,) or (N, T); N = (L − T − 1) // stride + 1, or 0.
    """
    n = (len(ids) - block_size - 1) // stride + 1
    if n <= 0:  # shorter than one window and its next token: no example
        x = ids.new_zeros(0, block_size)
        return x, (ids.new_zeros(0) if target == "next" else x)
    x = ids[:-1].unfold(0, block_size, stride)[:n]
    if target == "next":
        return x, ids[block_size::stride][:n]
    return x, ids[1:].unfold(0, block_size, stride)[:n]


def _code_points(content: str) -> Tensor:
    """Each character's Unicode code point. Shape: -> (len(content),) int64."""
    raw = bytearray(content.encode("utf-32-le"))
    if not raw:
        return torch.zeros(0, dtype=torch.int64)
    return torch.frombuffer(raw, dtype=torch.int32).long()


def _lines(content: str, source: Path, test_fraction: float, block_size: int,
           generator: torch.Generator) -> tuple[Tensor, Tensor, list[str]]:
    """(train ids, test ids, vocabulary) of `lines` mode: each part's lines framed (`frame`)."""
    lines = items(content)
    if len(lines) < 2:
        raise ValueError(f"{WHERE}: {source} has {len(lines)} non-blank line in lines mode; "
                         "it needs two or more (one item per line, some to train on, some to "
                         "test), or use data.mode: stream for one continuous text")
    n_test = max(1, round(test_fraction * len(lines)))
    if n_test >= len(lines):
        raise ValueError(f"{WHERE}: data.test_fraction {test_fraction} of the {len(lines)} lines "
                         f"of {source} leaves none to train on; lower it")
    order = torch.randperm(len(lines), generator=generator).tolist()
    test_lines = [lines[i] for i in order[:n_test]]
    train_lines = [lines[i] for i in order[n_test:]]
    vocabulary = [BOUNDARY, *sorted(set("".join(train_lines)))]
    what = f"{WHERE}: the test part ({n_test} line{'s' * (n_test != 1)}) of {source}"
    test = encode(frame(test_lines, block_size), vocabulary, what,
                  lambda c: _unseen_in_lines(c, lines, test_fraction))
    train = encode(frame(train_lines, block_size), vocabulary,
                   f"{WHERE}: the training lines of {source}")  # its own characters: no error
    return train, test, vocabulary


def _unseen_in_lines(character: str, lines: list[str], test_fraction: float) -> str:
    """Why a character of the test lines is not in the vocabulary, and the fixes."""
    holding = sum(character in line for line in lines)
    which = "the one line" if holding == 1 else f"all {holding} lines"
    return (f"the vocabulary is the training lines' characters, and the seed drew {which} "
            f"holding it into the test part: set another seed or a smaller data.test_fraction "
            f"(now {test_fraction}), or remove {'that line' if holding == 1 else 'them'}")


def _keep(x: Tensor, y: Tensor, ids: Tensor, block_size: int) -> tuple[Tensor, Tensor]:
    """The windows of framed lines (`frame`) whose next token belongs to an item:
    one of its characters, or the boundary token right after its last one (the item's end).

    Shape: x (M, T), y (M,) or (M, T) -> (N, T), (N,) or (N, T); copies.
    """
    following = ids[block_size:]  # the token after each window, window by window
    before = ids[block_size - 1:-1]  # the last token of each window
    n = len(x)
    keep = (following[:n] != 0) | (before[:n] != 0)
    x, y = x[keep], y[keep]
    if y.dim() == 2:  # target sequence: a boundary after a boundary is padding, no prediction
        y[(x == 0) & (y == 0)] = IGNORE_INDEX
    return x, y


def _stream(content: str, source: Path, test_fraction: float,
            block_size: int) -> tuple[Tensor, Tensor, list[str]]:
    """(train ids, test ids, vocabulary) of `stream` mode: the test part is the end of the
    text."""
    n_test = round(test_fraction * len(content))
    train, test = content[:len(content) - n_test], content[len(content) - n_test:]
    # a window is block_size + 1 characters, and both parts need one
    longest = min(len(train), len(test)) - 1
    if block_size > longest:
        whole = block_size + 1 > len(content)
        what = (f"needs windows of {block_size + 1} characters (the context and the "
                f"character after it), more than the whole text of {source} "
                f"({len(content)} characters)"
                if whole else
                f"needs windows of {block_size + 1} characters in both parts of {source} "
                f"({len(train)} training and {len(test)} test characters, data.test_fraction "
                f"{test_fraction})")
        fix = (f"set data.block_size to at most {longest}" if longest >= 1 else
               "use a longer text" if whole else "use a longer text or change data.test_fraction")
        raise ValueError(f"{WHERE}: data.block_size {block_size} {what}; {fix}")
    vocabulary = sorted(set(train))
    return (encode(train, vocabulary, f"{WHERE}: the training part of {source}"),
            encode(test, vocabulary, f"{WHERE}: the test part (its end) of {source}",
                   lambda c: _unseen_in_stream(c, content, len(test), block_size)),
            vocabulary)


def _unseen_in_stream(character: str, content: str, n_test: int, block_size: int) -> str:
    """Why a character of a stream's test part (the text's end) is not in the vocabulary,
    and the fixes: the largest data.test_fraction that leaves it in the training part, when
    that leaves the test part a window (block_size + 1 characters)."""
    first = content.index(character)  # in the test part: at or after len(content) - n_test
    after = len(content) - first - 1  # the most test characters that leave it for training
    where = (f"the vocabulary is the training part's characters, and the test part is the "
             f"text's end (its last {n_test} characters), where {character!r} first appears "
             f"at character {first + 1} of {len(content)}")
    if after == 0:
        return (f"{where}, the last: remove it from the end of the file (a final newline, "
                "say) or put text holding it earlier")
    fraction = math.floor(after / len(content) * 1000) / 1000
    lower = (f", or set data.test_fraction to at most {fraction}"
             if round(fraction * len(content)) > block_size else "")
    return f"{where}: put text holding it earlier in the file{lower}"
