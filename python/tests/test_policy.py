"""The Python package on a governed vault: roles under the default clinic policy
(docs/POLICY.md "The default clinic policy"), and the erasure memory (SECURITY.md
"Erasure memory").

Oracle: every expected value (the allowed fields, the rule names, the records) is
written out here by hand from docs/POLICY.md's tables and the records the tests write;
nothing is computed by the policy code. The access log is read back through the engine.
"""

import json

import pytest

import medvault
from medvault import Access, Kdf, RecordKey, Vault

FAST = Kdf.insecure_for_tests()

ADMIN = Access("admin-1", "administration", roles=("administration",))
DR = Access("dr-a", "care", roles=("care",))
CLERK = Access("clerk-b", "HPAYMT", roles=("billing",))  # HL7 code = billing
SCIENTIST = Access("sci-c", "research", roles=("research",))
DPO = Access("dpo-d", "patient-request", roles=("dpo",))
IMPORTER = Access("etl-e", "maintenance", roles=("integration",))

PATIENT_KEY = RecordKey("p1", "Patient", "p1")
ENCOUNTER_KEY = RecordKey("p1", "Encounter", "e1")
PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "identifier": [{"value": "MRN-1"}],
    "name": [{"family": "Doe"}],
    "birthDate": "1970-01-01",
}
ENCOUNTER = {
    "resourceType": "Encounter",
    "id": "e1",
    "status": "finished",
    "class": {"code": "AMB"},
    "period": {"start": "2026-01-05"},
    "reasonCode": [{"text": "cough"}],
    "diagnosis": [{"rank": 1}],
}


@pytest.fixture
def governed(tmp_path):
    """A vault with the default clinic policy and one patient written by care."""
    with Vault.create(tmp_path / "v", passphrase="s3cret", kdf=FAST, opener=ADMIN) as v:
        assert v.set_policy(ADMIN, medvault.default_policy()) == 1
        v.put(DR, PATIENT_KEY, PATIENT)
        v.put(DR, ENCOUNTER_KEY, ENCOUNTER)
        yield v


def denied(rule, call, *args):
    with pytest.raises(medvault.AccessDeniedError) as e:
        call(*args)
    assert e.value.kind == "access_denied"
    assert e.value.rule == rule
    assert f"`{rule}`" in str(e.value)


def test_care_reads_everything(governed):
    assert governed.get(DR, PATIENT_KEY) == PATIENT
    assert governed.get(DR, ENCOUNTER_KEY) == ENCOUNTER


def test_billing_reads_only_the_permitted_fields(governed):
    # billing-claims: Patient resourceType, id, identifier; Encounter resourceType, id,
    # period, type, class, serviceType, reasonCode.
    assert governed.get(CLERK, PATIENT_KEY) == {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [{"value": "MRN-1"}],
    }
    assert governed.get(CLERK, ENCOUNTER_KEY) == {
        "resourceType": "Encounter",
        "id": "e1",
        "class": {"code": "AMB"},
        "period": {"start": "2026-01-05"},
        "reasonCode": [{"text": "cough"}],
    }
    assert governed.get_fields(CLERK, PATIENT_KEY, ["identifier", "name"]) == {
        "identifier": [{"value": "MRN-1"}]
    }
    assert governed.records_of(CLERK, "p1", "Patient") == [
        (PATIENT_KEY, {"resourceType": "Patient", "id": "p1", "identifier": [{"value": "MRN-1"}]})
    ]
    denied("field-not-granted", governed.get_fields, CLERK, PATIENT_KEY, ["name"])
    with pytest.raises(medvault.AccessDeniedError):
        governed.put(CLERK, RecordKey("p1", "Claim", "c1"), {"resourceType": "Claim"})


def test_refused_roles_name_the_rule(governed):
    denied("deny-by-default", governed.get, SCIENTIST, PATIENT_KEY)
    denied("deny-by-default", governed.get, ADMIN, PATIENT_KEY)
    denied("no-role", governed.get, Access("nurse-f", "care"), PATIENT_KEY)
    denied("role-purpose", governed.get, Access("clerk-b", "care", roles=("billing",)), PATIENT_KEY)
    denied(
        "undeclared-purpose",
        governed.get,
        Access("dr-a", "care", roles=("care",), purpose_code="PUBHLTH"),
        PATIENT_KEY,
    )
    # integration writes (system-import) but reads nothing.
    governed.put(IMPORTER, RecordKey("p2", "Patient", "p2"), {"resourceType": "Patient"})
    denied("system-import", governed.get, IMPORTER, RecordKey("p2", "Patient", "p2"))
    # Two roles: the one that may invoke the purpose decides.
    two = Access("clerk-g", "billing", roles=["research", "billing"])
    assert governed.get_fields(two, PATIENT_KEY, ["id"]) == {"id": "p1"}
    # Each denial is a denied entry naming actor and rule (read back through the engine).
    notes = {
        (e["actor"], e["note"])
        for e in governed.audit_query(ADMIN, action="read")
        if e["outcome"] == "denied"
    }
    assert ("sci-c", "denied by rule deny-by-default") in notes
    assert ("nurse-f", "denied by rule no-role") in notes
    assert ("etl-e", "denied by rule system-import") in notes


