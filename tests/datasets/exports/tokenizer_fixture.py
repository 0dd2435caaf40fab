"""A byte-level BPE tokenizer trained here from seeded pseudo-English; nothing is downloaded.

GPT-2's layout (ByteLevel pre-tokenizer and decoder, `<|endoftext|>` as the only special
token), so every string encodes without an unknown token. The same arguments give the same
tokenizer.json byte for byte; the tests and bench/export.py both train theirs here.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

EOS = "<|endoftext|>"

_ONSETS = (
    "b c d f g h j k l m n p r s t v w y z br ch cl cr dr fl fr gl gr pl pr sc sh sk sl sp st "
    "str th tr wh"
).split() + [""] * 6
_NUCLEI = "a e i o u a e i o ai ea ee ie oo ou y".split()
_CODAS = "n r s t l m nd ng nt rs st ck ght ll ss th".split() + [""] * 12
_SUFFIXES = "s ed ing ly tion er ment ness able al".split() + [""] * 20
# The commonest English words, in order of frequency, then domain words; the rest is invented.
_COMMON = (
    "the of and to a in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when if so "
    "no its more can said who will about other into than some could them only time these two "
    "may first then do any like my now over such our man me even most made after also did many "
    "before must through back years where much your way well down should because each just "
    "those people how too little state good very make world still own see men work long get "
    "here between both life being under never day same another know while last might us great "
    "old year off come since against go came right used take three"
).split()
# A sprinkle of non-ASCII words, so byte-level merges of multi-byte characters happen.
_FOREIGN = "café naïve façade Zürich São Kraków Ελλάδα Москва 東京 日本語 北京 한국 ☕ 🙂".split()


def lexicon(size: int, seed: int) -> list[str]:
    """`size` distinct words, commonest first: real function words, then pseudo-English."""
    rng = random.Random(seed)
    words = list(dict.fromkeys(_COMMON))
    seen = set(words)
    while len(words) < size:
        syllables = rng.choice((1, 1, 2, 2, 2, 3, 3, 4))
        word = "".join(
            rng.choice(_ONSETS) + rng.choice(_NUCLEI) + rng.choice(_CODAS) for _ in range(syllables)
        )
        word += rng.choice(_SUFFIXES)
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


class Writer:
    """Pseudo-English documents: Zipf-distributed words in sentences and paragraphs.

    `seed` picks the documents; the language (`lexicon_seed`) stays the same, so a tokenizer
    trained on one seed's documents knows the words of another's.
    """

    def __init__(self, seed: int = 0, words: int = 40_000, lexicon_seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self._words = lexicon(words, lexicon_seed)
        weights = [1.0 / (rank + 2.7) for rank in range(len(self._words))]
        total = 0.0
        self._cumulative = []
        for weight in weights:
            total += weight
            self._cumulative.append(total)

    def _token(self) -> str:
        rng = self._rng
        roll = rng.random()
        if roll < 0.01:
            return rng.choice(
                (str(rng.randrange(1800, 2030)), f"{rng.randrange(1, 10**6):,}", "3.14")
            )
        if roll < 0.012:
            return rng.choice(_FOREIGN)
        return rng.choices(self._words, cum_weights=self._cumulative)[0]

    def document(self, words: int) -> str:
        """One document of about `words` words."""
        rng = self._rng
        paragraphs: list[str] = []
        sentences: list[str] = []
        produced = 0
        while produced < words:
            length = min(words - produced, rng.randint(6, 24))
            chosen = [self._token() for _ in range(length)]
            for index in range(1, length - 1):
                if rng.random() < 0.06:
                    chosen[index] += ","
            if rng.random() < 0.08:
                chosen[0] = f'"{chosen[0]}'
                chosen[-1] += '"'
            sentence = " ".join(chosen)
            sentences.append(sentence[:1].upper() + sentence[1:] + rng.choice(".....?!;"))
            produced += length
            if len(sentences) >= rng.randint(3, 7):
                paragraphs.append(" ".join(sentences))
                sentences = []
        if sentences:
            paragraphs.append(" ".join(sentences))
        return "\n\n".join(paragraphs)

    def documents(self, count: int, low: int = 500, high: int = 1500) -> list[str]:
        """`count` documents of `low` to `high` words each."""
        return [self.document(self._rng.randint(low, high)) for _ in range(count)]

    def corpus(self, megabytes: float, low: int = 500, high: int = 1500) -> list[str]:
        """Documents of `low` to `high` words until they hold `megabytes` MB of UTF-8."""
        texts: list[str] = []
        size = 0
        while size < megabytes * 1e6:
            texts.append(self.document(self._rng.randint(low, high)))
            size += len(texts[-1].encode())
        return texts


def train_tokenizer(
    directory: Path,
    *,
    vocab_size: int = 1000,
    texts: Iterable[str] | None = None,
    seed: int = 0,
) -> Path:
    """Train a byte-level BPE and save `directory/tokenizer.json`; returns that path.

    Without `texts` it trains on 200 seeded documents, about a second's work.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = texts if texts is not None else Writer(seed).documents(200, 100, 400)
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tokenizer.json"
    tokenizer.save(str(path))
    return path
