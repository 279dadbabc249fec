//! `medvault export --research` and `medvault research object|destroy-key` end to end
//! (issue 16, docs/RESEARCH.md): a refusal's exit code and log entry, an export of the
//! 13 real patients that holds no identity of theirs (values read from the source NDJSON
//! with serde_json, searched in the output files' bytes), the manifest, an objecting
//! patient left out, owner-only output files, the project key destroyed and logged.
#![allow(clippy::unwrap_used)] // tests: a failure should abort the test with its message

#[allow(dead_code)] // the shared runner has helpers this file does not use
mod support;

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::Path;

use serde_json::Value;
use support::Medvault;

fn as_role(actor: &str, purpose: &str, role: &str) -> Medvault {
    Medvault::new()
        .env("MEDVAULT_ACTOR", Some(actor))
        .env("MEDVAULT_PURPOSE", Some(purpose))
        .env("MEDVAULT_ROLES", Some(role))
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The identifying values of every Patient line of `dir`: id, names, identifier values,
/// phones, address lines, birth date (read with serde_json).
fn identities(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("Patient.000.ndjson")).unwrap();
    let mut out = Vec::new();
    let strs = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    };
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        let p: Value = serde_json::from_str(l).unwrap();
        out.push(p["id"].as_str().unwrap().to_owned());
        for n in p["name"].as_array().into_iter().flatten() {
            out.extend(strs(&n["given"]));
            out.extend(strs(&n["family"]));
        }
        for k in ["identifier", "telecom"] {
            for i in p[k].as_array().into_iter().flatten() {
                out.extend(strs(&i["value"]));
            }
        }
        for a in p["address"].as_array().into_iter().flatten() {
            out.extend(strs(&a["line"]));
        }
        out.extend(strs(&p["birthDate"]));
    }
    out.retain(|s| s.len() >= 4);
    out
}

