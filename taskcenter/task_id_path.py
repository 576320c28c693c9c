"""How a run's task id is written as one URL path segment (pages and API).

Kept free of Django imports: ``config.settings`` reads it for the API schema.
"""

#: Path segments that name another page beside a run's own: ``runs/count/`` and ``runs/retry/``
#: (API), ``runs/retry/``, ``runs/saved/`` and ``runs/progress/`` (pages). A run whose task id is
#: one of them is linked to in the encoded form, or its link would open that page instead; a
#: test checks that every literal segment beside a task id is here.
RESERVED_SEGMENTS = frozenset({"count", "progress", "retry", "saved"})

#: The API schema's pattern of a task id in a path: one segment, none of the reserved ones.
PATH_PATTERN = r"^(?!(" + "|".join(sorted(RESERVED_SEGMENTS)) + r")$)[^/]+$"
