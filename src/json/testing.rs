//! The checks behind the `json` fuzz target (fuzz/fuzz_targets/json.rs) and its seed
//! replay (tests/json_exact.rs). Hidden, not API. The oracle is serde_json: an
//! independent parser, compared on verdict and on meaning.

use serde_json::Value as Serde;

use super::{JsonErrorKind as K, JsonText, Value};

/// Parses `data` with [`JsonText::parse`] and with serde_json and panics when they
/// disagree beyond medvault's documented differences: medvault also refuses duplicated
/// member names and nesting beyond its depth bound; serde_json also refuses numbers
/// outside `f64` (which medvault keeps as text). When both accept: the canonical text
/// means what the input meant, reparses to itself, holds no whitespace outside strings,
/// its tree mirrors serde_json's value, and an object splits into members that join back
/// to it. Returns true (for `assert!` in tests).
pub fn check(data: &[u8]) -> bool {
    let ours = JsonText::parse(data);
    let theirs = serde_json::from_slice::<Serde>(data);
    match (ours, theirs) {
        (Ok(text), Ok(value)) => check_accepted(&text, &value),
        (Err(e), Ok(_)) => assert!(
            matches!(e.kind(), K::DuplicateName | K::TooDeep),
            "serde_json accepts what medvault refuses: {e}"
        ),
        (Ok(text), Err(e)) => {
            assert!(
                e.to_string().starts_with("number out of range"),
                "medvault accepts what serde_json refuses: {e}"
            );
            check_canonical(&text);
        }
        (Err(e), Err(_)) => assert!(e.offset() <= data.len(), "offset past the end: {e}"),
    }
    true
}

fn check_accepted(text: &JsonText, value: &Serde) {
    let again: Serde = serde_json::from_str(text.as_str()).expect("canonical text parses");
    assert!(again == *value, "the canonical text changed the meaning");
    check_canonical(text);
    let tree = text.tree();
    assert_eq!(tree.raw(), text.as_str());
    mirror(&tree, value);
}

fn check_canonical(text: &JsonText) {
    let again = JsonText::parse(text.as_bytes()).expect("canonical text reparses");
    assert!(again == *text, "canonical form is not a fixed point");
    let mut in_string = false;
    let mut escaped = false;
    for &c in text.as_bytes() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else {
            assert!(
                !matches!(c, b' ' | b'\t' | b'\n' | b'\r'),
                "whitespace kept"
            );
            in_string = c == b'"';
        }
    }
    if let Ok(members) = text.members() {
        let joined =
            JsonText::from_members(members.map(|(n, v)| (n.raw(), v))).expect("members join");
        assert!(joined == *text, "split then join changed the text");
    }
}

/// Asserts that the tree means what serde_json's value means.
fn mirror(ours: &Value<'_>, theirs: &Serde) {
    match (ours, theirs) {
        (Value::Null, Serde::Null) => {}
        (Value::Bool(a), Serde::Bool(b)) => assert_eq!(a, b),
        (Value::Number(n), Serde::Number(_)) => {
            let v: Serde = serde_json::from_str(n.as_text()).expect("a number token parses");
            assert!(v == *theirs, "number token differs");
        }
        (Value::String(s), Serde::String(t)) => assert!(*s.unescape() == **t, "string differs"),
        (Value::Array(a), Serde::Array(t)) => {
            assert_eq!(a.len(), t.len());
            for (x, y) in a.items().iter().zip(t) {
                mirror(x, y);
            }
        }
        (Value::Object(o), Serde::Object(t)) => {
            assert_eq!(o.len(), t.len(), "member count differs");
            for m in o.members() {
                let y = t
                    .get(&*m.name.unescape())
                    .expect("member present in serde_json");
                mirror(&m.value, y);
            }
        }
        (a, _) => panic!("kind differs: ours {a:?}"),
    }
}
