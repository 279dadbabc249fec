//! The C ABI under a vault access policy (docs/POLICY.md): the binding reaches records
//! only through the core's read and write paths, so the policy holds there too. An
//! access struct without a role (`roles_len` 0) is refused under the default clinic
//! policy on every record call (rule `no-role`), returns no data, and leaves a denied
//! entry; the vault created and read back through the Rust API (an independent path) is
//! unchanged. Roles allowed and refused, partial reads and the erasure memory through
//! the C ABI are tested from C: tests/c/policy_roles.c (run by .ci/c-abi).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is the report
#![allow(unsafe_code)] // calling the C ABI from Rust, with valid pointers only

use std::ffi::{CStr, CString, c_char};
use std::ptr;

use medvault::{
    AccessContext, Action, KeySource, LogQuery, Outcome, Policy, Purpose, RecordKey, Vault,
    VaultOptions,
};
use medvault_ffi::*;
use serde_json::{Value, json};

const KEY: [u8; 32] = [9; 32];

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn admin() -> AccessContext {
    AccessContext::new("admin-1", Purpose::Administration).with_role("administration")
}

#[test]
fn record_calls_through_the_c_abi_obey_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let vdir = dir.path().join("v");
    let key = RecordKey::new("p1", "Patient", "p1");
    let record = json!({"resourceType": "Patient", "id": "p1", "birthDate": "1970-01-01"});
    {
        let v = Vault::create_with(
            &vdir,
            KeySource::raw(KEY),
            VaultOptions {
                policy: Some(Policy::default_clinic()),
                opener: admin(),
                kdf: medvault::danger::insecure_kdf_params(),
                ..VaultOptions::default()
            },
        )
        .unwrap();
        let dr = AccessContext::new("dr-a", Purpose::Care).with_role("care");
        v.put(&dr, &key, &record).unwrap();
    }
    let path = c(vdir.to_str().unwrap());
    let (actor, care) = (c("nurse-42"), c("care"));
    let nurse = MedvaultAccess {
        actor: actor.as_ptr(),
        purpose: care.as_ptr(),
        reason: ptr::null(),
        roles: ptr::null(),
        roles_len: 0,
        purpose_code: ptr::null(),
    };
    let (s, col, id) = (c("p1"), c("Patient"), c("p1"));
    let mut v: MedvaultVault = 0;
    let mut out: *mut c_char = ptr::null_mut();
    // SAFETY (this block): every pointer is a live CString, struct or local above.
    unsafe {
        assert_eq!(
            medvault_open_key(path.as_ptr(), KEY.as_ptr(), 32, &nurse, &mut v),
            MedvaultStatus::Ok
        );
        let st = medvault_get(v, &nurse, s.as_ptr(), col.as_ptr(), id.as_ptr(), &mut out);
        assert_eq!(st, MedvaultStatus::AccessDenied);
        assert!(out.is_null(), "a denied read returns no data");
        let msg = CStr::from_ptr(medvault_last_error_message())
            .to_string_lossy()
            .into_owned();
        assert!(msg.contains("no-role"), "{msg}");
        let st = medvault_records_of(v, &nurse, s.as_ptr(), ptr::null(), &mut out);
        assert_eq!(st, MedvaultStatus::AccessDenied);
        assert!(out.is_null());
        let json = c(r#"{"resourceType":"Patient","id":"p1"}"#);
        let st = medvault_put(
            v,
            &nurse,
            s.as_ptr(),
            col.as_ptr(),
            id.as_ptr(),
            json.as_ptr(),
        );
        assert_eq!(st, MedvaultStatus::AccessDenied);
        assert_eq!(medvault_close(v), MedvaultStatus::Ok);
    }
    let v = Vault::open_with(
        &vdir,
        KeySource::raw(KEY),
        VaultOptions {
            opener: admin(),
            ..VaultOptions::default()
        },
    )
    .unwrap();
    let dr = AccessContext::new("dr-a", Purpose::Care).with_role("care");
    assert_eq!(v.get::<Value>(&dr, &key).unwrap(), record);
    let log = v.audit_query(&admin(), &LogQuery::default()).unwrap();
    let denied: Vec<(Action, &str)> = log
        .iter()
        .filter(|e| e.actor == "nurse-42" && e.outcome == Outcome::Denied)
        .map(|e| (e.action, e.note.as_str()))
        .collect();
    assert_eq!(
        denied,
        vec![
            (Action::Read, "denied by rule no-role"),
            (Action::Read, "denied by rule no-role"),
            (Action::Write, "denied by rule no-role"),
        ]
    );
}
