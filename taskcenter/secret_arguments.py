"""Secret arguments: masked wherever they are stored or shown, sealed for re-runs.

A task declares them with ``launchable_task(..., secret=("password",))``. The
worker receives the real value; the ``Run`` row, the message's ``argsrepr`` /
``kwargsrepr`` (which django-celery-results stores, and events, Flower and
worker logs show), pages and the audit trail get ``MASK`` instead.

So that a re-run can send the real value again without showing it, the real
values are kept *sealed* in ``Run.secrets``: encrypted with a key derived from
``SECRET_KEY`` and authenticated. The construction uses only the standard
library and Django: a keystream of HMAC-SHA256 blocks over a random 16-byte
nonce and a counter (HMAC as a pseudo-random function in counter mode), XORed
with the JSON of the values, then signed with ``django.core.signing``
(HMAC-SHA256, encrypt-then-MAC). Rotating ``SECRET_KEY`` (with the old key in
``SECRET_KEY_FALLBACKS``) keeps sealed values readable; without the old key a
re-run asks for the secret again.
"""

import base64
import hashlib
import hmac
import inspect
import json
import os

from celery.app.amqp import AMQP
from django.conf import settings
from django.core import signing

#: What a secret argument's value is replaced with outside the worker.
MASK = "********"
_SALT = "taskcenter.secret_arguments"
_NONCE_BYTES = 16
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class SecretUnavailable(Exception):
    """A masked secret argument has no sealed real value to restore."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(name)


def _slots(entry, args: list, kwargs: dict, leading: int):
    """``(container, index or key, parameter name)`` of each secret argument given."""
    positional = [p.name for p in entry.signature.parameters.values() if p.kind in _POSITIONAL]
    for index in range(len(args)):
        at = index + leading
        if at < len(positional) and positional[at] in entry.secret:
            yield "args", index, positional[at]
    for key in kwargs:
        if key in entry.secret:
            yield "kwargs", key, key


def mask(entry, args: list, kwargs: dict, *, leading: int = 0) -> tuple[list, dict, dict]:
    """Return ``(masked args, masked kwargs, {name: real value})`` for a catalogue entry.

    ``leading`` is how many positional arguments Celery prepends at run time
    (the previous result in a chain), so positions line up with the signature.
    """
    if entry is None or not entry.secret or not isinstance(args, list) or not isinstance(kwargs, dict):
        return args, kwargs, {}
    masked_args, masked_kwargs, real = list(args), dict(kwargs), {}
    for container, where, name in _slots(entry, args, kwargs, leading):
        target = masked_args if container == "args" else masked_kwargs
        real[name] = target[where]
        target[where] = MASK
    return masked_args, masked_kwargs, real


def restore(entry, args: list, kwargs: dict, sealed: str, *, leading: int = 0) -> tuple[list, dict]:
    """Put the real value back wherever a secret argument still holds ``MASK``.

    A value the operator changed is kept. Raises ``SecretUnavailable`` when a
    masked secret has no readable sealed value (re-enter it).
    """
    return fill_masked(entry, args, kwargs, lambda: unseal(sealed), leading=leading)


def fill_masked(entry, args: list, kwargs: dict, real_values, *, leading: int = 0) -> tuple[list, dict]:
    """Replace each secret argument still holding ``MASK`` with its real value.

    ``real_values`` is a callable returning ``{name: real value}``, called only when a
    mask is found. Raises ``SecretUnavailable`` for a masked secret without a value.
    """
    if entry is None or not entry.secret or not isinstance(args, list) or not isinstance(kwargs, dict):
        return args, kwargs
    real = None
    args, kwargs = list(args), dict(kwargs)
    for container, where, name in _slots(entry, args, kwargs, leading):
        target = args if container == "args" else kwargs
        if target[where] != MASK:
            continue
        if real is None:
            real = real_values()
        if name not in real:
            raise SecretUnavailable(name)
        target[where] = real[name]
    return args, kwargs


class MaskingAMQP(AMQP):
    """Celery's task-message factory, masking secret arguments in every message it makes.

    Every task message this process creates (``delay``, ``apply_async``, ``send_task``
    by name, beat, canvas steps a worker sends on) is built by ``as_task_v2``. Its
    ``argsrepr``/``kwargsrepr`` are what django-celery-results stores, what the
    task-sent and task-received events (Flower, the monitor) carry and what worker logs
    show; for a catalogued task with secret arguments they are set here from the masked
    arguments, whatever the caller passed. The body keeps the real values for the worker.
    Installed as the app's ``amqp`` class in ``config/celery.py``.
    """

    def as_task_v2(self, task_id, name, args=None, kwargs=None, *rest, argsrepr=None, kwargsrepr=None, **options):
        from taskcenter import catalogue

        entry = catalogue.get_entry(name)
        if (
            entry is not None
            and entry.secret
            and isinstance(args or [], list | tuple)
            and isinstance(kwargs or {}, dict)
        ):
            masked_args, masked_kwargs, _ = mask(entry, list(args or ()), dict(kwargs or {}))
            argsrepr, kwargsrepr = repr(masked_args), repr(masked_kwargs)
        return super().as_task_v2(
            task_id, name, args, kwargs, *rest, argsrepr=argsrepr, kwargsrepr=kwargsrepr, **options
        )


# --- Sealing ----------------------------------------------------------------------


def _keys(secret_key) -> tuple[bytes, str]:
    key = secret_key.encode() if isinstance(secret_key, str) else secret_key
    stream_key = hmac.new(key, f"{_SALT}.stream".encode(), hashlib.sha256).digest()
    sign_key = hmac.new(key, f"{_SALT}.sign".encode(), hashlib.sha256).hexdigest()
    return stream_key, sign_key


def _xor(stream_key: bytes, nonce: bytes, data: bytes) -> bytes:
    out = bytearray()
    for counter in range(0, (len(data) + 31) // 32):
        block = hmac.new(stream_key, nonce + counter.to_bytes(8, "big"), hashlib.sha256).digest()
        chunk = data[counter * 32 : counter * 32 + 32]
        out.extend(a ^ b for a, b in zip(chunk, block, strict=False))
    return bytes(out)


def seal(values: dict) -> str:
    """Encrypt and sign ``values`` (JSON) with a key derived from ``SECRET_KEY``; "" for none."""
    if not values:
        return ""
    stream_key, sign_key = _keys(settings.SECRET_KEY)
    nonce = os.urandom(_NONCE_BYTES)
    cipher = _xor(stream_key, nonce, json.dumps(values, separators=(",", ":")).encode())
    payload = base64.urlsafe_b64encode(nonce + cipher).decode()
    return signing.Signer(key=sign_key, salt=_SALT, algorithm="sha256").sign(payload)


def unseal(token: str) -> dict:
    """The values sealed by ``seal``; {} when there are none or no key can read them."""
    if not token:
        return {}
    for secret_key in [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]:
        stream_key, sign_key = _keys(secret_key)
        try:
            payload = signing.Signer(key=sign_key, salt=_SALT, algorithm="sha256").unsign(token)
        except signing.BadSignature:
            continue
        raw = base64.urlsafe_b64decode(payload.encode())
        try:
            return json.loads(_xor(stream_key, raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]))
        except ValueError:
            return {}
    return {}
