"""Grammars that make a server's sampler produce well-formed answers by construction
(llama.cpp GBNF, sent as the request's `grammar`): a few lines of reasoning, then edits in
the prompt's format, so a small model cannot break a fence or a marker (and a corrected
line stays a few lines).

Code lines may hold single and double backticks (docstrings), never a fence. The function
and whole-file grammars end after one file's block: a small model otherwise keeps repeating
the block until max_tokens.
"""

from __future__ import annotations

_COMMON = r"""
prose ::= (pline "\n"){0,12}
pline ::= [^`<>=\n] [^`\n]*
path ::= [A-Za-z0-9_./-]{0,200} "." [A-Za-z]{1,8} "\n"
cline ::= ([^`\n] | "`" [^`\n] | "``" [^`\n])* "\n"
"""

_FENCED = r"""
root ::= prose block
block ::= path "```python\n" cline+ "```\n"
""" + _COMMON

_SEARCH_REPLACE = r"""
root ::= prose block (("\n")? block){0,3}
block ::= path "```python\n" "<<<<<<< SEARCH\n" sline* "=======\n" sline* ">>>>>>> REPLACE\n" "```\n"
sline ::= ([^`<=>\n] ([^`\n])*)? "\n"
""" + _COMMON

# A corrected line: a sentence or two, then one short fence (agent/edits/lines.py).
_LINE = r"""
root ::= (pline "\n"){0,3} "```python\n" cline{1,6} "```\n"
""" + _COMMON

GRAMMARS = {"function": _FENCED, "whole_file": _FENCED, "search_replace": _SEARCH_REPLACE,
            "line": _LINE}


def grammar_for(edit_format: str) -> str | None:
    """The GBNF grammar for answers in `edit_format`, or None where there is none."""
    text = GRAMMARS.get(edit_format)
    return text.strip() + "\n" if text else None
