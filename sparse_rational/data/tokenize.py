"""A small PTB-like tokenizer matching the conventions of the GloVe 6B vocabulary.

GloVe 6B was trained on Stanford-tokenized, lower-cased text, so the tokens it knows look
like: do n't, it 's, u.s., mr., 1,000, well-known, ..., --, and the PTB quotes `` and ''.
This tokenizer produces the same shapes from raw text (the Blitzer et al. Amazon reviews)
and leaves text that is already tokenized that way (FDU-MTL) unchanged; it is idempotent:
``tokenize(" ".join(tokenize(x))) == tokenize(x)``.
"""

from __future__ import annotations

import html
import re
import unicodedata

__all__ = ["tokenize"]

# Abbreviations that keep their period (as in the Stanford tokenizer and the GloVe vocabulary).
_ABBREVIATIONS = "mr|mrs|ms|dr|jr|sr|st|vs|etc|inc|ltd|co|corp|mt|prof|gen|jan|feb|aug|sept?|oct|nov|dec"

# Order matters: the first alternative that matches at a position wins. ``[^\W_]`` is a
# letter or digit (any script), ``[^\W\d_]`` a letter; ``(?![^\W_])`` = "at a word end".
_TOKEN_RE = re.compile(
    r"""
      https?://[^\s<>"']+                          # URLs
    | (?:[^\W_]+\.)+(?:com|org|net|edu|gov)(?![^\W_])  # amazon.com
    | (?:[^\W\d_]\.)+[^\W\d_](?![^\W_])\.?          # u.s.  e.g.  i.e  p.s.
    | (?:"""
    + _ABBREVIATIONS
    + r""")\.(?![^\W_])                             # mr.  etc.  dec.
    | [^\W_]+(?=n't(?![^\W_]))                      # "do" of "don't", "ca" of "can't"
    | n't(?![^\W_])                                 # the negation clitic
    | '(?:s|re|ve|ll|d|m|em|n|\d0s)(?![^\W_])        # 's 're 've 'll 'd 'm 'em 'n '90s
    | \d+(?:[.,:/]\d+)+                              # 1,000  3.5  10:30  1/2
    | [^\W_]+(?:/[^\W_]+)+(?![^\W_])                 # and/or  b/c  w/o
    | [^\W_]+(?:(?:-|'(?!(?:s|re|ve|ll|d|m)(?![^\W_])))[^\W_]+)*
                                                    # words, with internal hyphens and
                                                    # apostrophes (o'clock) but not clitics
    | \.{2,} | -{2,} | [!?]{2,} | \*{2,}              # ...  --  !!  ***
    | `` | ''                                       # PTB quotes
    | \S                                            # any other single character
    """,
    re.VERBOSE,
)

# Typographic quotes and apostrophes -> the ASCII ones GloVe saw.
_TRANSLATE = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u02bc": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u2013": "-",
        "\u2014": "--",
        "\u2026": "...",
        "\u00a0": " ",
        "\ufffd": " ",  # decoding debris in the Blitzer release (and in FDU-MTL dvd)
        **{chr(c): " " for c in range(0x20) if chr(c) not in "\t\n\r"},  # e.g. \x1a
    }
)


def tokenize(text: str) -> list[str]:
    """Lower-case, unescape HTML entities (``&amp;`` -> ``&``) and split into PTB-like tokens.

    Words, numbers and punctuation become separate tokens; clitics are split off
    (``"don't"`` -> ``["do", "n't"]``, ``"it's"`` -> ``["it", "'s"]``). Text that is already
    tokenized this way (space separated, as in FDU-MTL) comes back as ``text.split()``.
    """
    if "&" in text:
        text = html.unescape(text)
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    text = text.lower().translate(_TRANSLATE)
    # No token spans whitespace, so the regex can run chunk by chunk; a chunk of letters
    # and digits only is always one token (the common case, and much faster than findall).
    tokens: list[str] = []
    for chunk in text.split():
        if chunk.isalnum():
            tokens.append(chunk)
        else:
            tokens.extend(_TOKEN_RE.findall(chunk))
    return tokens
