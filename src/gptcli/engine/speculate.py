"""N-gram (prompt-lookup) speculation: draft the tokens that followed the answer's last
few tokens where they occurred before, in the prompt or the answer so far.

The scheduler evaluates a request's next token and its drafts in one batch, with
logits at each, and samples the target at each position in turn with the request's
own sampler chain, keeping drafts while they equal the sample. Only the tokens kept
reach the chain (its penalties and grammar accept them as they are sampled), and one
random number is drawn per token kept, as without drafts: the same seed gives the
same text, with or without speculation, as long as the batched logits equal the
one-token ones.

Whether drafts pay depends on what a drafted token costs in a batch, next to a step
without one. On a GPU an extra token should cost next to nothing (not yet measured, so
``auto`` does not count on it); on a CPU a small model is bound by arithmetic, and a
batch of n tokens costs about n steps (SmolLM2-135M here, one thread: 2 tokens 2.3x, 5
tokens 5.1x, 17 tokens 12x one token). ``auto`` takes the cost for the device
(``GPU_COST`` or ``CPU_COST``), estimates how often this answer's drafts come true
(including drafts it only imagined, at no cost) and drafts the length that maximises the
expected tokens per unit of time, or nothing.
``ngram`` drafts wherever the text before has a match, the length from the
acceptance rate as if drafts cost ``NGRAM_COST``. Neither times anything, so the
drafts, like the text, depend only on the text: a seed gives the same answer in
every run.

A draft model (``--draft``, engine/draft.py) is the other kind of :class:`Drafter`:
a small model with the target's vocabulary proposes its greedy continuation. Naming
one is asking for it, so ``auto`` drafts with it wherever one is given (``draft``
insists on it), the length adapting to the acceptance rate as ``ngram``'s does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gptcli.config import SpeculateMode
from gptcli.errors import UsageError

NGRAM_MIN = 2  # the shortest run of tokens looked up (shorter: too many false matches)
NGRAM_MAX = 4
DRAFT_MAX = 16
PRIOR_ACCEPTANCE = 0.5
# What a drafted token adds to a decode step, next to a step without drafts.
CPU_COST = 1.0
# Measured on this CPU only. On a GPU a drafted token should cost far less, but until that
# is measured there, ``auto`` assumes the CPU's cost: it drafts nowhere it is not known to
# pay (``--speculate ngram`` does).
GPU_COST = CPU_COST
NGRAM_COST = 0.25
ACCEPTANCE_WEIGHT = 0.15  # of the latest drafted position in the acceptance estimate
PAYS = 1.05  # drafting must promise this many times the tokens per second


def best_length(acceptance: float, cost: float, limit: int) -> int:
    """The draft length with the most expected tokens per unit of time (0: do not draft).

    With each drafted token right with probability ``acceptance`` (given the ones
    before it were), k drafts give (1 - a^(k+1)) / (1 - a) tokens for 1 + cost * k.
    """
    a = min(acceptance, 0.999)
    best, best_gain = 0, PAYS
    expected, power = 1.0, 1.0
    for k in range(1, limit + 1):
        power *= a
        expected += power
        gain = expected / (1.0 + cost * k)
        if gain > best_gain:
            best, best_gain = k, gain
    return best


class Drafter(Protocol):
    """One answer's source of draft tokens, told every token the answer keeps."""

    drafted: int
    accepted: int

    def push(self, token: int) -> None:
        """A token of the answer, sampled (a draft kept counts as sampled)."""

    def draft(self, limit: int, cost: float) -> list[int]:
        """The tokens to verify after the last one pushed, at most ``limit``."""
        ...

    def verified(self, drafted: int, accepted: int) -> None:
        """``accepted`` of ``drafted`` tokens were kept (they were pushed as sampled)."""


class DraftSource(Protocol):
    """A draft model's context beside a scheduler's: a drafter for the answer in a slot."""

    def drafter(self, seq: int, prompt: Sequence[int]) -> Drafter: ...

    def close(self) -> None: ...


