"""The paper's Table 1 and per-document explanations (see docs/DESIGN.md, 'Best paths for explanations').

For each WFSA, every training document is scored by its best single path (max-times) and
its worst (min-times), read where the model reads its scores: at the document's end for a
``"final"``-readout model (the paper's), and for a model that pools its states over the
document (``"mean"``, ``"max"``) at whichever token gives the best (worst) path: the best
*span* anywhere in the document. Every document's best and worst path is decoded; paths
that read as the same phrase (the same Table-1 cells) are merged, with the number of
documents whose best (worst) path they are; the K phrases with the highest best-path
score and the K with the lowest worst-path score are shown, one column per main-path
transition::

    column i = [self-loop tokens read in q_{i-1}] + the token of the transition q_{i-1} -> q_i

Self-loop tokens carry ``_SL`` (more than two are shown as ``..._SL``); ``</s>`` is the
end-of-document token. Self-loops read in ``q_0`` (weight 1, before the match) are not
part of the phrase; self-loops read in the last state after the last transition are shown
in a final ``after`` column. A path may end before the WFSA's last state (all states are
final); its later columns are empty.

Scoring and decoding are batched (padded batches with a mask, at most ``DECODE_TOKENS``
padded tokens per batch while the DP's history is kept); backpointers are followed for all
documents at once (:class:`~.paths.PathDecoder`).

One document (``--doc``, the HTML report): each WFSA contributes ``score_j * W[c, j]`` to
the logit of class ``c``. For a pooled model the score itself splits over the document:
``mean``: token ``t`` adds ``(1/L) sum_i c_ji(t)`` (``L`` tokens); ``max``: state ``q_i``
adds ``c_ji(t_i)`` at its argmax token ``t_i``. Each part is shown by the best path ending
there (the worst when the part is negative), and its share of class ``c``'s logit is
``W[c, j] * part``; the tokens whose paths are the same match (the same main-path
transitions) form one span, shown by the path ending at its first token. The parts of a
WFSA sum to its score.

Word vectors and contextual vectors: a :class:`Document` holds the tokens the model read
(one per position) and either ids into the model's embedding matrix or its own vectors.
A contextual encoder over word pieces gives pieces as ``tokens`` and its ``vectors``;
``words``/``word_of`` (piece -> word offsets) let the display merge pieces into words.

The code lives in three modules, re-exported here: :mod:`.documents` (documents, corpus
scores, decoding), :mod:`.phrases` (Table 1) and :mod:`.contributions` (one document).
"""

from __future__ import annotations

from .contributions import (  # noqa: F401
    DocExplanation,
    SpanContribution,
    WFSAContribution,
    _phrase_text,
    _pooled_spans,
    _transitions,
    explain_documents,
    format_explanation,
    positions_text,
    readout_text,
)
from .documents import (  # noqa: F401
    DECODE_TOKENS,
    DOC_MAX_LOOPS,
    DOC_SPANS,
    DOC_SPANS_AGAINST,
    MAX_CELL,
    SL,
    CorpusScores,
    Document,
    _batches,
    _chunks,
    _contextual_documents,
    _weights,
    batch_vectors,
    decode_documents,
    encode_documents,
    pooled,
    score_documents,
)
from .phrases import (  # noqa: F401
    PatternSummary,
    Phrase,
    _column_positions,
    _column_slices,
    _grid,
    _short,
    format_table,
    phrase_cells,
    self_loop_text,
    summarize_patterns,
)
