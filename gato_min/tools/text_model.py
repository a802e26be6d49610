"""The shipped SentencePiece model: trained on the project's own prose, retrained by one command.

The paper's text tokenizer has 32000 pieces (Sec. 2.1), far more than a CPU-sized model needs or
than this project's prose can fill. gato_min ships a 1024-piece model trained on the English
prose of its chapters (their markdown cells) and README.md. The corpus is committed beside the
model (`assets/text/corpus.txt`) so that the model is a pure function of a file in the repo:

    python -m gato_min train-text-model                  # retrain from the committed corpus
    python -m gato_min train-text-model --refresh-corpus # first re-collect the prose

Training is single-threaded and unshuffled, so the same corpus gives byte-identical model files
(a test checks that the shipped model is current). BPE with byte fallback: any UTF-8 text
encodes, with unseen characters spelled as bytes.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import sentencepiece as spm

from gato_min.files import atomic_write_bytes, atomic_write_text
from gato_min.tokenize import CORPUS_FILE, shipped_text_model

model_file = shipped_text_model  # where the model of a vocabulary size is shipped


def collect_prose(repo_root: str | Path) -> str:
    """The English prose of the chapters' markdown cells and README.md, one paragraph a line."""
    import jupytext  # a [notebooks] extra, needed only to re-collect the prose

    repo_root = Path(repo_root)
    blocks: list[str] = []
    readme = repo_root / "README.md"
    if readme.is_file():
        blocks.append(readme.read_text(encoding="utf-8"))
    for source in sorted((repo_root / "chapters").glob("[0-9][0-9]_*.py")):
        notebook = jupytext.read(source)
        blocks.extend(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    if not blocks:
        raise FileNotFoundError(f"no README.md or chapters/NN_*.py found under {repo_root}")
    paragraphs: list[str] = []
    for block in blocks:
        block = re.sub(r"```.*?```", " ", block, flags=re.S)  # code blocks are not prose
        block = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", block)  # links and images: keep the words
        block = re.sub(r"<[^>]+>", " ", block)  # html tags
        for paragraph in re.split(r"\n\s*\n", block):
            line = " ".join(paragraph.split())
            if line:
                paragraphs.append(line)
    return "\n".join(paragraphs) + "\n"


def train_text_model(
    corpus_file: str | Path = CORPUS_FILE, vocab_size: int = 1024, out_file: str | Path | None = None
) -> Path:
    """Train the BPE SentencePiece model on `corpus_file`; write it atomically; return its path."""
    corpus_file = Path(corpus_file)
    if not corpus_file.is_file():
        raise FileNotFoundError(f"text corpus {corpus_file} does not exist; run with --refresh-corpus")
    out_file = Path(out_file) if out_file is not None else model_file(vocab_size)
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        # sentences from an iterator, not a path: the model file records its input path otherwise,
        # and the same corpus in another checkout would give other bytes
        sentence_iterator=iter(corpus_file.read_text(encoding="utf-8").splitlines()),
        model_writer=buffer,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        num_threads=1,
        shuffle_input_sentence=False,
        split_digits=True,
        max_sentence_length=1 << 16,
        minloglevel=2,
        pad_id=-1,
        unk_id=0,
        bos_id=1,
        eos_id=2,
    )
    atomic_write_bytes(out_file, buffer.getvalue())
    return out_file


def refresh_corpus(repo_root: str | Path, corpus_file: str | Path = CORPUS_FILE) -> Path:
    """Re-collect the prose of `repo_root` into `corpus_file` (atomically)."""
    corpus_file = Path(corpus_file)
    atomic_write_text(corpus_file, collect_prose(repo_root))
    return corpus_file
