"""The Python package against a real vault on disk.

Oracles: literal expected values and JSON texts written out here (never the package's
own encoder on both sides), and the vault's access log as read back through the engine.
"""

import json
import threading
from decimal import Decimal

import pytest

import medvault
from medvault import Access, Kdf, RecordKey, Vault

NURSE = Access("nurse-42", "care")
KEY = RecordKey("patient-1", "Observation", "bp-1")
FAST = Kdf.insecure_for_tests()


@pytest.fixture
def vault_dir(tmp_path):
    return tmp_path / "vault"


@pytest.fixture
def vault(vault_dir):
    with Vault.create(vault_dir, passphrase="s3cret", kdf=FAST) as v:
        yield v


def test_create_put_close_open_get(vault_dir):
    with Vault.create(vault_dir, passphrase="s3cret", kdf=FAST, opener=NURSE) as v:
        v.put(NURSE, KEY, {"code": "85354-9", "value": 120, "note": "sitting, ü"})
    with Vault.open(vault_dir, passphrase="s3cret") as v:
        assert v.get(NURSE, KEY) == {"code": "85354-9", "value": 120, "note": "sitting, ü"}


def test_raw_key_vault(tmp_path):
    key = bytes(range(32))
    with Vault.create(tmp_path / "k", key=key) as v:
        v.put(NURSE, KEY, {"a": 1})
    with Vault.open(tmp_path / "k", key=key) as v:
        assert v.get(NURSE, KEY) == {"a": 1}
    with pytest.raises(medvault.InvalidInputError):
        Vault.open(tmp_path / "k", key=b"short")


def test_encoder_writes_numbers_exactly():
    # Oracle: the JSON texts typed out here.
    value = {"dose": Decimal("1.50"), "big": 12345678901234567890123, "f": 0.1, "e": Decimal("1E+3")}
    assert medvault.dumps(value) == '{"dose":1.50,"big":12345678901234567890123,"f":0.1,"e":1E+3}'
    assert medvault.dumps({"s": 'a"b', "l": [True, None]}) == '{"s":"a\\"b","l":[true,null]}'
    for bad in (Decimal("NaN"), float("inf"), {1: 2}, object()):
        with pytest.raises(medvault.InvalidInputError):
            medvault.dumps({"x": bad})
    # ...and the decoder reads decimals as Decimal with their digits.
    back = medvault.loads('{"dose":1.50,"n":7}')
    assert str(back["dose"]) == "1.50" and isinstance(back["dose"], Decimal)
    assert back["n"] == 7 and isinstance(back["n"], int)


def test_integers_and_strings_round_trip_exactly(vault):
    value = {"n": 9007199254740993, "neg": -42, "s": "1.50", "nested": {"list": [1, 2, 3]}}
    vault.put(NURSE, KEY, value)
    assert vault.get(NURSE, KEY) == value


def test_decimals_keep_their_digits(vault):
    vault.put(NURSE, KEY, {"dose": Decimal("1.50"), "temp": Decimal("37.0")})
    got = vault.get(NURSE, KEY)
    assert isinstance(got["dose"], Decimal)
    assert str(got["dose"]) == "1.50"
    assert str(got["temp"]) == "37.0"
    # Member order and number tokens as written, read through records_of too.
    vault.put(NURSE, KEY, {"z": Decimal("1.50"), "a": Decimal("1E+3"), "m": -0.0})
    assert medvault.dumps(vault.get(NURSE, KEY)) == '{"z":1.50,"a":1E+3,"m":-0.0}'
    [(k, v)] = vault.records_of(NURSE, "patient-1")
    assert k == KEY and list(v) == ["z", "a", "m"] and str(v["z"]) == "1.50"


def test_get_fields_returns_only_those_fields(vault):
    vault.put(NURSE, KEY, {"code": "85354-9", "value": 120, "unit": "mm[Hg]"})
    assert vault.get_fields(NURSE, KEY, ["value", "absent"]) == {"value": 120}
    assert vault.get_fields(NURSE, KEY, []) == {}
    # The log names what was read (the same entry a Rust caller leaves).
    last_read = [e for e in vault.audit_query(NURSE, action="read")][-1]
    assert last_read["target"]["fields"] == []
    assert last_read["actor"] == "nurse-42" and last_read["outcome"] == "ok"


def test_erase_subject(vault):
    vault.put(NURSE, KEY, {"value": 1})
    vault.put(NURSE, RecordKey("patient-1", "Condition", "c-1"), {"code": "I10"})
    vault.put(NURSE, RecordKey("patient-2", "Condition", "c-2"), {"code": "E11"})
    assert vault.erase_subject(NURSE, "patient-1") == 2
    with pytest.raises(medvault.NotFoundError):
        vault.get(NURSE, KEY)
    assert vault.records_of(NURSE, "patient-1") == []
    assert vault.records_of(NURSE, "patient-2") == [
        (RecordKey("patient-2", "Condition", "c-2"), {"code": "E11"})
    ]
    with pytest.raises(medvault.NotFoundError):
        vault.erase_subject(NURSE, "patient-1")


def test_verify_and_checkpoint(vault):
    vault.put(NURSE, KEY, {"value": 1})
    vault.get(NURSE, KEY)
    n = vault.verify(NURSE)
    # create, write, read: three entries before the verify.
    assert n == 3
    cp = vault.checkpoint(NURSE)
    assert cp.startswith("mvcp1:")
    assert vault.verify(NURSE, cp) == vault.log_len() - 1
    with pytest.raises(medvault.InvalidInputError):
        vault.verify(NURSE, "mvcp1:nothex")


