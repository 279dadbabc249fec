//! Exact JSON (issue "exact fidelity"): `medvault::json::JsonText` keeps every number and
//! string token byte for byte and member order at every level, removes only
//! insignificant whitespace, and refuses what RFC 8259 refuses plus duplicated names and
//! excess depth. Oracles: a generator that writes JSON text and knows what it wrote
//! (tokens, unescaped strings, member spans), and serde_json (verdict and meaning).
#![allow(clippy::unwrap_used)] // tests: a failure should abort the test

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use medvault::json::{self, JsonError, JsonErrorKind as K, JsonText, Limits, ObjectBuilder, Value};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------- the generator

/// A generated string: its value and the token the generator wrote for it.
#[derive(Clone, Debug)]
struct GStr {
    value: String,
    token: String,
}

/// A generated JSON value that knows its tokens.
#[derive(Clone, Debug)]
enum G {
    Null,
    Bool(bool),
    Num(String),
    Str(GStr),
    Arr(Vec<G>),
    Obj(Vec<(GStr, G)>),
}

/// Writes `c` into `out` as `how` picks: raw where JSON allows it, a short escape where
/// one exists, or `\u` escapes (lower or upper hex; a surrogate pair above the BMP).
fn write_char(c: char, how: u8, out: &mut String) {
    let short = match c {
        '"' => Some("\\\""),
        '\\' => Some("\\\\"),
        '/' => Some("\\/"),
        '\u{8}' => Some("\\b"),
        '\u{c}' => Some("\\f"),
        '\n' => Some("\\n"),
        '\r' => Some("\\r"),
        '\t' => Some("\\t"),
        _ => None,
    };
    let must_escape = c == '"' || c == '\\' || (c as u32) < 0x20;
    let u_escape = |upper: bool, out: &mut String| {
        let mut units = [0u16; 2];
        for u in c.encode_utf16(&mut units) {
            if upper {
                out.push_str(&format!("\\u{:04X}", u));
            } else {
                out.push_str(&format!("\\u{:04x}", u));
            }
        }
    };
    match (how % 4, short) {
        (0 | 1, _) if !must_escape => out.push(c),
        (0 | 1, Some(s)) => out.push_str(s),
        (2, _) => u_escape(false, out),
        (3, _) => u_escape(true, out),
        _ => u_escape(false, out),
    }
}

fn gchar() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => any::<char>(),
        2 => (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap()),
        1 => prop::sample::select(vec!['"', '\\', '/', '\u{7f}', ' ', 'é', '\u{2028}', '\u{feff}']),
        1 => (0x80u32..0x800).prop_map(|c| char::from_u32(c).unwrap()),
        1 => (0x800u32..0x10000).prop_filter_map("surrogate", char::from_u32),
        // Every supplementary plane, 1 to 16.
        2 => (1u32..=16, 0u32..0x10000).prop_map(|(p, c)| char::from_u32(p << 16 | c).unwrap()),
    ]
}

fn gstr() -> impl Strategy<Value = GStr> {
    prop::collection::vec((gchar(), any::<u8>()), 0..10).prop_map(|chars| {
        let mut token = String::from("\"");
        let mut value = String::new();
        for (c, how) in chars {
            write_char(c, how, &mut token);
            value.push(c);
        }
        token.push('"');
        GStr { value, token }
    })
}

/// Number tokens: up to 40 digits in the integer part and in the fraction (trailing zeros
/// kept), negative zero, exponents of either case and sign with leading zeros; and the
/// tokens the issue names.
fn gnum() -> impl Strategy<Value = String> {
    let int = prop_oneof![Just("0".to_owned()), "[1-9][0-9]{0,39}"];
    let frac = prop::option::of("[0-9]{1,36}0{0,4}");
    let exp = prop::option::of(("[eE]", "[+-]?", "[0-9]{1,4}"));
    let built = (any::<bool>(), int, frac, exp).prop_map(|(neg, int, frac, exp)| {
        let mut s = String::new();
        if neg {
            s.push('-');
        }
        s.push_str(&int);
        if let Some(f) = frac {
            s.push('.');
            s.push_str(&f);
        }
        if let Some((e, sign, d)) = exp {
            s.push_str(&e);
            s.push_str(&sign);
            s.push_str(&d);
        }
        s
    });
    prop_oneof![
        4 => built,
        1 => prop::sample::select(ISSUE_NUMBERS.to_vec()).prop_map(str::to_owned),
    ]
}

