"""The `${VAR}` and `${VAR:default}` reference syntax, defined once.

Resolution (`botreg.resolve`), store settings, confinement, portability and
redaction all read references with these patterns, so they agree on what one
is. A default stops at the next `${`: with `[^}]*` a value of nested
`${A:${A:...` was rescanned to its end from every `${`, quadratic in the daemon
(20 KB took 0.7 s, a 5 MiB file hours).
"""

from __future__ import annotations

import re

__all__ = ["PLAIN_REF", "REF"]

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_DEFAULT = r"(?:[^}$]|\$(?!\{))*"

# group 1: "$" when escaped (`$${VAR}` stands for the text `${VAR}`), 2: name, 3: default
REF = re.compile(rf"\$(\$?)\{{({_NAME})(?::({_DEFAULT}))?\}}")
# group 1: name, 2: default (where an escape needs no special case)
PLAIN_REF = re.compile(rf"\$\{{({_NAME})(?::({_DEFAULT}))?\}}")