def test_wrong_passphrase_is_wrong_key_error(vault_dir):
    Vault.create(vault_dir, passphrase="right", kdf=FAST).close()
    with pytest.raises(medvault.WrongKeyError) as e:
        Vault.open(vault_dir, passphrase="wrong")
    assert e.value.kind == "wrong_key"
    assert isinstance(e.value, medvault.MedvaultError)
    # The vault is not damaged: the right key still opens it.
    Vault.open(vault_dir, passphrase="right").close()


def test_break_the_glass_without_reason_is_denied_and_logged(vault):
    vault.put(NURSE, KEY, {"value": 1})
    er = Access("dr-7", "emergency")
    with pytest.raises(medvault.AccessDeniedError):
        vault.get(er, KEY)
    # With a reason it is allowed.
    assert vault.get(Access("dr-7", "emergency", "unconscious patient"), KEY) == {"value": 1}
    entries = vault.audit_query(NURSE, actor="dr-7")
    assert [(e["action"], e["outcome"]) for e in entries] == [("read", "denied"), ("read", "ok")]
    assert entries[1]["reason"] == "unconscious patient"


def test_invalid_input(vault):
    with pytest.raises(medvault.InvalidInputError):
        vault.put(NURSE, KEY, [1, 2])  # type: ignore[arg-type]
    with pytest.raises(medvault.InvalidInputError):
        vault.put(Access("x", "curiosity"), KEY, {})
    with pytest.raises(medvault.InvalidInputError):
        vault.put(NURSE, RecordKey("", "c", "r"), {})


def test_create_over_a_vault_is_already_exists(vault_dir):
    Vault.create(vault_dir, passphrase="s3cret", kdf=FAST).close()
    with pytest.raises(medvault.AlreadyExistsError):
        Vault.create(vault_dir, passphrase="other", kdf=FAST)


def test_context_manager_closes_the_vault(vault_dir):
    with Vault.create(vault_dir, passphrase="s3cret", kdf=FAST) as v:
        v.put(NURSE, KEY, {"value": 1})
        assert not v.closed
    assert v.closed
    with pytest.raises(medvault.ClosedError):
        v.get(NURSE, KEY)
    v.close()  # idempotent
    # The directory lock was released: the vault opens again in this process.
    with Vault.open(vault_dir, passphrase="s3cret") as again:
        assert again.get(NURSE, KEY) == {"value": 1}


def test_open_twice_is_a_storage_error(vault, vault_dir):
    with pytest.raises(medvault.StorageError):
        Vault.open(vault_dir, passphrase="s3cret")


def test_threads_share_a_vault(vault):
    errors = []

    def work(i):
        try:
            k = RecordKey(f"patient-{i}", "Observation", "o")
            vault.put(NURSE, k, {"i": i})
            assert vault.get(NURSE, k) == {"i": i}
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(vault.audit_query(NURSE, action="write")) == 8


def test_rotations_keep_the_data_readable(vault, vault_dir):
    vault.put(NURSE, KEY, {"value": 1})
    admin = Access("ops", "maintenance")
    assert vault.rotate_data_keys(admin) == (1, 1)
    # O(1): the vault secret and the key-encryption key are rewrapped, nothing else.
    assert vault.rotate_root_key(admin, passphrase="n3w", kdf=FAST) == 2
    vault.close()
    with pytest.raises(medvault.WrongKeyError):
        Vault.open(vault_dir, passphrase="s3cret")
    with Vault.open(vault_dir, passphrase="n3w") as v:
        assert v.get(NURSE, KEY) == {"value": 1}


def test_import_fhir_and_find(vault, tmp_path):
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [{"system": "urn:mrn", "value": "MRN-1"}],
        "birthDate": "1970-01-01",
    }
    cond = {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]},
    }
    src = tmp_path / "in.ndjson"
    src.write_text(json.dumps(patient) + "\n" + json.dumps(cond) + "\n")
    admin = Access("importer", "maintenance")
    report = vault.import_fhir(admin, src)
    assert report["records"] == 2
    assert report["per_type"] == {"Condition": 1, "Patient": 1}
    got = vault.records_of(NURSE, "p1", "Patient")
    assert got == [(RecordKey("p1", "Patient", "p1"), patient)]
    # The same file again: both resources are held with the same text already.
    again = vault.import_fhir(admin, src)
    assert (again["records"], again["replaced"], again["unchanged"]) == (0, 0, 2)
    with pytest.raises(medvault.NotFoundError):
        vault.find(NURSE, "Patient", "no-such-index", ["x"])


def test_every_error_class_is_a_medvault_error():
    kinds = set()
    for name in medvault.__all__:
        obj = getattr(medvault, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, medvault.MedvaultError)
            kinds.add(obj.kind)
    # The engine's stable kind names (medvault::Error::kind_name), typed out.
    assert {
        "wrong_key",
        "integrity",
        "not_found",
        "access_denied",
        "invalid_input",
        "storage",
        "log_tampered",
        "unknown_key_version",
        "unsupported_version",
        "excessive_work",
        "key_in_use",
        "already_exists",
        "subject_erased",
    } <= kinds
