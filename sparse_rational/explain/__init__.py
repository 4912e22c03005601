"""Reading a trained model (see docs/DESIGN.md, 'Best paths for explanations').

=============  ======================================================================
``paths``      best (max-times) / worst (min-times) path of each WFSA, with backpointers,
               ending at the document's end or (pooled readouts) at any token
``table``      the paper's Table 1 over the training documents (duplicates merged, counted);
               one document explained (pooled readouts: the spans its scores are made of)
``report``     one self-contained HTML file (jinja2 template in ``templates/``)
``cli``        the ``explain`` subcommand (``add_parser``, ``run``)
=============  ======================================================================

Names are imported lazily, so that ``import sparse_rational.explain.cli`` (the command
line's parser) does not import torch.
"""

from __future__ import annotations

from ..lazy import lazy_names

_EXPORTS = {
    "NOT_READ": "paths",
    "WFSAPath": "paths",
    "decode_paths": "paths",
    "max_min_scores": "paths",
    "path_score": "paths",
    "PathDecoder": "paths",
    "Document": "table",
    "PatternSummary": "table",
    "DocExplanation": "table",
    "SpanContribution": "table",
    "phrase_cells": "table",
    "encode_documents": "table",
    "score_documents": "table",
    "summarize_patterns": "table",
    "format_table": "table",
    "explain_documents": "table",
    "format_explanation": "table",
    "render_report": "report",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_names(__name__, _EXPORTS, globals())