def check_mode(mode: SpeculateMode, source: DraftSource | None) -> None:
    """Refuse ``--speculate draft`` where no draft model was loaded."""
    if mode == "draft" and source is None:
        raise UsageError("--speculate draft needs a draft model (--draft MODEL)")


def new_drafter(
    mode: SpeculateMode, prompt: list[int], cost: float, source: DraftSource | None, seq: int
) -> Drafter | None:
    """The drafter of an answer in sequence ``seq`` (None: it drafts nothing)."""
    check_mode(mode, source)
    if source is not None and mode in ("auto", "draft"):
        return source.drafter(seq, prompt)
    if drafts_at_all(mode, cost):
        return NgramDrafter(prompt, mode)
    return None


def drafts_at_all(mode: SpeculateMode, cost: float) -> bool:
    """Whether an answer in ``mode`` could ever draft where a drafted token costs ``cost``:
    ``auto`` where even drafts that always come true would not pay keeps no n-gram index."""
    if mode in ("off", "draft"):
        return False
    return mode == "ngram" or best_length(1.0, cost, DRAFT_MAX) > 0


class Acceptance:
    """How often an answer's drafts come true: the counts, and a running estimate."""

    def __init__(self) -> None:
        self.acceptance = PRIOR_ACCEPTANCE
        self.drafted = 0
        self.accepted = 0

    def _learn(self, hit: bool) -> None:
        self.acceptance += ACCEPTANCE_WEIGHT * (float(hit) - self.acceptance)

    def verified(self, drafted: int, accepted: int) -> None:
        """``accepted`` of ``drafted`` tokens were kept (they were pushed as sampled)."""
        self.drafted += drafted
        self.accepted += accepted
        for _ in range(accepted):
            self._learn(True)
        if accepted < drafted:
            self._learn(False)


class NgramDrafter(Acceptance):
    """One answer's drafts: the continuation of the latest earlier occurrence of its last
    ``NGRAM_MAX`` down to ``NGRAM_MIN`` tokens, and how often such drafts come true."""

    def __init__(self, prompt: list[int], mode: SpeculateMode) -> None:
        super().__init__()
        self._tokens: list[int] = []
        self._index: dict[tuple[int, ...], int] = {}  # n tokens -> where what followed starts
        self._mode = mode
        self._shadow: list[int] = []  # a draft not sent, checked against the tokens to come
        for token in prompt:
            self._append(token)

    def _append(self, token: int) -> None:
        tokens, index = self._tokens, self._index
        end = len(tokens)
        tokens.append(token)
        for n in range(NGRAM_MIN, min(NGRAM_MAX, end) + 1):
            index[tuple(tokens[end - n : end])] = end

    def push(self, token: int) -> None:
        """A token of the answer, sampled (a draft kept counts as sampled)."""
        shadow = self._shadow
        if shadow:
            hit = shadow[0] == token
            self._learn(hit)
            if hit:
                del shadow[0]
            else:
                shadow.clear()
        self._append(token)

    def _lookup(self, limit: int) -> list[int]:
        tokens = self._tokens
        for n in range(NGRAM_MAX, NGRAM_MIN - 1, -1):
            start = self._index.get(tuple(tokens[-n:]))
            if start is not None:
                found = tokens[start : start + limit]
                # an image's stand-ins (negative) are never drafted: they are no tokens
                return next((found[:i] for i, t in enumerate(found) if t < 0), found)
        return []

    def draft(self, limit: int, cost: float) -> list[int]:
        """The tokens to verify after the last one pushed, at most ``limit``."""
        if limit <= 0:
            return []
        proposal = self._lookup(min(limit, DRAFT_MAX))
        if not proposal:
            return []
        if self._mode == "auto":
            length = best_length(self.acceptance, cost, len(proposal))
        else:  # wherever there is a match, as long as the acceptance rate says, whatever it costs
            length = max(1, best_length(self.acceptance, NGRAM_COST, len(proposal)))
        if length == 0:
            if not self._shadow:
                self._shadow = proposal  # learn how good drafts are here, for free
            return []
        self._shadow = []
        return proposal[:length]
