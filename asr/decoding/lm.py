"""N-gram language model over tokens (words or characters): Kneser-Ney estimates, ARPA files in and out.

The model is held as an ARPA back-off table (log10 probabilities of the listed n-grams, log10 back-off weights
of their contexts), so a model estimated here and one made elsewhere (KenLM's lmplz, SRILM) are read and
scored alike. No TensorFlow here.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from asr.errors import UserError

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
# What ARPA files write for "impossible" (the probability of predicting <s>).
LOG10_ZERO = -99.0
LN10 = math.log(10.0)


class LanguageModelError(UserError):
    """An ARPA file that cannot be read; the message names the file, the line and the fix."""


@dataclass
class NgramLM:
    """A back-off n-gram model over tokens: p(w | h) = p*(h w) if listed, else bow(h) p(w | h without its first)."""

    order: int
    logp: dict[tuple[str, ...], float] = field(default_factory=dict)  # log10 p of each listed n-gram
    backoff: dict[tuple[str, ...], float] = field(default_factory=dict)  # log10 back-off weight of a context

    @property
    def vocabulary(self) -> set[str]:
        """The words the model lists (without <s>, </s> and <unk>)."""
        return {g[0] for g in self.logp if len(g) == 1} - {BOS, EOS, UNK}

    def log_prob(self, context: tuple[str, ...], word: str) -> float:
        """Natural-log probability of `word` after `context` (the preceding words, <s> first at a sentence
        start; only the last order - 1 count). Words the model does not list are scored as <unk>."""
        if (word,) not in self.logp:
            word = UNK
        context = context[-(self.order - 1) :] if self.order > 1 else ()
        total = 0.0
        while True:
            found = self.logp.get((*context, word))
            if found is not None:
                return (total + found) * LN10
            if not context:  # <unk> missing from a foreign model: impossible
                return LOG10_ZERO * LN10
            total += self.backoff.get(context, 0.0)
            context = context[1:]

    @classmethod
    def estimate(cls, texts: Iterable[str], order: int = 3) -> NgramLM:
        """Interpolated Kneser-Ney estimates from sentences of space-separated words (Chen & Goodman 1998), one
        discount per order from its counts of counts: D = n1 / (n1 + 2 n2). Unseen words share the unigram
        interpolation mass as <unk>."""
        if order < 1:
            raise ValueError(f"the n-gram order must be >= 1, got {order}")
        raw: list[Counter] = [Counter() for _ in range(order + 1)]  # raw[n][ngram]: occurrences
        for text in texts:
            words = [BOS, *text.split(), EOS]
            for n in range(1, order + 1):
                for i in range(len(words) - n + 1):
                    raw[n][tuple(words[i : i + n])] += 1
        if not raw[1]:
            raise ValueError("no text to estimate a language model from")
        # Kneser-Ney counts: the highest order and n-grams starting with <s> keep their counts; the others count
        # the distinct words seen before them (every suffix of a listed n-gram is then listed one order down).
        counts: list[Counter] = [Counter() for _ in range(order + 1)]
        counts[order] = Counter({g: c for g, c in raw[order].items() if g != (BOS,)})
        for n in range(order - 1, 0, -1):
            counts[n] = Counter({g: c for g, c in raw[n].items() if g[0] == BOS and n > 1})
            for gram in raw[n + 1]:
                counts[n][gram[1:]] += 1
        model = cls(order)
        vocabulary_size = len(counts[1]) + 1  # the listed words and </s>, plus <unk>
        lower: dict[tuple[str, ...], float] = {}  # the interpolated probabilities of the order below
        for n in range(1, order + 1):
            discount = _discount(counts[n])
            totals: Counter = Counter()
            types: Counter = Counter()
            for gram, c in counts[n].items():
                totals[gram[:-1]] += c
                types[gram[:-1]] += 1
            weights = {h: discount * types[h] / totals[h] for h in totals}  # the mass left to the order below
            probs = {
                gram: (c - discount) / totals[gram[:-1]]
                + weights[gram[:-1]] * (1.0 / vocabulary_size if n == 1 else lower[gram[1:]])
                for gram, c in counts[n].items()
            }
            if n == 1:
                probs[(UNK,)] = weights[()] / vocabulary_size
            else:
                model.backoff.update({h: math.log10(w) for h, w in weights.items()})
            model.logp.update({g: math.log10(p) for g, p in probs.items()})
            lower = probs
        model.logp[(BOS,)] = LOG10_ZERO
        return model

    def write_arpa(self, path: Path) -> None:
        """Write the model as an ARPA text file (the format KenLM and SRILM read)."""
        by_order: list[list[tuple[str, ...]]] = [[] for _ in range(self.order + 1)]
        for gram in self.logp:
            by_order[len(gram)].append(gram)
        lines = ["", "\\data\\"]
        lines += [f"ngram {n}={len(by_order[n])}" for n in range(1, self.order + 1)]
        for n in range(1, self.order + 1):
            lines += ["", f"\\{n}-grams:"]
            for gram in sorted(by_order[n]):
                line = f"{self.logp[gram]:.6f}\t{' '.join(gram)}"
                if n < self.order and gram in self.backoff:
                    line += f"\t{self.backoff[gram]:.6f}"
                lines.append(line)
        lines += ["", "\\end\\", ""]
        path.write_text("\n".join(lines), encoding="utf-8")

    @classmethod
    def read_arpa(cls, path: Path) -> NgramLM:
        """Read an ARPA text file; LanguageModelError names the file and line of what is wrong."""
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise LanguageModelError(f"{path}: cannot read the language model ({e}); pass an ARPA text file") from e
        model, section, declared = cls(0), 0, {}
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line == "\\data\\":
                continue
            if line == "\\end\\":
                break
            if line.startswith("ngram ") and section == 0:
                n, _, size = line[6:].partition("=")
                declared[int(n)] = int(size)
                continue
            if line.startswith("\\") and line.endswith("-grams:"):
                section = int(line[1:].split("-")[0])
                model.order = max(model.order, section)
                continue
            parts = line.split()
            if section == 0 or len(parts) < section + 1:
                raise LanguageModelError(f"{path}:{number}: not an ARPA n-gram line: {line[:60]!r}; pass an ARPA file")
            try:
                gram = tuple(parts[1 : section + 1])
                model.logp[gram] = float(parts[0])
                if len(parts) > section + 1:
                    model.backoff[gram] = float(parts[section + 1])
            except ValueError:
                raise LanguageModelError(f"{path}:{number}: not a number in {line[:60]!r}; pass an ARPA file") from None
        if model.order == 0 or not model.logp:
            raise LanguageModelError(f"{path}: no n-grams found; pass an ARPA file (\\data\\, \\1-grams: ...)")
        for n, size in declared.items():
            found = sum(1 for g in model.logp if len(g) == n)
            if found != size:
                raise LanguageModelError(f"{path}: the header declares {size} {n}-grams, the file lists {found}")
        return model


def _discount(counts: Counter) -> float:
    """Absolute discount of one order from its counts of counts, D = n1 / (n1 + 2 n2), kept within (0, 1)."""
    n1 = sum(1 for c in counts.values() if c == 1)
    n2 = sum(1 for c in counts.values() if c == 2)
    if n1 == 0 or n2 == 0:
        return 0.5
    return min(max(n1 / (n1 + 2 * n2), 0.1), 0.9)
