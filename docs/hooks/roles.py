"""mkdocs hook: the docstrings' Sphinx roles (:class:`~dmft_jax.Problem`, :func:`...`) shown
as plain code in the rendered API reference (mkdocstrings does not read Sphinx roles)."""
import re

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|obj|exc):<code>~?([^<]+)</code>")


def on_page_content(html, **kwargs):
    return _ROLE.sub(lambda m: "<code>" + (m.group(1).rsplit(".", 1)[-1] if "~" in m.group(0) else m.group(1))
                     + "</code>", html)
