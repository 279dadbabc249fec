"""Type stubs of the extension module `medvault._native` (crate medvault-py).

Values cross as JSON text; the package `medvault` wraps this module and is the API to
use. An access context is the tuple (actor, purpose, reason, roles, purpose_code)."""

from os import PathLike
from typing import List, Optional, Tuple, Union

__version__: str

_Ctx = Tuple[str, str, Optional[str], List[str], Optional[str]]
_Kdf = Tuple[int, int, int]
_Path = Union[str, PathLike[str]]

def default_policy() -> str: ...

class NativeError(Exception):
    """args: (kind, message, rule): rule names the access-policy rule of a policy
    denial, else None."""

class NativeVault:
    @staticmethod
    def create(
        path: _Path,
        passphrase: Optional[str] = None,
        key: Optional[bytes] = None,
        kdf: Optional[_Kdf] = None,
        opener: Optional[_Ctx] = None,
    ) -> NativeVault: ...
    @staticmethod
    def open(
        path: _Path,
        passphrase: Optional[str] = None,
        key: Optional[bytes] = None,
        opener: Optional[_Ctx] = None,
    ) -> NativeVault: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    def put(
        self, ctx: _Ctx, subject: str, collection: str, record_id: str, json: str
    ) -> None: ...
    def get(
        self,
        ctx: _Ctx,
        subject: str,
        collection: str,
        record_id: str,
        fields: Optional[List[str]] = None,
    ) -> str: ...
    def delete(self, ctx: _Ctx, subject: str, collection: str, record_id: str) -> None: ...
    def records_of(
        self, ctx: _Ctx, subject: str, collection: Optional[str] = None
    ) -> str: ...
    def find(self, ctx: _Ctx, collection: str, index: str, values: List[str]) -> str: ...
    def erase_subject(self, ctx: _Ctx, subject: str) -> int: ...
    def is_erased(self, ctx: _Ctx, subject: str) -> bool: ...
    def readmit_subject(self, ctx: _Ctx, subject: str, reason: str) -> None: ...
    def set_policy(self, ctx: _Ctx, policy: str) -> int: ...
    def verify(self, ctx: _Ctx, checkpoint: Optional[str] = None) -> int: ...
    def checkpoint(self, ctx: _Ctx) -> str: ...
    def audit_query(self, ctx: _Ctx, query: Optional[str] = None) -> str: ...
    def rotate_root_key(
        self,
        ctx: _Ctx,
        passphrase: Optional[str] = None,
        key: Optional[bytes] = None,
        kdf: Optional[_Kdf] = None,
    ) -> int: ...
    def rotate_data_keys(
        self, ctx: _Ctx, subjects: Optional[List[str]] = None
    ) -> Tuple[int, int]: ...
    def import_fhir(self, ctx: _Ctx, path: _Path) -> str: ...
    def log_len(self) -> int: ...
