//! The C ABI against the Rust API: what C writes through medvault-ffi, Rust reads back
//! through `medvault::Vault` (an independent path), and the access log holds the same
//! entries a Rust caller leaves (actor, purpose, action, outcome, target).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is the report
#![allow(unsafe_code)] // calling the C ABI from Rust, with valid pointers only

use std::ffi::{CStr, CString, c_char};
use std::ptr;

use medvault::{AccessContext, Action, KeySource, LogQuery, Outcome, Purpose, RecordKey, Vault};
use medvault_ffi::*;

const KEY: [u8; 32] = [7; 32];

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// Takes a returned string: copies it out and frees it through the API.
fn take(p: *mut c_char) -> String {
    assert!(!p.is_null());
    // SAFETY: a string this library returned, NUL-terminated, not yet freed.
    let s = unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_owned();
    // SAFETY: returned by this library and used no more.
    assert_eq!(unsafe { medvault_string_free(p) }, MedvaultStatus::Ok);
    s
}

fn last_message() -> String {
    let p = medvault_last_error_message();
    assert!(!p.is_null());
    // SAFETY: valid until this thread's next medvault call.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

#[test]
fn c_writes_rust_reads_and_the_log_is_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = c(dir.path().join("v").to_str().unwrap());
    let (actor, care, reason) = (c("nurse-42"), c("care"), c("ward round"));
    let nurse = MedvaultAccess {
        actor: actor.as_ptr(),
        purpose: care.as_ptr(),
        reason: reason.as_ptr(),
        roles: ptr::null(),
        roles_len: 0,
        purpose_code: ptr::null(),
    };
    let (s, col, id) = (c("patient-1"), c("Observation"), c("bp-1"));
    let mut v: MedvaultVault = 0;
    let mut out: *mut c_char = ptr::null_mut();
    // SAFETY (this block): every pointer is a live CString, struct or local above.
    unsafe {
        assert_eq!(
            medvault_create_key(path.as_ptr(), KEY.as_ptr(), 32, &nurse, &mut v),
            MedvaultStatus::Ok
        );
        let json = c(r#"{"code":"85354-9","value":120,"who":"Zoë"}"#);
        let put = medvault_put(
            v,
            &nurse,
            s.as_ptr(),
            col.as_ptr(),
            id.as_ptr(),
            json.as_ptr(),
        );
        assert_eq!(put, MedvaultStatus::Ok);
        let fields = [c("value")];
        let fptrs: Vec<*const c_char> = fields.iter().map(|f| f.as_ptr()).collect();
        let st = medvault_get_fields(
            v,
            &nurse,
            s.as_ptr(),
            col.as_ptr(),
            id.as_ptr(),
            fptrs.as_ptr(),
            1,
            &mut out,
        );
        assert_eq!(st, MedvaultStatus::Ok);
        assert_eq!(take(out), r#"{"value":120}"#);
        let missing = c("nobody");
        let st = medvault_get(
            v,
            &nurse,
            missing.as_ptr(),
            col.as_ptr(),
            id.as_ptr(),
            &mut out,
        );
        assert_eq!(st, MedvaultStatus::NotFound);
        assert!(out.is_null());
        assert_eq!(last_message(), "not found");
        assert_eq!(medvault_close(v), MedvaultStatus::Ok);
        assert_eq!(medvault_close(v), MedvaultStatus::BadHandle);
    }

    // Rust reads what C wrote.
    let vault = Vault::open(dir.path().join("v"), KeySource::raw(KEY)).unwrap();
    let rust = AccessContext::new("auditor", Purpose::Maintenance);
    let key = RecordKey::new("patient-1", "Observation", "bp-1");
    let value: serde_json::Value = vault.get(&rust, &key).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"code": "85354-9", "value": 120, "who": "Zoë"})
    );
    // The log holds C's calls as a Rust caller's: who, why, what, how it ended.
    let q = LogQuery {
        actor: Some("nurse-42".into()),
        ..LogQuery::default()
    };
    let entries = vault.audit_query(&rust, &q).unwrap();
    let seen: Vec<(Action, Outcome, Option<&str>)> = entries
        .iter()
        .map(|e| (e.action, e.outcome.clone(), e.reason.as_deref()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (Action::Create, Outcome::Ok, Some("ward round")),
            (Action::Write, Outcome::Ok, Some("ward round")),
            (Action::Read, Outcome::Ok, Some("ward round")),
            (
                Action::Read,
                Outcome::Failed("not_found".into()),
                Some("ward round")
            ),
        ]
    );
    let read = &entries[2];
    assert_eq!(read.purpose, Purpose::Care);
    let target = read.target.as_ref().unwrap();
    assert_eq!(target.record_id.as_deref(), Some("bp-1"));
    assert_eq!(target.fields, vec!["value".to_string()]);
}

