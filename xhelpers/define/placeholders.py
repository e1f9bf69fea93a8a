"""The parameter names in ``str.format`` templates: experiment names and command lines.

Apart from grids and commands because both read templates; each imports this, not
the other (commands build on grids' names, grids build commands).
"""

from __future__ import annotations

import string

from xhelpers.errors import ExperimentDefinitionError

__all__ = ["template_fields"]


def template_fields(template: str, what: str = "template") -> list[str]:
    """The parameter names a ``str.format`` template uses (the part before ``.`` or ``[``)."""
    if not isinstance(template, str):
        raise ExperimentDefinitionError(f"{what} must be a string, not {template!r}")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ExperimentDefinitionError(f"{what} {template!r}: {exc}") from None
    fields: list[str] = []
    for _literal, field, spec, _conversion in parsed:
        if field is None:
            continue
        root = field.split(".", 1)[0].split("[", 1)[0]
        if not root or root.isdigit():
            raise ExperimentDefinitionError(
                f"{what} {template!r}: positional field {{{field}}}; name the parameter, "
                "e.g. {lr} (write {{ and }} for literal braces)"
            )
        if root not in fields:
            fields.append(root)
        if spec and "{" in spec:
            fields += [f for f in template_fields(spec, what) if f not in fields]
    return fields