const ISSUE_NUMBERS: &[&str] = &[
    "1.50",
    "3.8227768159088433000",
    "-99.89053622600223",
    "123456789.123456789",
    "12345678901234567890123",
    "1e-400",
    "-0",
    "-0.0",
    "1e400",
    "0.1e-00",
    "1E+2",
];

fn gvalue() -> impl Strategy<Value = G> {
    let leaf = prop_oneof![
        Just(G::Null),
        any::<bool>().prop_map(G::Bool),
        gnum().prop_map(G::Num),
        gstr().prop_map(G::Str),
    ];
    leaf.prop_recursive(6, 96, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(G::Arr),
            prop::collection::vec((gstr(), inner), 0..6).prop_map(|ms| G::Obj(dedupe(ms))),
        ]
    })
}

fn gobject() -> impl Strategy<Value = Vec<(GStr, G)>> {
    prop::collection::vec((gstr(), gvalue()), 0..8).prop_map(dedupe)
}

/// Keeps the first member of each name (compared as the generator's values).
fn dedupe(ms: Vec<(GStr, G)>) -> Vec<(GStr, G)> {
    let mut seen = std::collections::HashSet::new();
    ms.into_iter()
        .filter(|(n, _)| seen.insert(n.value.clone()))
        .collect()
}

/// Whitespace between tokens, drawn from a seed.
struct Ws(u64);
impl Ws {
    fn next(&mut self) -> &'static str {
        const CHOICES: [&str; 8] = ["", "", "", " ", "\n", "\t", "\r\n", "  \t\n "];
        if self.0 == 0 {
            return "";
        }
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        CHOICES[(self.0 % 8) as usize]
    }
}

/// Writes `g` with whitespace from `ws` around every token (none when the seed is 0).
fn render(g: &G, ws: &mut Ws, out: &mut String) {
    match g {
        G::Null => out.push_str("null"),
        G::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        G::Num(n) => out.push_str(n),
        G::Str(s) => out.push_str(&s.token),
        G::Arr(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(ws.next());
                    out.push(',');
                }
                out.push_str(ws.next());
                render(v, ws, out);
                out.push_str(ws.next());
            }
            out.push_str(ws.next());
            out.push(']');
        }
        G::Obj(ms) => {
            out.push('{');
            for (i, (n, v)) in ms.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(ws.next());
                out.push_str(&n.token);
                out.push_str(ws.next());
                out.push(':');
                out.push_str(ws.next());
                render(v, ws, out);
                out.push_str(ws.next());
            }
            out.push_str(ws.next());
            out.push('}');
        }
    }
}

fn compact(g: &G) -> String {
    let mut s = String::new();
    render(g, &mut Ws(0), &mut s);
    s
}

fn spaced(g: &G, seed: u64) -> String {
    let mut ws = Ws(seed | 1);
    let mut s = ws.next().to_owned();
    render(g, &mut ws, &mut s);
    s.push_str(ws.next());
    s
}

