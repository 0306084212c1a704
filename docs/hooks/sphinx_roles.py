"""MkDocs hook: show the Sphinx roles of jvae's docstrings as plain code.

The docstrings cite other objects as ``:func:`name```; mkdocstrings renders them as Markdown,
where the role stays as literal text (":func:" before the code). This drops the role and
keeps the code; a leading ``~`` keeps only the last component, as Sphinx shows it
(``:class:`~jvae.training.TrainState``` becomes ``TrainState``).
"""

import re

_ROLE = re.compile(r":(?:func|class|meth|attr|data|mod|exc|obj|const):<code>(~)?([^<]*)</code>")


def _code(match: re.Match) -> str:
    text = match.group(2).rsplit(".", 1)[-1] if match.group(1) else match.group(2)
    return f"<code>{text}</code>"


def on_page_content(html: str, **kwargs) -> str:
    return _ROLE.sub(_code, html)