def test_roles_are_checked(governed):
    with pytest.raises(medvault.InvalidInputError):
        governed.get(Access("dr-a", "care", roles=("",)), PATIENT_KEY)
    with pytest.raises(medvault.InvalidInputError):
        governed.get(Access("dr-a", "care", roles=tuple(f"r{i}" for i in range(17))), PATIENT_KEY)
    with pytest.raises(medvault.InvalidInputError):
        governed.get(Access("dr-a", "care", roles="care"), PATIENT_KEY)  # not a sequence
    # A non-policy refusal has no rule.
    with pytest.raises(medvault.AccessDeniedError) as e:
        governed.get(Access("dr-a", "emergency", roles=("care",)), PATIENT_KEY)
    assert e.value.rule is None


def test_erasure_memory(governed, tmp_path):
    with pytest.raises(medvault.AccessDeniedError):
        governed.erase_subject(DR, "p1")  # care-all has no erase
    assert governed.is_erased(DPO, "p1") is False
    assert governed.erase_subject(DPO, "p1") == 2
    assert governed.is_erased(DPO, "p1") is True
    assert governed.is_erased(DPO, "never-seen") is False
    # A late write of the erased patient: its own exception kind, not a generic one.
    with pytest.raises(medvault.SubjectErasedError) as e:
        governed.put(DR, PATIENT_KEY, PATIENT)
    assert e.value.kind == "subject_erased"
    assert not isinstance(e.value, (medvault.AccessDeniedError, medvault.InvalidInputError))
    # A re-import is refused record by record and reported.
    src = tmp_path / "p1.ndjson"
    src.write_text(json.dumps(PATIENT) + "\n")
    report = governed.import_fhir(IMPORTER, src)
    assert (report["records"], report["refused_erased"], report["rejected"]) == (0, 1, 0)
    # Re-admission needs a reason and erase authority.
    with pytest.raises(medvault.InvalidInputError):
        governed.readmit_subject(DPO, "p1", "  ")
    with pytest.raises(medvault.AccessDeniedError):
        governed.readmit_subject(DR, "p1", "patient returned")
    with pytest.raises(medvault.NotFoundError):
        governed.readmit_subject(DPO, "p2", "never erased")
    governed.readmit_subject(DPO, "p1", "patient returned for care, consent on file")
    assert governed.is_erased(DPO, "p1") is False
    with pytest.raises(medvault.NotFoundError):
        governed.readmit_subject(DPO, "p1", "again")
    # A new incarnation: nothing of the erased one comes back.
    with pytest.raises(medvault.NotFoundError):
        governed.get(DR, ENCOUNTER_KEY)
    governed.put(DR, PATIENT_KEY, {"resourceType": "Patient", "id": "p1"})
    assert governed.get(DR, PATIENT_KEY) == {"resourceType": "Patient", "id": "p1"}
    readmits = governed.audit_query(ADMIN, action="readmit")
    ok = [e for e in readmits if e["outcome"] == "ok"]
    assert [(e["actor"], e["reason"]) for e in ok] == [
        ("dpo-d", "patient returned for care, consent on file")
    ]


def test_erasure_memory_without_a_policy(tmp_path):
    nurse = Access("nurse-42", "care")
    with Vault.create(tmp_path / "v", passphrase="s3cret", kdf=FAST) as v:
        v.put(nurse, PATIENT_KEY, {"a": 1})
        v.erase_subject(nurse, "p1")
        with pytest.raises(medvault.SubjectErasedError):
            v.put(nurse, PATIENT_KEY, {"a": 1})
        v.readmit_subject(nurse, "p1", "returned")
        v.put(nurse, PATIENT_KEY, {"a": 2})
        assert v.get(nurse, PATIENT_KEY) == {"a": 2}
