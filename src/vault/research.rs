//! The research export guard on the façade (docs/RESEARCH.md): `research_export`, the
//! patient's objection to secondary use, and the destruction of a project's pseudonym
//! key. The pure parts (specification, minimization, k-anonymity, pseudonyms) are in
//! [`crate::research`].

use std::sync::Arc;

use super::commit::{Flush, noted};
use super::governance::OpenFor;
use super::records::Opening;
use super::{Vault, lock};
use crate::audit::{Action, Outcome, PendingEntry, Target, now_ms};
use crate::context::{AccessContext, Purpose};
use crate::crypto::SecretKey;
use crate::error::{Denial, Error, InputKind, Result, Structure};
use crate::json::JsonText;
use crate::keyring::{SubjectKeys, SubjectTag};
use crate::keyspace;
use crate::record::RecordKey;
use crate::research::reference_byte;
use crate::research::{
    DropCounts, Manifest, ProjectPseudonyms, QuasiIdentifiers, RESEARCH_PURPOSE, ResearchExport,
    ResearchPolicy, ResearchRequest, k_anonymity, minimize, open_objection, open_seed,
    rule_sentences, rules, seal_objection, seal_seed, year_of_ms,
};
use crate::storage::{WriteBatch, prefix_end};

/// Refuses a project id or an authorization reference holding a byte outside the
/// charset of [`crate::research::valid_reference`] (empty, blank or long ones are
/// refused by the guard's own rules).
fn check_references(project: &str, authorization: &str) -> Result<()> {
    let bad = |s: &str| !s.bytes().all(reference_byte);
    if bad(project) || bad(authorization) {
        return Err(Error::invalid(
            InputKind::Context,
            "a research project id or authorization reference must be 1 to 128 bytes of printable ASCII without ';', '=' or '`' (docs/RESEARCH.md)",
        ));
    }
    Ok(())
}

/// One patient read for an export, before the k-anonymity check.
struct Candidate {
    keys: Arc<SubjectKeys>,
    subject: String,
    class: QuasiIdentifiers,
    grouped: bool,
    /// The patient's records of the specification's collections, Patient first.
    records: Vec<(RecordKey, JsonText)>,
}

impl Vault {
    fn research_denied(&self, rule: &str) -> Error {
        Error::AccessDenied(Denial::Policy {
            rule: rule.to_owned(),
            version: self.policy.version(),
        })
    }

    /// Exports data for secondary use (research) under the guard of docs/RESEARCH.md:
    /// the only way patient data leaves the vault for a research project.
    ///
    /// Requires: `ctx`'s purpose of use `HRESCH` (and, under a policy, a role that may
    /// invoke it), `req.authorization` and `req.project` (1 to 128 bytes each), a
    /// specification naming at least one collection, and no direct identifier kept
    /// unless the policy's `research.allow_identifiers` lists it. Otherwise refused with
    /// [`Error::AccessDenied`] naming the rule ([`crate::research::rules`], or the
    /// policy's `no-role`, `role-purpose`), and the refusal is logged (outcome denied).
    ///
    /// Patients are the subjects holding a Patient record whose id is the subject id.
    /// Those who objected ([`Vault::set_research_objection`]) are excluded; the others are
    /// grouped by quasi-identifiers (birth year or `90+`, gender, postal prefix, the
    /// specification's additions) and classes smaller than the policy's k (default 5)
    /// are suppressed. The kept patients' resources of the specification's collections
    /// are minimized ([`crate::research::minimize`]) with the project's pseudonyms (the
    /// project's seed is created, sealed, on its first export).
    ///
    /// Logged, in one atomic commit before anything is returned: one `export` entry
    /// naming no subject whose note is the disclosure (project, authorization, the
    /// specification's SHA-256, patients, records, k achieved, suppressed, objections),
    /// and one `export` entry per exported patient, naming them, whose reason names the
    /// project and the authorization (what their access report shows). Fails also with
    /// [`Error::Integrity`] (a record, seed or objection marker that does not open),
    /// [`Error::Storage`].
    pub fn research_export(
        &self,
        ctx: &AccessContext,
        req: &ResearchRequest,
    ) -> Result<ResearchExport> {
        // One export or key destruction at a time: a project's seed is created once.
        let _g = lock(&self.key_op_lock);
        let (export, batch, entries, keys) = self.guarded(ctx, Action::Export, None, || {
            if ctx.purpose_of_use() != RESEARCH_PURPOSE || ctx.purpose != Purpose::Research {
                return Err(self.research_denied(rules::PURPOSE));
            }
            let policy: ResearchPolicy = self
                .policy
                .get()
                .map(|(_, p)| p.research.clone())
                .unwrap_or_default();
            check_references(&req.project, &req.authorization)?;
            req.check(&policy)
                .map_err(|rule| self.research_denied(rule))?;
            self.build_research_export(ctx, req, &policy)
        })?;
        let subs: Vec<&Arc<SubjectKeys>> = keys.iter().collect();
        let r = self.commit(batch, entries, &subs, Flush::Write);
        if r.is_err() {
            self.log_failure(ctx, Action::Export, None, &r);
        }
        r?;
        Ok(export)
    }