/// Asserts the tree holds exactly what the generator wrote.
fn same_tree(v: &Value<'_>, g: &G) {
    assert_eq!(v.raw(), compact(g));
    match (v, g) {
        (Value::Null, G::Null) => {}
        (Value::Bool(a), G::Bool(b)) => assert_eq!(a, b),
        (Value::Number(n), G::Num(t)) => assert_eq!(n.as_text(), t),
        (Value::String(s), G::Str(t)) => {
            assert_eq!(s.token(), t.token);
            assert_eq!(&*s.unescape(), t.value);
            assert!(s.eq_str(&t.value));
        }
        (Value::Array(a), G::Arr(items)) => {
            assert_eq!(a.len(), items.len());
            for (x, y) in a.items().iter().zip(items) {
                same_tree(x, y);
            }
        }
        (Value::Object(o), G::Obj(ms)) => {
            assert_eq!(o.len(), ms.len());
            for (m, (n, y)) in o.members().iter().zip(ms) {
                assert_eq!(m.name.token(), n.token);
                assert_eq!(&*m.name.unescape(), n.value);
                same_tree(&m.value, y);
            }
            for (n, y) in ms {
                assert_eq!(o.get(&n.value).unwrap().raw(), compact(y));
            }
        }
        (v, g) => panic!("kind differs: {v:?} vs {g:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The canonical text is what the generator wrote minus its whitespace; the tree,
    /// the member split and serde_json all agree with the generator.
    #[test]
    fn generated_text_survives(g in gvalue(), seed in any::<u64>()) {
        let input = spaced(&g, seed);
        let text = JsonText::parse(&input).unwrap();
        prop_assert_eq!(text.as_str(), compact(&g));
        same_tree(&text.tree(), &g);
        assert!(json::testing::check(input.as_bytes()));
        // Indented for people, the tokens stay: it parses back to the same text.
        let pretty = text.pretty();
        prop_assert_eq!(JsonText::parse(pretty.as_bytes()).unwrap(), text);
    }

    /// An object splits into the generator's members (name token, exact value text) and
    /// joins back to the same text.
    #[test]
    fn objects_split_and_join(ms in gobject(), seed in any::<u64>()) {
        let g = G::Obj(ms.clone());
        let text = JsonText::parse(spaced(&g, seed)).unwrap();
        let got: Vec<(String, String)> = text
            .members()
            .unwrap()
            .map(|(n, v)| (n.token().to_owned(), v.to_owned()))
            .collect();
        let want: Vec<(String, String)> =
            ms.iter().map(|(n, v)| (n.token.clone(), compact(v))).collect();
        prop_assert_eq!(got, want);
        let joined =
            JsonText::from_members(text.members().unwrap().map(|(n, v)| (n.raw(), v))).unwrap();
        prop_assert_eq!(joined, text);
    }

    /// A second member whose name unescapes like an earlier one's (written with other
    /// escapes) is refused, at the second name's offset and at its depth.
    #[test]
    fn duplicate_names_are_refused_where_they_are(
        ms in gobject().prop_filter("a member", |m| !m.is_empty()),
        pick in any::<prop::sample::Index>(),
        hows in prop::collection::vec(any::<u8>(), 16),
        nest in 0usize..5,
    ) {
        let src = pick.index(ms.len());
        let mut token = String::from("\"");
        for (c, how) in ms[src].0.value.chars().zip(hows.iter().cycle()) {
            write_char(c, *how, &mut token);
        }
        token.push('"');
        let mut before = "[".repeat(nest);
        before.push('{');
        for (n, v) in &ms {
            before.push_str(&n.token);
            before.push(':');
            before.push_str(&compact(v));
            before.push(',');
        }
        let input = format!("{before}{token}:null}}{}", "]".repeat(nest));
        let e = JsonText::parse(&input).unwrap_err();
        prop_assert_eq!(e.kind(), K::DuplicateName);
        prop_assert_eq!(e.offset(), before.len());
        prop_assert_eq!(e.depth(), nest + 1);
        // serde_json accepts it (the last one wins): the refusal is ours alone (unless
        // a number is beyond f64, which serde_json refuses).
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&input) {
            prop_assert!(e.to_string().starts_with("number out of range"), "{}", e);
        }
    }

    /// Mutated text: medvault and serde_json reach the same verdict (modulo the
    /// documented differences), and what both accept means the same.
    #[test]
    fn mutated_text_agrees_with_serde_json(
        g in gvalue(),
        seed in any::<u64>(),
        edits in prop::collection::vec((0u8..5, any::<prop::sample::Index>(), any::<prop::sample::Index>()), 1..4),
    ) {
        let mut bytes = spaced(&g, seed).into_bytes();
        for (op, at, what) in edits {
            mutate(&mut bytes, op, at, what);
        }
        prop_assert!(json::testing::check(&bytes));
    }
}

/// Bytes that steer a mutation towards the grammar's edges.
const INTERESTING: &[u8] = b"{}[]\",:\\/0123456789-+.eEtrufalsn \t\r\n\x00\x01\x1f\x7f\x80\xbf\xc0\xc3\xe0\xed\xa0\xf0\xf4\xff";

fn mutate(b: &mut Vec<u8>, op: u8, at: prop::sample::Index, what: prop::sample::Index) {
    let byte = INTERESTING[what.index(INTERESTING.len())];
    match op {
        0 if !b.is_empty() => {
            b.remove(at.index(b.len()));
        }
        1 => {
            let i = at.index(b.len() + 1);
            b.insert(i, byte);
        }
        2 if !b.is_empty() => {
            let i = at.index(b.len());
            b[i] = byte;
        }
        3 => b.truncate(at.index(b.len() + 1)),
        4 if !b.is_empty() => {
            // Duplicate a span (repeats members, escapes, brackets).
            let i = at.index(b.len());
            let j = (i + what.index(16) + 1).min(b.len());
            let span = b[i..j].to_vec();
            b.splice(j..j, span);
        }
        _ => {}
    }
}

// ---------------------------------------------------------------- fixed cases

/// The values the issue reports as altered come back as written, inside a record.
#[test]
fn issue_numbers_survive() {
    for n in ISSUE_NUMBERS {
        let input = format!("{{ \"valueQuantity\" : {{ \"value\" : {n} }} }}");
        let text = JsonText::parse(&input).unwrap();
        assert_eq!(
            text.as_str(),
            format!("{{\"valueQuantity\":{{\"value\":{n}}}}}")
        );
        let tree = text.tree();
        let v = tree.get("valueQuantity").unwrap().get("value").unwrap();
        assert_eq!(v.as_number().unwrap().as_text(), *n);
    }
}

/// Whitespace inside strings, escapes and member order are kept; whitespace between
/// tokens is not.
#[test]
fn only_insignificant_whitespace_goes() {
    let input = " {\"z\" : \" a\\tb \\u00E9\\/\" ,\n\t\"a\":[ 1 , -0 , {} , [ ] ]\r\n} ";
    let text = JsonText::parse(input).unwrap();
    assert_eq!(
        text.as_str(),
        "{\"z\":\" a\\tb \\u00E9\\/\",\"a\":[1,-0,{},[]]}"
    );
    assert_eq!(
        *text.pretty(),
        "{\n  \"z\": \" a\\tb \\u00E9\\/\",\n  \"a\": [\n    1,\n    -0,\n    {},\n    []\n  ]\n}"
    );
    let tree = text.tree();
    let z = tree.get("z").unwrap().as_str().unwrap();
    assert_eq!(&*z.unescape(), " a\tb é/");
    assert!(tree.get("missing").is_none());
}

/// Every refusal names its kind, byte offset and depth.
#[test]
fn errors_say_where() {
    let cases: &[(&[u8], K, usize, usize)] = &[
        (b"", K::UnexpectedEnd, 0, 0),
        (b"   ", K::UnexpectedEnd, 3, 0),
        (b"{", K::UnexpectedEnd, 1, 1),
        (b"[1,]", K::ExpectedValue, 3, 1),
        (b"{\"a\":1,}", K::ExpectedName, 7, 1),
        (b"{\"a\" 1}", K::ExpectedColon, 5, 1),
        (b"[1 2]", K::ExpectedCommaOrClose, 3, 1),
        (b"[1}", K::ExpectedCommaOrClose, 2, 1),
        (b"01", K::TrailingData, 1, 0),
        (b"-", K::UnexpectedEnd, 1, 0),
        (b"-a", K::InvalidNumber, 1, 0),
        (b"1.", K::UnexpectedEnd, 2, 0),
        (b"1.e3", K::InvalidNumber, 2, 0),
        (b"1e", K::UnexpectedEnd, 2, 0),
        (b"[1e+]", K::InvalidNumber, 4, 1),
        (b"+1", K::ExpectedValue, 0, 0),
        (b".5", K::ExpectedValue, 0, 0),
        (b"[tru]", K::InvalidLiteral, 4, 1),
        (b"nul", K::UnexpectedEnd, 3, 0),
        (b"[\"a\\x\"]", K::InvalidEscape, 3, 1),
        (b"\"\\u12G4\"", K::InvalidEscape, 5, 0),
        (b"\"\\uD800\"", K::LoneSurrogate, 1, 0),
        (b"\"\\uDC00\\uD800\"", K::LoneSurrogate, 1, 0),
        (b"\"\\uD800\\u0041\"", K::LoneSurrogate, 1, 0),
        (b"\"a\tb\"", K::ControlCharacter, 2, 0),
        (b"\"a\x00\"", K::ControlCharacter, 2, 0),
        (b"\"abc", K::UnexpectedEnd, 4, 0),
        (b"\"\xff\"", K::InvalidUtf8, 1, 0),
        (b"\"\xed\xa0\x80\"", K::InvalidUtf8, 1, 0),
        (b"\xef\xbb\xbf{}", K::ExpectedValue, 0, 0),
        (b"{} {}", K::TrailingData, 3, 0),
        (b"[{\"a\":1,\"b\":2,\"a\":3}]", K::DuplicateName, 14, 2),
        (b"{\"\\u0061\":1,\"a\":2}", K::DuplicateName, 12, 1),
        (
            b"{\"a\":{\"a\":1},\"b\":{\"a\":2}}",
            K::DuplicateName,
            usize::MAX,
            0,
        ),
    ];
    for (input, kind, offset, depth) in cases {
        let got = JsonText::parse(input);
        if *offset == usize::MAX {
            assert!(
                got.is_ok(),
                "{:?}: same name in sibling objects is fine",
                input
            );
            continue;
        }
        let e = got.unwrap_err();
        assert_eq!(
            (e.kind(), e.offset(), e.depth()),
            (*kind, *offset, *depth),
            "{:?}",
            String::from_utf8_lossy(input)
        );
        // And serde_json refuses it too, except for the duplicate.
        if *kind != K::DuplicateName {
            assert!(serde_json::from_slice::<serde_json::Value>(input).is_err());
        }
    }
}

/// A duplicate in an object large enough to use the hash set is refused too.
#[test]
fn duplicates_in_large_objects() {
    let mut s = String::from("{");
    for i in 0..1000 {
        s.push_str(&format!("\"k{i}\":{i},"));
    }
    let before = s.len();
    s.push_str("\"k\\u0035\\u00300\":0}");
    let e = JsonText::parse(&s).unwrap_err();
    assert_eq!(
        (e.kind(), e.offset(), e.depth()),
        (K::DuplicateName, before, 1)
    );
    s.truncate(before - 1);
    s.push('}');
    assert_eq!(
        JsonText::parse(&s)
            .unwrap()
            .tree()
            .as_object()
            .unwrap()
            .len(),
        1000
    );
}

/// Depth is bounded (100 by default, below serde_json's 127), size too.
#[test]
fn depth_and_size_are_bounded() {
    let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert!(JsonText::parse(nest(json::DEFAULT_MAX_DEPTH)).is_ok());
    let e = JsonText::parse(nest(json::DEFAULT_MAX_DEPTH + 1)).unwrap_err();
    assert_eq!((e.kind(), e.offset(), e.depth()), (K::TooDeep, 100, 100));
    // A documented difference: serde_json still takes it.
    assert!(serde_json::from_str::<serde_json::Value>(&nest(101)).is_ok());
    // Deep input does not exhaust the stack under a raised bound.
    let deep = Limits {
        max_depth: 1_000_000,
        max_bytes: usize::MAX,
    };
    let text = JsonText::parse_with(nest(200_000).as_bytes(), deep).unwrap();
    assert_eq!(text.len(), 400_000);
    let small = Limits {
        max_depth: 10,
        max_bytes: 4,
    };
    assert!(JsonText::parse_with(b"[12]", small).is_ok());
    let e = JsonText::parse_with(b"[123]", small).unwrap_err();
    assert_eq!((e.kind(), e.offset()), (K::TooLarge, 4));
    assert_eq!(json::validate(b"[123]", small), Err(e));
}

/// Neither `Debug` nor an error message shows content.
#[test]
fn no_content_in_debug_or_errors() {
    let secret = "Zyxwvut-secret";
    let text = JsonText::parse(format!("{{\"name\":\"{secret}\",\"n\":123456789}}")).unwrap();
    let first = text.members().unwrap().next().unwrap().0;
    let shown = format!("{text:?} {:?} {first:?}", text.tree());
    assert!(
        !shown.contains(secret) && !shown.contains("123456789"),
        "{shown}"
    );
    let e = JsonText::parse(format!("{{\"name\":\"{secret}\" {secret}}}")).unwrap_err();
    assert!(!e.to_string().contains("Zyx") && !format!("{e:?}").contains("Zyx"));

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Wants {
        name: u32,
    }
    let e = text.deserialize::<Wants>().unwrap_err();
    assert_eq!(e.kind(), K::Deserialize);
    assert!(!e.to_string().contains(secret));
    // serde_json stopped on the string value's closing quote.
    assert_eq!(
        &text.as_str()[..=e.offset()],
        format!("{{\"name\":\"{secret}\"")
    );
}

/// Typed callers: `Serialize` in, `DeserializeOwned` out, through serde_json.
#[test]
fn serde_bridges() {
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Obs {
        code: String,
        value: f64,
        items: Vec<Option<i64>>,
        extra: BTreeMap<String, String>,
    }
    let o = Obs {
        code: "85354-9 \"é\" \u{1F600}\n".into(),
        value: 120.5,
        items: vec![Some(i64::MIN), None],
        extra: BTreeMap::from([("b".into(), "2".into()), ("a".into(), "1".into())]),
    };
    let text = JsonText::from_serialize(&o).unwrap();
    // serde_json's own writer is the oracle for the text.
    assert_eq!(text.as_str(), serde_json::to_string(&o).unwrap());
    assert_eq!(text.deserialize::<Obs>().unwrap(), o);

    let m = BTreeMap::from([(1u8, 2u8)]);
    assert!(
        JsonText::from_serialize(&m).is_ok(),
        "serde_json writes integer keys as strings"
    );
    let bad: BTreeMap<Vec<u8>, u8> = BTreeMap::from([(vec![1], 2)]);
    assert_eq!(
        JsonText::from_serialize(&bad).unwrap_err().kind(),
        K::Serialize
    );

    #[derive(Serialize)]
    struct Clash {
        a: u8,
        #[serde(flatten)]
        more: BTreeMap<String, u8>,
    }
    let clash = Clash {
        a: 1,
        more: BTreeMap::from([("a".into(), 2)]),
    };
    assert_eq!(
        JsonText::from_serialize(&clash).unwrap_err().kind(),
        K::DuplicateName
    );

    // A number beyond f64 is kept as text but refused by a typed read.
    let big = JsonText::parse("{\"v\":1e400}").unwrap();
    assert_eq!(
        big.deserialize::<serde_json::Value>().unwrap_err().kind(),
        K::Deserialize
    );
}

/// The builder writes members as given and validates on finish.
#[test]
fn builder_validates() {
    let mut b = ObjectBuilder::with_capacity(0);
    b.member("a", "1.50");
    b.member("b\\u00e9", "{\"x\":[-0]}");
    assert_eq!(
        b.finish().unwrap().as_str(),
        "{\"a\":1.50,\"b\\u00e9\":{\"x\":[-0]}}"
    );
    let mut b = ObjectBuilder::with_capacity(0);
    b.member("a", "1");
    b.member("\\u0061", "2");
    assert_eq!(b.finish().unwrap_err().kind(), K::DuplicateName);
    let mut b = ObjectBuilder::with_capacity(0);
    b.member("a", "01");
    assert!(b.finish().is_err());
    assert_eq!(
        ObjectBuilder::with_capacity(0).finish().unwrap().as_str(),
        "{}"
    );
    assert_eq!(
        JsonText::parse("[1]")
            .unwrap()
            .members()
            .unwrap_err()
            .kind(),
        K::NotAnObject
    );
}

/// Compact input given as an owned buffer is kept as it is.
#[test]
fn parse_owned_takes_compact_text() {
    let input = zeroize::Zeroizing::new(b"{\"a\":[1,2]}".to_vec());
    let text = JsonText::parse_owned(input, Limits::default()).unwrap();
    assert_eq!(text.as_str(), "{\"a\":[1,2]}");
    let input = zeroize::Zeroizing::new(b" { \"a\" : [ 1 , 2 ] } ".to_vec());
    let text = JsonText::parse_owned(input, Limits::default()).unwrap();
    assert_eq!(text.as_str(), "{\"a\":[1,2]}");
    let e: JsonError = JsonText::parse_owned(
        zeroize::Zeroizing::new(b"\"\xff\"".to_vec()),
        Limits::default(),
    )
    .unwrap_err();
    assert_eq!((e.kind(), e.offset()), (K::InvalidUtf8, 1));
}

// ---------------------------------------------------------------- fuzz seeds

/// Inputs for the fuzz target's seed corpus: valid texts the generator's corners reach,
/// and refusals of every kind.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut v: Vec<(&str, Vec<u8>)> = vec![
        ("fhir-observation", br#"{"resourceType":"Observation","id":"bp-1","status":"final","valueQuantity":{"value":1.50,"unit":"mmHg"},"subject":{"reference":"urn:uuid:3f2504e0-4f89-11d3-9a0c-0305e82c3301"}}"#.to_vec()),
        ("numbers", b"[1.50,-0,1e-400,1e400,12345678901234567890123,3.8227768159088433000,-99.89053622600223,0.0E+00]".to_vec()),
        ("strings", "[\"\\u00e9\\uD83D\\uDE00\\/\\b\\f\\n\\r\\t\\\"\\\\\",\"\u{10FFFF}\u{2028}\"]".as_bytes().to_vec()),
        ("spaced", b" {\n\t\"a\" : [ true , false , null ] ,\r\n \"b\" : { } } ".to_vec()),
        ("duplicate", b"{\"a\":1,\"\\u0061\":2}".to_vec()),
        ("deep", format!("{}{}", "[".repeat(101), "]".repeat(101)).into_bytes()),
        ("lone-surrogate", b"\"\\ud800x\"".to_vec()),
        ("control", b"\"a\x01\"".to_vec()),
        ("bad-utf8", b"\"\xc3\x28\"".to_vec()),
        ("trailing", b"{}x".to_vec()),
    ];
    let mut big = String::from("{");
    for i in 0..20 {
        big.push_str(&format!("\"m{i}\":{i},"));
    }
    big.push_str("\"m1\":0}");
    v.push(("duplicate-large", big.into_bytes()));
    v
}

