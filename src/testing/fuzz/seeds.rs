//! The decoder targets' seeds (see [`decoder_seeds`]).

use super::*;

/// A valid input for every decoder target and mode, built with the fixture keys: part of
/// the seed corpus committed under `fuzz/seeds/<target>/` (the rest comes from
/// `medvault_testkit::seeds`; regenerate with `MEDVAULT_BLESS=1 cargo test --test
/// fuzz_seeds`). Nonces are random, so each generation differs in bytes but not in
/// meaning. Returns `(target, name, bytes)`.
pub fn decoder_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out: Vec<(&'static str, String, Vec<u8>)> = super::logstore::logstore_seeds();
    let with_mode = |mode: u8, b: &[u8]| {
        let mut v = vec![mode];
        v.extend_from_slice(b);
        v
    };

    // header
    let expect = |r: crate::Result<(Header, crate::header::Unlocked)>| match r {
        Ok(x) => x,
        Err(e) => panic!("seed: {e}"),
    };
    let (h, u) = expect(Header::create(&KeySource::raw(ROOT), KdfParams::default()));
    let raw = h.encode(&u.root);
    for mode in 0..3 {
        out.push(("header", format!("raw-mode{mode}"), with_mode(mode, &raw)));
    }
    let (h, u) = expect(Header::create(
        &KeySource::passphrase(PASSPHRASE),
        crate::danger::insecure_kdf_params(),
    ));
    out.push((
        "header",
        "passphrase".into(),
        with_mode(0, &h.encode(&u.root)),
    ));
    let (h, u) = expect(Header::create(&KeySource::raw(ROOT), KdfParams::default()));
    if let Ok(hp) = h.with_next_kek(&u.root, &fixture_kek(u.kek.generation + 1)) {
        out.push((
            "header",
            "kek-rotating".into(),
            with_mode(2, &hp.encode(&u.root)),
        ));
    }

    // subject entry
    // (name, KEK rotation pending in the target, written under the next KEK, versions)
    for (name, with_next, write_next, versions) in [
        ("one-version", false, false, 1),
        ("two-versions", true, true, 2),
        ("old-kek-during-rotation", true, false, 2),
    ] {
        let ring = fixture_keyring(write_next);
        let keys = match ring.load_or_create(&TAG, SUBJECT, |_| Ok(None)) {
            Ok(k) => k,
            Err(e) => panic!("seed: {e}"),
        };
        for _ in 1..versions {
            let _ = ring.add_version(&keys);
        }
        out.push((
            "subject_entry",
            name.into(),
            with_mode(u8::from(with_next), &ring.encode_entry(&keys)),
        ));
    }

    // record
    let key = RecordKey::new(SUBJECT, "Observation", "obs-1");
    let whole = r#"{"code":"85354-9","value":1.50,"note":null,"list":[1,2.5e-400,"x\u00e9"],"big":12345678901234567890123}"#;
    let fields = match JsonText::parse(whole)
        .map_err(Error::from)
        .and_then(|t| split_json(&t))
    {
        Ok(f) => f,
        Err(e) => panic!("seed: {e}"),
    };
    for version in [1, 2] {
        out.push((
            "record",
            format!("value-v{version}"),
            with_mode(0, &seal_fixture_record(&key, version, &fields)),
        ));
    }
    // An opened meta block (record format 3: varint lengths and count).
    let mut meta = Vec::new();
    for s in ["Observation", "obs-1"] {
        meta.push(s.len() as u8);
        meta.extend_from_slice(s.as_bytes());
    }
    meta.push(2);
    for s in ["code", "value"] {
        meta.push(s.len() as u8);
        meta.extend_from_slice(s.as_bytes());
    }
    let mut m = vec![1, 2];
    m.extend_from_slice(&meta);
    out.push(("record", "meta".into(), m));
    for (i, f) in fields.iter().enumerate() {
        out.push(("record", format!("json-{i}"), with_mode(2, &f.value)));
    }
    out.push((
        "record",
        "json-object".into(),
        with_mode(2, whole.as_bytes()),
    ));
    out.push((
        "record",
        "json-spaced".into(),
        with_mode(
            2,
            b" { \"a\" : [ 1 , -0 ] ,\n \"b\\u0062\" : \"\\ud83d\\ude00\" } ",
        ),
    ));

    // log
    {
        let ctx = AccessContext::new("nurse", Purpose::Care);
        let btg = AccessContext::new("dr", Purpose::Emergency).with_reason("why");
        let t = Target {
            subject: SUBJECT.into(),
            collection: Some("Observation".into()),
            record_id: Some("obs-1".into()),
            fields: vec!["code".into(), "value".into()],
        };
        let mut e1 = PendingEntry::new(&ctx, Action::Write, Outcome::Ok);
        e1.subject = Some((
            TAG,
            crate::audit::seal_target(&audit_key(), &VAULT_ID, &TAG, &t),
        ));
        let mut e2 = PendingEntry::new(&btg, Action::Read, Outcome::Failed("not_found".into()));
        e2.subject = Some((TAG, Vec::new()));
        e2.note = "note".into();
        let e3 = PendingEntry::new(&ctx, Action::Verify, Outcome::Denied);
        let bodies: Vec<Vec<u8>> = [&e1, &e2, &e3].iter().map(|e| e.body().to_vec()).collect();
        let (mem, log, _, c) = fixture_committer(&[e1]);
        let more = vec![e2.body(), e3.body()];
        if c.commit(WriteBatch::new(), more).is_ok() && c.sync_all().is_ok() {
            let anchor: Vec<u8> = log
                .read_anchor()
                .unwrap_or_default()
                .iter()
                .map(|s| s.clone().unwrap_or_else(|| vec![0; SLOT_LEN]))
                .collect::<Vec<_>>()
                .concat();
            let marker = mem
                .get(APPLIED_MARKER_KEY)
                .ok()
                .flatten()
                .unwrap_or_default();
            let mut parts = vec![anchor, marker];
            for f in log.frames() {
                let mut b = Vec::new();
                f.encode_into(&mut b);
                parts.push(b);
            }
            out.push(("log", "three-entries".into(), with_mode(0, &frame(&parts))));
            out.push((
                "log",
                "anchor-and-marker-only".into(),
                with_mode(0, &frame(&parts[..2])),
            ));
        }
        for (i, b) in bodies.iter().enumerate() {
            out.push(("log", format!("body-{i}"), with_mode(1, b)));
        }
        let mut pt = Vec::new();
        for s in [SUBJECT, "Observation", "obs-1"] {
            crate::codec::put_lp16(&mut pt, s.as_bytes());
        }
        pt.extend_from_slice(&1u16.to_be_bytes());
        crate::codec::put_lp16(&mut pt, b"code");
        out.push(("log", "target".into(), with_mode(2, &pt)));
    }

    // checkpoint
    let (_, _, genuine) = checkpoint_fixture();
    if let Some(cp) = genuine.last() {
        out.push(("checkpoint", "bytes".into(), with_mode(0, &cp.to_bytes())));
        out.push((
            "checkpoint",
            "text".into(),
            with_mode(0, cp.to_text().as_bytes()),
        ));
    }
    for (i, g) in genuine.iter().enumerate() {
        let mut b = vec![1];
        b.extend_from_slice(&g.next_seq.to_be_bytes());
        b.extend_from_slice(&g.link);
        out.push(("checkpoint", format!("point-{i}"), b));
    }

    // index
    let mem = MemoryStorage::new();
    if let Ok(reg) = index_registry(&mem) {
        let specs = [
            crate::IndexSpec::new(
                "Patient",
                "by-name",
                &["name[].family", "birthDate"],
                crate::Normalization::Name,
            ),
            crate::IndexSpec::new(
                "Observation",
                "by-code",
                &["code.coding[].code"],
                crate::Normalization::Identifier,
            )
            .map(|s| s.truncated(20)),
        ];
        for (i, spec) in specs.into_iter().flatten().enumerate() {
            for (j, state) in [
                crate::index::BuildState::Ready,
                crate::index::BuildState::Building {
                    cursor: Some(vec![b'r'; 33]),
                },
            ]
            .into_iter()
            .enumerate()
            {
                let def = reg.make(spec.clone(), state);
                let mut b = vec![1];
                b.extend_from_slice(&def.id);
                b.extend_from_slice(&reg.seal(&def));
                out.push(("index", format!("def-{i}-{j}"), b));
            }
            for (k, p) in spec.parts.iter().enumerate() {
                let text = p.to_string();
                out.push((
                    "index",
                    format!("path-{i}-{k}"),
                    with_mode(2, text.as_bytes()),
                ));
            }
        }
        // Entries are index id (8) || value hash (1 to 16 bytes).
        let fwd = vec![vec![7u8; 8 + 16], vec![9u8; 8 + 3]];
        out.push((
            "index",
            "reverse".into(),
            with_mode(0, &crate::index::encode_reverse(&fwd)),
        ));
    }
    out
}