    #[allow(clippy::type_complexity)]
    fn build_research_export(
        &self,
        ctx: &AccessContext,
        req: &ResearchRequest,
        policy: &ResearchPolicy,
    ) -> Result<(
        ResearchExport,
        WriteBatch,
        Vec<PendingEntry>,
        Vec<Arc<SubjectKeys>>,
    )> {
        let spec = &req.spec;
        let k = policy.k.max(1);
        let mut batch = WriteBatch::new();
        let seed = self.project_seed(&req.project, &mut batch)?;
        let names = ProjectPseudonyms::new(&seed, &req.project);
        let reference_year = spec.reference_year.unwrap_or_else(|| year_of_ms(now_ms()));

        let mut candidates = Vec::new();
        let mut excluded = 0usize;
        let (start, end) = keyspace::prefix_range(keyspace::SUBJECT_PREFIX);
        let tags: Vec<SubjectTag> = self
            .storage
            .scan(&start, Some(&end))
            .map(|item| {
                let (k, _) = item?;
                k.get(1..17)
                    .and_then(|s| <[u8; 16]>::try_from(s).ok())
                    .map(SubjectTag::from)
                    .ok_or_else(|| {
                        Error::integrity(Structure::SubjectEntry, "storage key malformed")
                    })
            })
            .collect::<Result<_>>()?;
        for tag in tags {
            let Some(keys) = self.keyring.load(&tag, self.read_fn())? else {
                continue;
            };
            let subject = keys.subject.to_string();
            let mut records = self.research_records(&keys, spec)?;
            let Some(pos) = records
                .iter()
                .position(|(k, _)| k.collection == "Patient" && k.record_id == subject)
            else {
                // Not a patient (e.g. the shared subject of organizations).
                continue;
            };
            if self.objected(&tag)? {
                excluded += 1;
                continue;
            }
            let patient = records.remove(pos);
            let (class, grouped) = QuasiIdentifiers::of(&patient.1, spec, reference_year);
            records.insert(0, patient);
            candidates.push(Candidate {
                keys,
                subject,
                class,
                grouped,
                records,
            });
        }

        let classes: Vec<QuasiIdentifiers> = candidates.iter().map(|c| c.class.clone()).collect();
        let (keep, k_achieved) = k_anonymity(&classes, k);
        let mut resources = Vec::new();
        let mut changes = DropCounts::default();
        let (mut patients, mut suppressed, mut suppressed_records, mut grouped) = (0, 0, 0, 0);
        let mut entries = Vec::new();
        let mut keys_used = Vec::new();
        let disclosure = format!(
            "research export: project {}; authorization {}",
            req.project, req.authorization
        );
        for (c, kept) in candidates.into_iter().zip(keep) {
            let exported: Vec<&(RecordKey, JsonText)> = c
                .records
                .iter()
                .filter(|(k, _)| spec.collection(&k.collection).is_some())
                .collect();
            if !kept {
                suppressed += 1;
                suppressed_records += exported.len();
                continue;
            }
            patients += 1;
            grouped += usize::from(c.grouped);
            let mut n = 0usize;
            let shift = names.shift_days(&c.subject);
            for (key, text) in exported {
                let Some((min, counts)) =
                    minimize(text, &key.collection, spec, &names, c.grouped, shift)
                else {
                    continue;
                };
                changes.add(&counts);
                resources.push((key.collection.clone(), min));
                n += 1;
            }
            let target = Target {
                subject: c.subject.clone(),
                collection: None,
                record_id: None,
                fields: spec
                    .collections
                    .iter()
                    .map(|s| s.collection.clone())
                    .collect(),
            };
            let mut e = self.entry_for(
                ctx,
                Action::Export,
                Outcome::Ok,
                Some(&c.keys),
                None,
                Some(&target),
            );
            e.reason = Some(disclosure.clone());
            e.note = format!(
                "research disclosure: project={}; authorization={}; records={n}",
                req.project, req.authorization
            );
            entries.push(e);
            keys_used.push(c.keys.clone());
        }
        let manifest = Manifest {
            kind: "medvault research export".to_owned(),
            project: req.project.clone(),
            authorization: req.authorization.clone(),
            specification: spec.clone(),
            specification_digest: spec.digest(),
            rules: rule_sentences(spec, k),
            reference_year,
            k_required: k,
            k_achieved,
            patients,
            records: resources.len(),
            suppressed_patients: suppressed,
            suppressed_records,
            excluded_objections: excluded,
            ages_grouped: grouped,
            changes,
        };
        let summary = noted(
            ctx,
            Action::Export,
            format!(
                "research disclosure: project={}; authorization={}; spec=sha256:{}; patients={}; records={}; k={} (required {}); suppressed={}; objections={}",
                manifest.project,
                manifest.authorization,
                manifest.specification_digest,
                manifest.patients,
                manifest.records,
                manifest.k_achieved,
                manifest.k_required,
                manifest.suppressed_patients,
                manifest.excluded_objections
            ),
        );
        entries.insert(0, summary);
        Ok((
            ResearchExport {
                resources,
                manifest,
            },
            batch,
            entries,
            keys_used,
        ))
    }