#[test]
fn break_the_glass_without_reason_is_refused_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let path = c(dir.path().join("v").to_str().unwrap());
    let (actor, emergency) = (c("dr-7"), c("emergency"));
    let doc = MedvaultAccess {
        actor: actor.as_ptr(),
        purpose: emergency.as_ptr(),
        reason: ptr::null(),
        roles: ptr::null(),
        roles_len: 0,
        purpose_code: ptr::null(),
    };
    let mut v: MedvaultVault = 0;
    let mut n = 0u64;
    // SAFETY (this block): every pointer is a live CString, struct or local above.
    unsafe {
        assert_eq!(
            medvault_create_key(path.as_ptr(), KEY.as_ptr(), 32, ptr::null(), &mut v),
            MedvaultStatus::Ok
        );
        let s = c("patient-1");
        assert_eq!(
            medvault_erase_subject(v, &doc, s.as_ptr(), &mut n),
            MedvaultStatus::AccessDenied
        );
        let kind = CStr::from_ptr(medvault_last_error_kind());
        assert_eq!(kind.to_str().unwrap(), "access_denied");
        let (ops, maint) = (c("ops"), c("maintenance"));
        let ops = MedvaultAccess {
            actor: ops.as_ptr(),
            purpose: maint.as_ptr(),
            reason: ptr::null(),
            roles: ptr::null(),
            roles_len: 0,
            purpose_code: ptr::null(),
        };
        let q = c(r#"{"actor":"dr-7"}"#);
        let mut out = ptr::null_mut();
        assert_eq!(
            medvault_audit_query(v, &ops, q.as_ptr(), &mut out),
            MedvaultStatus::Ok
        );
        let entries: serde_json::Value = serde_json::from_str(&take(out)).unwrap();
        assert_eq!(entries.as_array().unwrap().len(), 1);
        assert_eq!(entries[0]["outcome"], "denied");
        assert_eq!(entries[0]["action"], "erase");
        assert_eq!(
            medvault_verify(v, &ops, ptr::null(), &mut n),
            MedvaultStatus::Ok
        );
        // create, the denied erase, the query: three entries before the verify.
        assert_eq!(n, 3);
        assert_eq!(medvault_close(v), MedvaultStatus::Ok);
    }
}

#[test]
fn json_text_comes_back_byte_for_byte() {
    // Oracle: the literal text written (number tokens, member order, escapes as given).
    let text = r#"{"z":1.50,"a":[1e3,-0.0,12345678901234567890123],"s":"\u00e9\n","n":null}"#;
    let dir = tempfile::tempdir().unwrap();
    let path = c(dir.path().join("v").to_str().unwrap());
    let (actor, care) = (c("nurse-42"), c("care"));
    let nurse = MedvaultAccess {
        actor: actor.as_ptr(),
        purpose: care.as_ptr(),
        reason: ptr::null(),
        roles: ptr::null(),
        roles_len: 0,
        purpose_code: ptr::null(),
    };
    let (s, col, id) = (c("patient-1"), c("Observation"), c("o-1"));
    let mut v: MedvaultVault = 0;
    let mut out: *mut c_char = ptr::null_mut();
    // SAFETY (this block): every pointer is a live CString, struct or local above.
    unsafe {
        assert_eq!(
            medvault_create_key(path.as_ptr(), KEY.as_ptr(), 32, ptr::null(), &mut v),
            MedvaultStatus::Ok
        );
        let json = c(text);
        let st = medvault_put(
            v,
            &nurse,
            s.as_ptr(),
            col.as_ptr(),
            id.as_ptr(),
            json.as_ptr(),
        );
        assert_eq!(st, MedvaultStatus::Ok);
        let st = medvault_get(v, &nurse, s.as_ptr(), col.as_ptr(), id.as_ptr(), &mut out);
        assert_eq!(st, MedvaultStatus::Ok);
        assert_eq!(take(out), text);
        let st = medvault_records_of(v, &nurse, s.as_ptr(), ptr::null(), &mut out);
        assert_eq!(st, MedvaultStatus::Ok);
        let expect = format!(
            r#"[{{"subject":"patient-1","collection":"Observation","record_id":"o-1","value":{text}}}]"#
        );
        assert_eq!(take(out), expect);
        assert_eq!(medvault_close(v), MedvaultStatus::Ok);
    }
}
