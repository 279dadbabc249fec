#!/usr/bin/env python3
"""Validates an NDJSON export of FHIR AuditEvent resources written by
`medvault audit export --format fhir` (or the test tests/governance.rs) with an
independent validator: the `fhir.resources` models (pydantic), R4 where the installed
version has them, else R4B (whose AuditEvent is R4's: FHIR R4B changed no element of
AuditEvent). Then checks each event against the IHE Basic Audit Log Patterns (BALP)
profile it must claim, derived here from its type/subtype/action (not from medvault's
code):

  rest + read     -> IHE.BasicAudit.PatientRead    (action R)
  rest + search   -> IHE.BasicAudit.PatientQuery   (action E)
  rest + create   -> IHE.BasicAudit.PatientCreate  (action C)
  rest + update   -> IHE.BasicAudit.PatientUpdate  (action U)
  rest + delete   -> IHE.BasicAudit.PatientDelete  (action D)
  DCM 110106 + iso-21089 disclose -> IHE.BasicAudit.PrivacyDisclosure.Source

A successful event (outcome 0) must claim exactly its profile and carry what the BALP
Patient* profiles require: one patient entity (audit-entity-type 1, object-role 1)
identified, a requestor agent, a source observer, `recorded`. A denied or failed event
(outcome 4/8) must claim no profile (the profiles describe successful operations).
With --require-all, every profile above must occur at least once.

Exit status 0 when every event passes, 1 otherwise (each failure printed).
Usage: validate_audit_events.py FILE.ndjson [--require-all]
"""
import importlib
import json
import sys

BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/"
REST = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
LIFECYCLE = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
REST_PROFILES = {
    "read": ("IHE.BasicAudit.PatientRead", "R"),
    "search": ("IHE.BasicAudit.PatientQuery", "E"),
    "create": ("IHE.BasicAudit.PatientCreate", "C"),
    "update": ("IHE.BasicAudit.PatientUpdate", "U"),
    "delete": ("IHE.BasicAudit.PatientDelete", "D"),
}
DISCLOSURE = "IHE.BasicAudit.PrivacyDisclosure.Source"


def audit_event_model():
    for release in ("R4", "R4B"):
        try:
            mod = importlib.import_module(f"fhir.resources.{release}.auditevent")
            return release, mod.AuditEvent
        except ImportError:
            continue
    sys.exit("fhir.resources with R4 or R4B models is required (pip install fhir.resources)")


def expected_profile(ev):
    t = ev.get("type", {})
    subs = {(c.get("system"), c.get("code")) for c in ev.get("subtype", [])}
    if (t.get("system"), t.get("code")) == (DCM, "110106") and (LIFECYCLE, "disclose") in subs:
        return DISCLOSURE, "R"
    if (t.get("system"), t.get("code")) == (REST, "rest"):
        for code, (profile, action) in REST_PROFILES.items():
            if (RESTFUL, code) in subs:
                return profile, action
    return None, None


def check(ev):
    errors = []
    profile, action = expected_profile(ev)
    claimed = ev.get("meta", {}).get("profile", [])
    outcome = ev.get("outcome")
    if profile is None:
        errors.append("type/subtype match no BALP pattern")
        return errors, None
    if ev.get("action") != action:
        errors.append(f"action {ev.get('action')!r}, {profile} needs {action!r}")
    if outcome == "0":
        if claimed != [BALP + profile]:
            errors.append(f"claims {claimed}, expected [{BALP + profile}]")
        patients = [
            e for e in ev.get("entity", [])
            if (e.get("type", {}).get("system"), e.get("type", {}).get("code")) == (ENTITY_TYPE, "1")
            and (e.get("role", {}).get("system"), e.get("role", {}).get("code")) == (OBJECT_ROLE, "1")
        ]
        if len(patients) != 1:
            errors.append(f"{len(patients)} patient entities, BALP requires exactly 1")
        elif not (patients[0].get("what", {}).get("identifier", {}).get("value")
                  or patients[0].get("what", {}).get("reference")):
            errors.append("patient entity does not identify the patient")
        if not any(a.get("requestor") is True for a in ev.get("agent", [])):
            errors.append("no requestor agent")
        if not ev.get("source", {}).get("observer"):
            errors.append("no source observer")
        if not ev.get("recorded"):
            errors.append("no recorded time")
    elif outcome in ("4", "8", "12"):
        if claimed:
            errors.append(f"unsuccessful event claims {claimed}")
    else:
        errors.append(f"outcome {outcome!r} is not an AuditEventOutcome code")
    return errors, profile if outcome == "0" else None


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    release, model = audit_event_model()
    failures, seen, n = 0, set(), 0
    with open(argv[1], encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            n += 1
            try:
                ev = json.loads(line)
                if ev.get("resourceType") != "AuditEvent":
                    raise ValueError("resourceType is not AuditEvent")
                model.model_validate(ev) if hasattr(model, "model_validate") else model.parse_obj(ev)
            except Exception as e:  # the validator's own message says what is wrong
                failures += 1
                print(f"line {lineno}: not a valid FHIR {release} AuditEvent: {e}")
                continue
            errors, profile = check(ev)
            if profile:
                seen.add(profile)
            for err in errors:
                failures += 1
                print(f"line {lineno} ({ev.get('id')}): {err}")
    if n == 0:
        print("no AuditEvent in the file")
        failures += 1
    if "--require-all" in argv:
        for p in [p for p, _ in REST_PROFILES.values()] + [DISCLOSURE]:
            if p not in seen:
                failures += 1
                print(f"no successful event claims {p}")
    print(f"{n} AuditEvents checked against FHIR {release} models and BALP: "
          f"{'OK' if failures == 0 else f'{failures} failures'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