fn seed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/json")
}

/// Replays the committed seeds of the `json` fuzz target (and the fresh ones) through the
/// target's check. `MEDVAULT_BLESS=1` rewrites the `gen-*` seeds.
#[test]
fn fuzz_seeds_replay() {
    let dir = seed_dir();
    if std::env::var_os("MEDVAULT_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds() {
            std::fs::write(dir.join(format!("gen-{name}")), bytes).unwrap();
        }
    }
    for (_, bytes) in seeds() {
        assert!(json::testing::check(&bytes));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (seeds missing?)", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= seeds().len());
    for f in files {
        assert!(
            json::testing::check(&std::fs::read(&f).unwrap()),
            "{}",
            f.display()
        );
    }
}

/// Every control character: refused raw, kept as written in each escape form it has,
/// and unescaped to itself. One character of every Unicode plane, raw and escaped.
#[test]
fn every_control_character_and_every_plane() {
    for c in (0u32..0x20).map(|c| char::from_u32(c).unwrap()) {
        let raw = format!("[\"{c}\"]");
        let e = JsonText::parse(&raw).unwrap_err();
        assert_eq!((e.kind(), e.offset()), (K::ControlCharacter, 2));
        for how in 0..4 {
            let mut token = String::from("\"");
            write_char(c, how, &mut token);
            token.push('"');
            let text = JsonText::parse(format!("[ {token} ]")).unwrap();
            assert_eq!(text.as_str(), format!("[{token}]"));
            let tree = text.tree();
            let s = tree.as_array().unwrap().items()[0].as_str().unwrap();
            assert_eq!(*s.unescape(), *c.to_string());
        }
    }
    for plane in 0u32..=16 {
        let c = char::from_u32(plane << 16 | 0xFFFD).unwrap();
        for how in 0..4 {
            let mut token = String::from("\"");
            write_char(c, how, &mut token);
            token.push('"');
            let text = JsonText::parse(&token).unwrap();
            assert_eq!(text.as_str(), token);
            assert!(
                text.tree().is_str(&c.to_string()),
                "plane {plane} form {how}"
            );
            assert_eq!(
                serde_json::from_str::<String>(&token).unwrap(),
                c.to_string()
            );
        }
    }
}