    /// Every record of the subject of `keys` in a collection of `spec` or `Patient`, as
    /// exact JSON; the other records are not decrypted.
    fn research_records(
        &self,
        keys: &SubjectKeys,
        spec: &crate::research::DataSpec,
    ) -> Result<Vec<(RecordKey, JsonText)>> {
        let prefix = keyspace::subject_records(&keys.tag);
        let end = prefix_end(&prefix);
        let mut out = Vec::new();
        for item in self.storage.scan(&prefix, end.as_deref()) {
            let (k, v) = item?;
            let opened = self.with_opened(
                keys,
                &k,
                None,
                &v,
                &Opening {
                    reader: &OpenFor::ResearchExport,
                    fields: None,
                    only_collection: None,
                },
                |sealed, dek, bind, meta, key, want| {
                    if key.collection != "Patient" && spec.collection(&key.collection).is_none() {
                        return Ok(None);
                    }
                    Ok(Some((key, sealed.open_json(dek, bind, meta, want)?.0)))
                },
            )?;
            if let Some(Some(r)) = opened {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The seed of `project`: opened from the vault, or made at random and put into
    /// `batch` (committed with the export's entries).
    fn project_seed(&self, project: &str, batch: &mut WriteBatch) -> Result<SecretKey> {
        let sk = keyspace::research_seed(&self.pseudonyms, project);
        let vid = self.vault_id.as_bytes();
        match self.storage.get(&sk)? {
            Some(bytes) => open_seed(&self.vault_secret, vid, &sk, &bytes),
            None => {
                let seed = SecretKey::random();
                batch.put(sk.clone(), seal_seed(&self.vault_secret, vid, &sk, &seed));
                Ok(seed)
            }
        }
    }

    /// Whether the subject tagged `tag` objected to secondary use.
    fn objected(&self, tag: &SubjectTag) -> Result<bool> {
        let sk = keyspace::objection(tag);
        match self.storage.get(&sk)? {
            None => Ok(false),
            Some(bytes) => {
                open_objection(&self.vault_secret, self.vault_id.as_bytes(), &sk, &bytes)?;
                Ok(true)
            }
        }
    }

    /// Records (`objected` true) or withdraws the objection of patient `subject` to the
    /// secondary use of their data (GDPR art. 21): objecting patients are left out of
    /// every later research export. Needs the purpose of use `PATRQT` (the patient's
    /// request; under a policy, a role that may invoke it); refused otherwise with
    /// [`Error::AccessDenied`] (rule `research-objection-purpose`). Logged as `write`
    /// naming the patient (target field `research-objection`, note `objection
    /// recorded`/`objection withdrawn`). Fails with [`Error::NotFound`] for an unknown
    /// or erased subject.
    pub fn set_research_objection(
        &self,
        ctx: &AccessContext,
        subject: &str,
        objected: bool,
    ) -> Result<()> {
        let tag = self.subject_tag(subject);
        let (batch, e, keys) = self.guarded(ctx, Action::Write, Some(tag), || {
            crate::record::validate_id("subject", subject)?;
            if ctx.purpose_of_use() != Purpose::PatientRequest.hl7_code() {
                return Err(self.research_denied(rules::OBJECTION));
            }
            let keys = self
                .keyring
                .load(&tag, self.read_fn())?
                .ok_or(Error::NotFound)?;
            let sk = keyspace::objection(&tag);
            let mut batch = WriteBatch::new();
            if objected {
                let v = seal_objection(&self.vault_secret, self.vault_id.as_bytes(), &sk);
                batch.put(sk, v);
            } else {
                batch.delete(sk);
            }
            let target = Target {
                subject: subject.to_owned(),
                collection: None,
                record_id: None,
                fields: vec!["research-objection".to_owned()],
            };
            let mut e = self.entry_for(
                ctx,
                Action::Write,
                Outcome::Ok,
                Some(&keys),
                None,
                Some(&target),
            );
            e.note = if objected {
                "objection recorded (secondary use, GDPR art. 21)"
            } else {
                "objection withdrawn (secondary use, GDPR art. 21)"
            }
            .to_owned();
            Ok((batch, e, keys))
        })?;
        let r = self.commit(batch, vec![e], &[&keys], Flush::Write);
        if r.is_err() {
            self.log_failure(ctx, Action::Write, Some(tag), &r);
        }
        r.map(|_| ())
    }

    /// Destroys the pseudonym seed of research project `project`: its exports'
    /// pseudonyms can no longer be linked to anyone by the vault, and a later export for
    /// the same project id gets a new seed (new pseudonyms). Needs the `keys`
    /// capability under a policy. Logged as `key_rotation` (note `research project key
    /// destroyed: project=...`); then, when [`super::VaultOptions::purge_after_erase`]
    /// is set, the storage is purged ([`Vault::purge`]) so no vault file keeps the seed.
    /// Fails with [`Error::NotFound`] when the project has no seed.
    pub fn destroy_research_key(&self, ctx: &AccessContext, project: &str) -> Result<()> {
        {
            let _g = lock(&self.key_op_lock);
            let batch = self.guarded(ctx, Action::KeyRotation, None, || {
                self.require_capability(ctx, "keys")?;
                check_references(project, "-")?;
                let sk = keyspace::research_seed(&self.pseudonyms, project);
                if self.storage.get(&sk)?.is_none() {
                    return Err(Error::NotFound);
                }
                let mut batch = WriteBatch::new();
                batch.delete(sk);
                Ok(batch)
            })?;
            let e = noted(
                ctx,
                Action::KeyRotation,
                format!("research project key destroyed: project={project}"),
            );
            let r = self.commit(batch, vec![e], &[], Flush::Write);
            if r.is_err() {
                self.log_failure(ctx, Action::KeyRotation, None, &r);
            }
            r?;
        }
        if self.options.purge_after_erase {
            self.purge(ctx)?;
        }
        Ok(())
    }
}