#[test]
#[cfg_attr(
    missing_fhir_ndjson,
    ignore = "needs fhir-r4-ndjson (README: Test data)"
)]
fn research_export_refuses_without_authorization_and_leaks_no_identity() {
    let data = common::fhir_data_dir();
    let src = data.join("13-patients");
    let dir = tempfile::tempdir().unwrap();
    let v = dir.path().join("v");
    let vs = v.to_str().unwrap();
    let admin = as_role("admin-1", "administration", "administration");
    admin.init_fast(&v);
    // The default policy with k = 1, so that all 13 patients can leave.
    let mut policy: Value = serde_json::from_str(&admin.ok(&["policy", "default"])).unwrap();
    policy["research"] = serde_json::json!({"k": 1});
    let pfile = dir.path().join("policy.json");
    std::fs::write(&pfile, policy.to_string()).unwrap();
    admin.ok(&["policy", "set", vs, pfile.to_str().unwrap()]);
    as_role("etl", "maintenance", "integration").ok(&["import", vs, src.to_str().unwrap()]);

    let spec = dir.path().join("spec.json");
    std::fs::write(
        &spec,
        r#"{"collections":[{"collection":"Patient"},{"collection":"Condition"},{"collection":"Encounter","fields":["resourceType","id","status","class","type","subject","period"]},{"collection":"DocumentReference"}],"dates":"year","postal_digits":2}"#,
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let od = out_dir.to_str().unwrap();
    let researcher = as_role("dr-study", "research", "research");

    // Refused without an authorization reference: exit 6, the rule named, logged.
    let denied = researcher.run(&[
        "export",
        vs,
        "--research",
        "--project",
        "P-CLI",
        "--spec",
        spec.to_str().unwrap(),
        "--out",
        od,
    ]);
    assert_eq!(denied.status.code(), Some(6), "{}", stderr(&denied));
    assert!(stderr(&denied).contains("research-authorization"));
    assert!(!out_dir.exists());
    let log = admin.ok(&["audit", "log", vs, "--action", "export", "--json"]);
    assert!(
        log.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .any(|e| e["outcome"] == "denied"
                && e["actor"] == "dr-study"
                && e["note"] == "denied by rule research-authorization"),
        "{log}"
    );

    // One patient objects (through the patient-request purpose).
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(src.join("Patient.000.ndjson"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let objector = first["id"].as_str().unwrap();
    let said = as_role("dpo-1", "patient-request", "dpo").ok(&["research", "object", vs, objector]);
    assert!(said.contains("recorded"), "{said}");

    let said = researcher.ok(&[
        "export",
        vs,
        "--research",
        "--project",
        "P-CLI",
        "--authorization",
        "IRB-2026-7",
        "--spec",
        spec.to_str().unwrap(),
        "--out",
        od,
    ]);
    assert!(said.contains("12 patients"), "{said}");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["patients"], 12);
    assert_eq!(manifest["excluded_objections"], 1);
    assert_eq!(manifest["authorization"], "IRB-2026-7");
    // Every file: owner-only, FHIR NDJSON of the requested types, no identity.
    let mut bytes = Vec::new();
    let mut types = Vec::new();
    for e in std::fs::read_dir(&out_dir).unwrap() {
        let p = e.unwrap().path();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        let name = p.file_name().unwrap().to_str().unwrap().to_owned();
        let b = std::fs::read(&p).unwrap();
        if let Some(ty) = name.strip_suffix(".ndjson") {
            for l in b.split(|c| *c == b'\n').filter(|l| !l.is_empty()) {
                let r: Value = serde_json::from_slice(l).unwrap();
                assert_eq!(r["resourceType"], ty);
                if ty == "Encounter" {
                    let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
                    assert!(keys.len() <= 7, "{keys:?}");
                    let start = r["period"]["start"].as_str().unwrap();
                    assert_eq!(start.len(), 4, "dates to the year: {start}");
                }
            }
            types.push(ty.to_owned());
        }
        bytes.extend_from_slice(&b);
    }
    types.sort();
    assert_eq!(
        types,
        ["Condition", "DocumentReference", "Encounter", "Patient"]
    );
    let needles = identities(&src);
    assert!(needles.len() > 13 * 5);
    let hay = String::from_utf8(bytes).unwrap();
    for n in &needles {
        assert!(
            !hay.contains(n.as_str()),
            "an identifying value ({} bytes) left",
            n.len()
        );
    }

    // The log holds the disclosure; the key is destroyed by administration, logged.
    let log = admin.ok(&["audit", "log", vs, "--action", "export", "--json"]);
    assert!(log.contains("research disclosure: project=P-CLI; authorization=IRB-2026-7"));
    let denied = researcher.run(&["research", "destroy-key", vs, "--project", "P-CLI"]);
    assert_eq!(denied.status.code(), Some(6), "{}", stderr(&denied));
    let said = admin.ok(&["research", "destroy-key", vs, "--project", "P-CLI"]);
    assert!(said.contains("destroyed"), "{said}");
    let log = admin.ok(&["audit", "log", vs, "--action", "key-rotation", "--json"]);
    assert!(
        log.contains("research project key destroyed: project=P-CLI"),
        "{log}"
    );
}

/// A vault with one imported Patient (hand-written NDJSON), the default policy with
/// k = 1, and a specification file; returns (vault path, spec path).
fn small_vault(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let v = root.join("v");
    let admin = as_role("admin-1", "administration", "administration");
    admin.init_fast(&v);
    let vs = v.to_str().unwrap();
    let mut policy: Value = serde_json::from_str(&admin.ok(&["policy", "default"])).unwrap();
    policy["research"] = serde_json::json!({"k": 1});
    let pfile = root.join("policy.json");
    std::fs::write(&pfile, policy.to_string()).unwrap();
    admin.ok(&["policy", "set", vs, pfile.to_str().unwrap()]);
    let src = root.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(
        src.join("Patient.ndjson"),
        "{\"resourceType\":\"Patient\",\"id\":\"pat-1\",\"gender\":\"female\",\"birthDate\":\"1970-05-06\"}\n",
    )
    .unwrap();
    as_role("etl", "maintenance", "integration").ok(&["import", vs, src.to_str().unwrap()]);
    let spec = root.join("spec.json");
    std::fs::write(&spec, r#"{"collections":[{"collection":"Patient"}]}"#).unwrap();
    (v, spec)
}

fn export_to(v: &Path, spec: &Path, out: &Path, project: &str, auth: &str) -> std::process::Output {
    as_role("dr-study", "research", "research").run(&[
        "export",
        v.to_str().unwrap(),
        "--research",
        "--project",
        project,
        "--authorization",
        auth,
        "--spec",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

/// `--out DIR` must be new or empty: a stale file of an earlier export (an objector's
/// data), a planted symbolic link at a file's path, or DIR itself a symbolic link are
/// refused before anything is exported, and nothing outside is written; a new DIR is
/// created 0700 with 0600 files; an existing empty DIR is made 0700.
#[cfg(unix)]
#[test]
fn research_export_out_must_be_new_or_empty_and_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (v, spec) = small_vault(dir.path());
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "untouched").unwrap();

    // A stale file (old permissions 0644) is refused, left as it was.
    let stale = dir.path().join("stale");
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("Patient.ndjson"), "objector's data\n").unwrap();
    std::fs::set_permissions(
        stale.join("Patient.ndjson"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let o = export_to(&v, &spec, &stale, "P-OUT", "IRB-1");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(stale.join("Patient.ndjson")).unwrap(),
        "objector's data\n"
    );

    // A symbolic link planted at a file's path: refused, its target untouched.
    let planted = dir.path().join("planted");
    std::fs::create_dir(&planted).unwrap();
    std::os::unix::fs::symlink(&victim, planted.join("Patient.ndjson")).unwrap();
    std::os::unix::fs::symlink(&victim, planted.join("manifest.json")).unwrap();
    let o = export_to(&v, &spec, &planted, "P-OUT", "IRB-1");
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");

    // DIR itself a symbolic link to an empty directory elsewhere: refused.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    let o = export_to(&v, &spec, &link, "P-OUT", "IRB-1");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("symbolic link"), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);

    // None of the refusals reached the vault: no disclosure logged.
    let admin = as_role("admin-1", "administration", "administration");
    let log = admin.ok(&[
        "audit",
        "log",
        v.to_str().unwrap(),
        "--action",
        "export",
        "--json",
    ]);
    assert!(!log.contains("research disclosure"), "{log}");

    // A new DIR (and its parent): 0700, files 0600.
    let new = dir.path().join("a").join("new");
    let said = String::from_utf8(export_to(&v, &spec, &new, "P-OUT", "IRB-1").stdout).unwrap();
    assert!(said.contains("1 patients"), "{said}");
    assert_eq!(mode(&new), 0o700);
    let mut names = Vec::new();
    for e in std::fs::read_dir(&new).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
        names.push(p.file_name().unwrap().to_str().unwrap().to_owned());
    }
    names.sort();
    assert_eq!(names, ["Patient.ndjson", "manifest.json"]);
    // The same DIR again: not empty any more, refused.
    let o = export_to(&v, &spec, &new, "P-OUT", "IRB-1");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // An existing empty DIR, 0755: made 0700.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = export_to(&v, &spec, &empty, "P-OUT", "IRB-1");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(mode(&empty), 0o700);
    assert_eq!(mode(&empty.join("manifest.json")), 0o600);
}

/// A project or authorization with `;`, `=` or a control character could forge fields
/// of the disclosure note or lines of the output: refused with a clear message, nothing
/// written, nothing printed on stdout.
#[test]
fn research_export_refuses_project_or_authorization_that_forge_fields_or_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (v, spec) = small_vault(dir.path());
    let out = dir.path().join("out");
    for (project, auth) in [
        ("P-1", "none; spec=sha256:0; patients=0"),
        ("P-1\nresearch export for project X: 0 patients", "IRB-1"),
        ("P-1", "IRB\u{1b}[2J"),
    ] {
        let o = export_to(&v, &spec, &out, project, auth);
        assert_ne!(o.status.code(), Some(0), "{project:?} {auth:?}");
        assert!(stderr(&o).contains("printable ASCII"), "{}", stderr(&o));
        assert!(o.stdout.is_empty());
        assert!(!out.exists());
    }
    let admin = as_role("admin-1", "administration", "administration");
    let log = admin.ok(&["audit", "log", v.to_str().unwrap(), "--json"]);
    assert!(!log.contains("sha256:0;"), "{log}");
}