// ---------------------------------------------------------------- through the vault

/// Acceptance 3 of the issue: arbitrary JSON objects (numbers of up to 40 digits with
/// exponents, trailing zeros, negative zero; strings over every plane with every
/// escape) put into a vault and got back compare equal as text with what the generator
/// wrote: whole, by fields, and through `records_of_json`. Typed reads of the same
/// records agree with serde_json's reading of the generator's text.
#[test]
fn generated_records_survive_the_vault() {
    use medvault::storage::MemoryStorage;
    use medvault::{AccessContext, KeySource, Purpose, RecordKey, Vault, VaultOptions};
    use proptest::test_runner::{Config, TestRunner};

    let vault = Vault::create_in(
        Box::new(MemoryStorage::new()),
        KeySource::raw([9; 32]),
        VaultOptions::default(),
    )
    .unwrap();
    let ctx = AccessContext::new("json-test", Purpose::Care);
    let mut runner = TestRunner::new(Config {
        cases: 256,
        ..Config::default()
    });
    let counter = std::cell::Cell::new(0u32);
    runner
        .run(
            &(gobject(), any::<u64>(), any::<prop::sample::Index>()),
            |(ms, seed, pick)| {
                let n = counter.get() + 1;
                counter.set(n);
                let g = G::Obj(ms.clone());
                let key = RecordKey::new(format!("p{}", n % 7), "Obs", format!("r{n}"));
                let text = JsonText::parse(spaced(&g, seed)).unwrap();
                vault.put_json(&ctx, &key, &text).unwrap();
                let back = vault.get_json(&ctx, &key).unwrap();
                prop_assert_eq!(back.as_str(), compact(&g));
                // One field, asked for by its unescaped name.
                if !ms.is_empty() {
                    let (name, value) = &ms[pick.index(ms.len())];
                    let one = vault.get_fields_json(&ctx, &key, &[&name.value]).unwrap();
                    prop_assert_eq!(
                        one.as_str(),
                        format!("{{{}:{}}}", name.token, compact(value))
                    );
                }
                // Typed reads see what serde_json sees in the generator's text, unless
                // a number is beyond f64 (refused by the typed read, kept by the text).
                match serde_json::from_str::<serde_json::Value>(&compact(&g)) {
                    Ok(want) => {
                        let got: serde_json::Value = vault.get(&ctx, &key).unwrap();
                        prop_assert_eq!(got, want);
                    }
                    Err(_) => prop_assert!(vault.get::<serde_json::Value>(&ctx, &key).is_err()),
                }
                let all = vault
                    .records_of_json(&ctx, &key.subject, Some("Obs"))
                    .unwrap();
                let mine = all.iter().find(|(k, _)| *k == key).unwrap();
                prop_assert_eq!(mine.1.as_str(), compact(&g));
                Ok(())
            },
        )
        .unwrap();
}

