"""medvault: encrypted storage of patient records with a verifiable access log.

The Python binding of the Rust engine medvault. Every record belongs to a subject (a
patient); every top-level field is sealed with AES-256-GCM under the subject's own data
key; every call, reads included, is committed with an entry in a sealed, chained access
log naming who acted and why (`Access`).

Record values are dicts of JSON values. Numbers keep their exact text: a decimal comes
back as `decimal.Decimal` (``Decimal("1.50")`` stays ``1.50``), an integer as `int`.
Pass `Decimal` for values whose digits matter; a `float` is written with Python's
shortest round-trip repr.

Errors are subclasses of `MedvaultError`, one per error kind of the engine
(`MedvaultError.kind` holds the kind's stable name).
"""

from __future__ import annotations

import decimal
import json
import math
import os
from typing import (
    Any,
    Dict,
    List,
    Mapping,
    NamedTuple,
    NoReturn,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from . import _native

__all__ = [
    "Access",
    "AccessDeniedError",
    "AlreadyExistsError",
    "ClosedError",
    "ExcessiveWorkError",
    "IntegrityError",
    "InvalidInputError",
    "Kdf",
    "KeyInUseError",
    "LogTamperedError",
    "MedvaultError",
    "NotFoundError",
    "RecordKey",
    "StorageError",
    "SubjectErasedError",
    "UnknownKeyVersionError",
    "UnsupportedVersionError",
    "Vault",
    "WrongKeyError",
    "default_policy",
    "dumps",
    "loads",
]

__version__: str = _native.__version__


class Access(NamedTuple):
    """Who acts and why; recorded with every call in the access log.

    ``purpose`` is one of ``care``, ``emergency`` (break-the-glass: needs a non-empty
    ``reason``), ``administration``, ``billing``, ``research``, ``patient-request``,
    ``maintenance``, or its HL7 v3 PurposeOfUse code (``TREAT``, ``ETREAT``,
    ``HOPERAT``, ``HPAYMT``, ``HRESCH``, ``PATRQT``, ``HSYSADMIN``). ``actor`` is 1 to
    256 bytes; ``reason`` at most 1024 bytes.

    ``roles`` are the roles the application authenticated the actor in (at most 16
    names of 1 to 64 bytes, e.g. ``("care",)``). On a vault with an access policy
    (docs/POLICY.md) the policy decides on them: an ``Access`` without a role is refused
    there (`AccessDeniedError`, rule ``no-role``). On a vault without a policy they
    change nothing but are recorded in the access log. ``purpose_code`` is a custom
    PurposeOfUse code the policy declares (e.g. ``"PUBHLTH"``), refining ``purpose``;
    None for the purpose's own code.
    """

    actor: str
    purpose: str
    reason: Optional[str] = None
    roles: Sequence[str] = ()
    purpose_code: Optional[str] = None


class RecordKey(NamedTuple):
    """Names a record: the subject (patient) id, a collection, the record id."""

    subject: str
    collection: str
    record_id: str


class Kdf(NamedTuple):
    """Argon2id cost for a passphrase (RFC 9106, "Parameter Choice").

    The default is RFC 9106's second recommended option: 64 MiB, 3 passes, 4 lanes.
    """

    memory_kib: int = 64 * 1024
    iterations: int = 3
    lanes: int = 4

    @classmethod
    def insecure_for_tests(cls) -> "Kdf":
        """64 KiB, 1 pass, 1 lane: for tests and examples only, never a real vault."""
        return cls(64, 1, 1)


# ----- errors ---------------------------------------------------------------------------


class MedvaultError(Exception):
    """Base of every medvault error. ``kind`` is the engine's stable kind name; ``rule``
    the access-policy rule of a policy denial (`AccessDeniedError`), else None."""

    kind: str = "unknown"
    rule: Optional[str] = None

    def __init__(
        self, message: str, kind: Optional[str] = None, rule: Optional[str] = None
    ) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind
        self.rule = rule


class WrongKeyError(MedvaultError):
    """The passphrase or root key does not open this vault."""

    kind = "wrong_key"


class IntegrityError(MedvaultError):
    """Stored bytes failed an integrity check (tampering or corruption)."""

    kind = "integrity"


class LogTamperedError(IntegrityError):
    """`Vault.verify` found the access log tampered with."""

    kind = "log_tampered"


class NotFoundError(MedvaultError):
    """The record, subject, index or key does not exist (or was erased)."""

    kind = "not_found"


class AccessDeniedError(MedvaultError):
    """The access context does not allow the call (e.g. break-the-glass without a
    reason, or the vault's access policy). The attempt is logged. ``rule`` names the
    policy rule that refused (a rule of the policy such as ``billing-claims``, or a
    built-in one: ``no-role``, ``undeclared-purpose``, ``role-purpose``,
    ``deny-by-default``, ``field-not-granted``, ``capability``; docs/POLICY.md), None
    for a refusal that is not the policy's."""

    kind = "access_denied"


class InvalidInputError(MedvaultError, ValueError):
    """Malformed input: ids, a value that is not a dict, a purpose name, a key length."""

    kind = "invalid_input"


class StorageError(MedvaultError, OSError):
    """The storage failed (I/O, or the vault is open in another process)."""

    kind = "storage"


class UnknownKeyVersionError(MedvaultError):
    """A ciphertext names a data-key version the vault does not hold."""

    kind = "unknown_key_version"


class UnsupportedVersionError(MedvaultError):
    """A stored structure has a format version this build does not read."""

    kind = "unsupported_version"


class ExcessiveWorkError(MedvaultError):
    """Key-derivation parameters demand more work than the caps allow."""

    kind = "excessive_work"


class KeyInUseError(MedvaultError):
    """A data-key version still used by records cannot be retired."""

    kind = "key_in_use"


class AlreadyExistsError(MedvaultError):
    """A vault already exists where `Vault.create` was asked to make one."""

    kind = "already_exists"


class SubjectErasedError(MedvaultError):
    """The write would re-create a subject that was erased. The vault remembers erasures
    (by keyed pseudonym only) and refuses to bring an erased patient back by accident;
    the refusal is logged. If the patient has really returned, call
    `Vault.readmit_subject` (with a reason) first."""

    kind = "subject_erased"


class ClosedError(MedvaultError):
    """The vault was closed."""

    kind = "closed"


_BY_KIND: Dict[str, type] = {
    c.kind: c
    for c in (
        WrongKeyError,
        IntegrityError,
        LogTamperedError,
        NotFoundError,
        AccessDeniedError,
        InvalidInputError,
        StorageError,
        UnknownKeyVersionError,
        UnsupportedVersionError,
        ExcessiveWorkError,
        KeyInUseError,
        AlreadyExistsError,
        SubjectErasedError,
        ClosedError,
    )
}


def _reraise(e: Exception) -> NoReturn:
    """Re-raises a native error as the class of its kind (`MedvaultError` if unknown)."""
    kind, message, rule = e.args
    cls = _BY_KIND.get(kind, MedvaultError)
    raise cls(message, kind, rule) from None


def _call(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except _native.NativeError as e:
        _reraise(e)


# ----- exact JSON text ------------------------------------------------------------------


def dumps(value: Any) -> str:
    """JSON text of ``value`` with every number written exactly.

    ``Decimal`` is written with its own digits (``Decimal("1.50")`` -> ``1.50``), ``int``
    in full, ``float`` with its shortest round-trip repr. Dict keys must be strings.
    Raises `InvalidInputError` for NaN, infinities and values JSON cannot hold.
    """
    out: List[str] = []
    _encode(value, out)
    return "".join(out)


def _encode(v: Any, out: List[str]) -> None:
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, str):
        out.append(json.dumps(v, ensure_ascii=False))
    elif isinstance(v, int):
        out.append(int.__repr__(v))
    elif isinstance(v, decimal.Decimal):
        if not v.is_finite():
            raise InvalidInputError("JSON has no NaN or infinity", "invalid_input")
        out.append(str(v))
    elif isinstance(v, float):
        if not math.isfinite(v):
            raise InvalidInputError("JSON has no NaN or infinity", "invalid_input")
        out.append(float.__repr__(v))
    elif isinstance(v, Mapping):
        out.append("{")
        for i, (k, item) in enumerate(v.items()):
            if not isinstance(k, str):
                raise InvalidInputError("JSON object keys are strings", "invalid_input")
            if i:
                out.append(",")
            out.append(json.dumps(k, ensure_ascii=False))
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(v, (list, tuple)):
        out.append("[")
        for i, item in enumerate(v):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise InvalidInputError(
            f"a {type(v).__name__} cannot be written as JSON", "invalid_input"
        )


def loads(text: str) -> Any:
    """Parses JSON text with decimals as ``Decimal`` (exact) and integers as ``int``."""
    return json.loads(text, parse_float=decimal.Decimal)


# ----- the vault ------------------------------------------------------------------------

PathLike = Union[str, "os.PathLike[str]"]
KeyLike = Union[RecordKey, Tuple[str, str, str]]


_NativeCtx = Tuple[str, str, Optional[str], List[str], Optional[str]]


def _ctx(ctx: Any) -> _NativeCtx:
    if isinstance(ctx, tuple) and 2 <= len(ctx) <= 5:
        a = Access(*ctx)
        if isinstance(a.roles, str):
            # A bare string would be split into one-letter roles.
            raise InvalidInputError(
                "Access.roles is a sequence of role names, e.g. ('care',)", "invalid_input"
            )
        return (a.actor, a.purpose, a.reason, list(a.roles or ()), a.purpose_code)
    raise InvalidInputError(
        "the access context is an Access(actor, purpose, reason, roles, purpose_code)",
        "invalid_input",
    )


def default_policy() -> Dict[str, Any]:
    """The default clinic access policy (docs/POLICY.md "The default clinic policy") as
    a dict, to pass to `Vault.set_policy` as it is or edited."""
    result: Dict[str, Any] = loads(_native.default_policy())
    return result


def _key(key: Any) -> RecordKey:
    if isinstance(key, tuple) and len(key) == 3:
        return RecordKey(*key)
    raise InvalidInputError("a record key is RecordKey(subject, collection, record_id)")


def _kdf(kdf: Optional[Kdf]) -> Optional[Tuple[int, int, int]]:
    return None if kdf is None else (kdf.memory_kib, kdf.iterations, kdf.lanes)


def _listed(text: str) -> List[Tuple[RecordKey, Dict[str, Any]]]:
    return [
        (RecordKey(r["subject"], r["collection"], r["record_id"]), r["value"])
        for r in loads(text)
    ]


class Vault:
    """An open vault. Use it as a context manager (``with Vault.open(...) as v:``) or
    call `close`. Thread-safe: one vault may be shared by threads (the GIL is released
    while the engine works). One process holds a vault directory open at a time."""

    def __init__(self, native: Any) -> None:
        self._native = native

    @classmethod
    def create(
        cls,
        path: PathLike,
        *,
        passphrase: Optional[str] = None,
        key: Optional[bytes] = None,
        kdf: Optional[Kdf] = None,
        opener: Optional[Access] = None,
    ) -> "Vault":
        """Creates a vault in directory ``path`` under a passphrase (Argon2id, `Kdf`) or
        a raw 32-byte root key; ``opener`` is logged (default: the system actor).
        Raises `AlreadyExistsError`, `StorageError`, `InvalidInputError`."""
        n = _call(
            _native.NativeVault.create,
            os.fspath(path),
            passphrase,
            key,
            _kdf(kdf),
            None if opener is None else _ctx(opener),
        )
        return cls(n)

    @classmethod
    def open(
        cls,
        path: PathLike,
        *,
        passphrase: Optional[str] = None,
        key: Optional[bytes] = None,
        opener: Optional[Access] = None,
    ) -> "Vault":
        """Opens the vault in directory ``path``. Raises `WrongKeyError` (before any data
        is touched), `NotFoundError`, `StorageError` (e.g. open elsewhere)."""
        n = _call(
            _native.NativeVault.open,
            os.fspath(path),
            passphrase,
            key,
            None if opener is None else _ctx(opener),
        )
        return cls(n)

    def close(self) -> None:
        """Closes the vault (idempotent); later calls raise `ClosedError`."""
        _call(self._native.close)

    @property
    def closed(self) -> bool:
        """True once the vault is closed."""
        return bool(self._native.closed)

    def __enter__(self) -> "Vault":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<medvault.Vault {'closed' if self.closed else 'open'}>"

    def put(self, ctx: Access, key: KeyLike, value: Mapping[str, Any]) -> None:
        """Stores ``value`` (a dict: its items are the record's fields) as record
        ``key``, replacing any earlier version. Logged as ``write``."""
        if not isinstance(value, Mapping):
            raise InvalidInputError("a record is a dict of fields", "invalid_input")
        k = _key(key)
        _call(self._native.put, _ctx(ctx), k.subject, k.collection, k.record_id, dumps(value))

    def get(self, ctx: Access, key: KeyLike) -> Dict[str, Any]:
        """Reads a record whole. Logged as ``read``. Raises `NotFoundError`,
        `IntegrityError`, `AccessDeniedError`."""
        k = _key(key)
        return loads(
            _call(self._native.get, _ctx(ctx), k.subject, k.collection, k.record_id, None)
        )

    def get_fields(self, ctx: Access, key: KeyLike, fields: Sequence[str]) -> Dict[str, Any]:
        """Reads only the named top-level fields (absent ones are skipped; the others
        are not decrypted). Logged as ``read`` naming the fields."""
        k = _key(key)
        return loads(
            _call(
                self._native.get,
                _ctx(ctx),
                k.subject,
                k.collection,
                k.record_id,
                list(fields),
            )
        )

    def delete(self, ctx: Access, key: KeyLike) -> None:
        """Deletes a record. Logged as ``delete``. Raises `NotFoundError`."""
        k = _key(key)
        _call(self._native.delete, _ctx(ctx), k.subject, k.collection, k.record_id)

    def records_of(
        self, ctx: Access, subject: str, collection: Optional[str] = None
    ) -> List[Tuple[RecordKey, Dict[str, Any]]]:
        """Every record of ``subject`` (of ``collection`` when given), as (key, value)
        pairs; ``[]`` for an unknown subject. Logged as one ``read``."""
        return _listed(_call(self._native.records_of, _ctx(ctx), subject, collection))

    def find(
        self, ctx: Access, collection: str, index: str, values: Sequence[str]
    ) -> List[Tuple[RecordKey, Dict[str, Any]]]:
        """Records of ``collection`` whose blind index ``index`` matches ``values``
        (one per index part). Raises `NotFoundError` for an unknown index."""
        return _listed(
            _call(self._native.find, _ctx(ctx), collection, index, list(values))
        )

    def erase_subject(self, ctx: Access, subject: str) -> int:
        """Erases a subject by crypto-shredding (GDPR art. 17); returns the number of
        records erased. Raises `NotFoundError` for an unknown subject."""
        return int(_call(self._native.erase_subject, _ctx(ctx), subject))

    def is_erased(self, ctx: Access, subject: str) -> bool:
        """True when ``subject`` is remembered as erased: writes for it raise
        `SubjectErasedError` until `readmit_subject`. Logged as ``search``."""
        return bool(_call(self._native.is_erased, _ctx(ctx), subject))

    def readmit_subject(self, ctx: Access, subject: str, reason: str) -> None:
        """Re-admits an erased subject whose patient has really returned: writes for it
        are accepted again, as a new incarnation under new keys (nothing of the erased
        one comes back). ``reason`` is required and logged with the actor in a
        ``readmit`` entry. Raises `InvalidInputError` (empty reason), `NotFoundError`
        (not remembered as erased), `AccessDeniedError` (under a policy, a role that may
        not erase)."""
        _call(self._native.readmit_subject, _ctx(ctx), subject, reason)

    def set_policy(self, ctx: Access, policy: Union[str, Mapping[str, Any]]) -> int:
        """Installs an access policy (its JSON text, or a dict such as
        `default_policy()`) as the vault's next version; returns the version (1 for the
        first). Once a policy is installed, changing it needs a role with the
        ``policy`` capability; there is no way back to a vault without a policy. Raises
        `InvalidInputError`, `AccessDeniedError`."""
        text = policy if isinstance(policy, str) else dumps(policy)
        return int(_call(self._native.set_policy, _ctx(ctx), text))

    def verify(self, ctx: Access, checkpoint: Optional[str] = None) -> int:
        """Verifies the whole access log (and that it extends ``checkpoint``, a text
        from `checkpoint`); returns the number of entries verified. Raises
        `LogTamperedError`, `IntegrityError`."""
        return int(_call(self._native.verify, _ctx(ctx), checkpoint))

    def checkpoint(self, ctx: Access) -> str:
        """Issues a checkpoint of the access log (text ``mvcp1:...``) to keep outside
        the vault."""
        return str(_call(self._native.checkpoint, _ctx(ctx)))

    def audit_query(
        self,
        ctx: Access,
        *,
        subject: Optional[str] = None,
        actor: Optional[str] = None,
        purpose: Optional[str] = None,
        action: Optional[str] = None,
        since_ms: Optional[int] = None,
        until_ms: Optional[int] = None,
    ) -> List[Dict[str, Any]]:
        """Access-log entries matching every given filter, as dicts (``seq``,
        ``time_ms``, ``actor``, ``purpose``, ``reason``, ``action``, ``outcome``,
        ``subject_pseudonym``, ``target``, ``note``). The query is itself logged."""
        q = {
            k: v
            for k, v in (
                ("subject", subject),
                ("actor", actor),
                ("purpose", purpose),
                ("action", action),
                ("since_ms", since_ms),
                ("until_ms", until_ms),
            )
            if v is not None
        }
        result: List[Dict[str, Any]] = loads(
            _call(self._native.audit_query, _ctx(ctx), dumps(q))
        )
        return result

    def rotate_root_key(
        self,
        ctx: Access,
        *,
        passphrase: Optional[str] = None,
        key: Optional[bytes] = None,
        kdf: Optional[Kdf] = None,
    ) -> int:
        """Rotates the root key to a new passphrase or raw 32-byte key in one atomic
        header write (O(1)); returns the number of keys rewrapped (vault secret and
        key-encryption key). Crash-safe: before the write only the old key opens the
        vault, after it only the new one."""
        return int(
            _call(self._native.rotate_root_key, _ctx(ctx), passphrase, key, _kdf(kdf))
        )

    def rotate_data_keys(
        self, ctx: Access, subjects: Optional[Sequence[str]] = None
    ) -> Tuple[int, int]:
        """Rotates the data keys of ``subjects`` (all when None), re-encrypting their
        records; returns (subjects, records) rotated."""
        s = None if subjects is None else list(subjects)
        n_subjects, n_records = _call(self._native.rotate_data_keys, _ctx(ctx), s)
        return int(n_subjects), int(n_records)

    def import_fhir(self, ctx: Access, path: PathLike) -> Dict[str, Any]:
        """Imports FHIR R4 resources (NDJSON or Bundles; a file or a directory) in
        atomic batches logged as ``import``; returns ``{"records", "per_type",
        "replaced", "unchanged", "skipped", "rejected", "refused_erased", "batches",
        "bytes"}`` (``unchanged``: resources the vault already held with the same text,
        not written again; ``refused_erased``: resources of erased subjects, not
        stored)."""
        result: Dict[str, Any] = loads(
            _call(self._native.import_fhir, _ctx(ctx), os.fspath(path))
        )
        return result

    def log_len(self) -> int:
        """Number of access-log entries (not logged)."""
        return int(_call(self._native.log_len))