/// The issue's examples through the vault: what `put_json` stores, `get_json` returns.
#[test]
fn issue_examples_through_the_vault() {
    use medvault::storage::MemoryStorage;
    use medvault::{AccessContext, KeySource, Purpose, RecordKey, Vault, VaultOptions};
    let vault = Vault::create_in(
        Box::new(MemoryStorage::new()),
        KeySource::raw([8; 32]),
        VaultOptions::default(),
    )
    .unwrap();
    let ctx = AccessContext::new("json-test", Purpose::Care);
    let texts = [
        r#"{"valueQuantity":{"value":1.50}}"#,
        r#"{"value":3.8227768159088433000,"longitude":-99.89053622600223}"#,
        r#"{"a":123456789.123456789,"b":12345678901234567890123,"c":1e-400,"d":-0,"e":1e400}"#,
        r#"{"z":1,"a":{"y":2,"b":[3,{"x":"\u00e9\ud83d\ude00\/"}]}}"#,
    ];
    for (i, t) in texts.iter().enumerate() {
        let key = RecordKey::new("p", "Obs", format!("o{i}"));
        vault
            .put_json(&ctx, &key, &JsonText::parse(t).unwrap())
            .unwrap();
        assert_eq!(vault.get_json(&ctx, &key).unwrap().as_str(), *t);
    }
    let dup = JsonText::parse(r#"{"a":1,"a":2}"#).unwrap_err();
    assert_eq!(dup.kind(), K::DuplicateName);
    // A typed value goes through serde_json's writer.
    let key = RecordKey::new("p", "Obs", "typed");
    vault
        .put(&ctx, &key, &serde_json::json!({"b": 1, "a": [true, null]}))
        .unwrap();
    assert_eq!(
        vault.get_json(&ctx, &key).unwrap().as_str(),
        r#"{"a":[true,null],"b":1}"#
    );
}

proptest! {
    /// Regression (model test, step "womy"): a typed value's f64 written by serde_json
    /// and read back through the exact text is the same f64 (serde_json parses with
    /// `float_roundtrip`; without it `-8.736309982439528e-301` read back as ...527e-301).
    #[test]
    fn typed_floats_round_trip(x in any::<f64>().prop_filter("finite", |x| x.is_finite())) {
        let text = JsonText::from_serialize(&serde_json::json!({"v": x})).unwrap();
        let back: BTreeMap<String, f64> = text.deserialize().unwrap();
        prop_assert_eq!(back["v"].to_bits(), x.to_bits());
    }
}

/// Guards the bug the `record` fuzz target found: a member value that is not exactly one
/// JSON token (`0,"x":0`) joined into a valid object with a member nobody appended.
#[test]
fn a_joined_member_cannot_splice_in_another() {
    use medvault::json::{JsonErrorKind, ObjectBuilder};
    let mut b = ObjectBuilder::with_capacity(32);
    b.member("f", "0,\"n83,xau00elue\":0");
    let err = b.finish().expect_err("a spliced member must be refused");
    assert_eq!(err.kind(), JsonErrorKind::SplicedMember);
    let mut b = ObjectBuilder::with_capacity(32);
    b.member("a\":1,\"b", "2");
    assert!(
        b.finish().is_err(),
        "a name holding a member must be refused"
    );
    let mut b = ObjectBuilder::with_capacity(32);
    b.member("a", "1");
    b.member("b", "[2,3]");
    assert_eq!(
        b.finish().expect("two plain members join").as_str(),
        "{\"a\":1,\"b\":[2,3]}"
    );
}
