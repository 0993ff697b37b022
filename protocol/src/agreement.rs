//! The outcome: a good-faith agreement that every party's members sign and
//! the mediator countersigns, and that anyone holding a copy can verify
//! offline, with no relay.
//!
//! * The [`Agreement`] is the exact text, the documents it attaches (each
//!   named by its SHA-256, [`Attachment`]) and the list of who must sign it
//!   (each with their public identity, name and party), drafted by the lead
//!   mediator. Its hash names it, so every signature covers the attached
//!   files' hashes too.
//! * Each signer's [`Signature`] is over
//!   `u8(len) || "caucus/v1/agreement-sign" || agreement hash`.
//! * The mediator's countersignature is over
//!   `u8(len) || "caucus/v1/agreement-countersign" || agreement hash || every
//!   signer's signature, in the agreement's order`.
//!
//! [`SignedAgreement::verify`] checks all of it and reports who signed.
//! [`verify_export`] checks an exported copy (Markdown, JSON or the bare
//! signed bytes): the signatures, and that the text a person reads in it is
//! the text they sign.

use serde::{Deserialize, Serialize};

use crate::codec::{Canonical, DecodeError, Reader, Writer};
use crate::crypto::{Digest, Signature, label};
use crate::document::{DocumentRef, check_file, format_size};
use crate::error::Error;
use crate::identity::{DeviceKeys, Fingerprint, PublicIdentity};
use crate::ids::{PartyId, SessionId};

/// Someone who must sign, as the agreement names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signatory {
    /// Their public identity.
    pub identity: PublicIdentity,
    /// Their name, as it appears on the agreement.
    pub name: String,
    /// Their party's id and label; `None` for the mediator.
    pub party: Option<(PartyId, String)>,
}

impl Canonical for Signatory {
    fn encode(&self, w: &mut Writer) {
        self.identity.encode(w);
        w.str(&self.name);
        w.option(self.party.as_ref(), |w, (id, label)| {
            id.encode(w);
            w.str(label);
        });
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            identity: PublicIdentity::decode(r)?,
            name: r.string()?,
            party: r.option(|r| Ok((PartyId::decode(r)?, r.string()?)))?,
        })
    }
}

/// A document the agreement attaches: what it is called, and the SHA-256 of
/// the file's bytes, which the signatures cover. It names the file and holds
/// no key: anyone can check a copy of the file with `sha256sum`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The document's title.
    pub title: String,
    /// Its file name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// The plain SHA-256 of its bytes, as its [`DocumentRef`] gives it.
    pub sha256: Digest,
}

impl From<&DocumentRef> for Attachment {
    fn from(d: &DocumentRef) -> Self {
        Self {
            title: d.title.clone(),
            name: d.name.clone(),
            size: d.size,
            sha256: d.hash,
        }
    }
}

impl Attachment {
    /// The SHA-256 in lowercase hex, as `sha256sum` prints it.
    pub fn sha256_hex(&self) -> String {
        self.sha256.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// How a person reads it: `Expert report (report.pdf, 2.4 MB), SHA-256
    /// 1f…` (the hash in full, in hex).
    pub fn summary(&self) -> String {
        format!(
            "{} ({}, {}), SHA-256 {}",
            self.title,
            self.name,
            format_size(self.size),
            self.sha256_hex()
        )
    }
}

impl Canonical for Attachment {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.title).str(&self.name).u64(self.size);
        self.sha256.encode(w);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let attachment = Self {
            title: r.string()?,
            name: r.string()?,
            size: r.u64()?,
            sha256: Digest::decode(r)?,
        };
        check_file(attachment.size, &attachment.title, &attachment.name)
            .map_err(|_| DecodeError::Invalid("attachment"))?;
        Ok(attachment)
    }
}

/// The agreement as drafted: the exact text everyone signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// The session it settles.
    pub session: SessionId,
    /// A title ("Settlement agreement").
    pub title: String,
    /// The terms, exactly as signed.
    pub terms: String,
    /// The reality-testing checklist the parties went through.
    pub checklist: Vec<String>,
    /// The documents it attaches, in order.
    pub attachments: Vec<Attachment>,
    /// The mediator, who countersigns.
    pub mediator: Signatory,
    /// Every party member who must sign, in signing order.
    pub signatories: Vec<Signatory>,
    /// When it was drafted, seconds since the Unix epoch.
    pub drafted_at: u64,
}

impl Canonical for Agreement {
    fn encode(&self, w: &mut Writer) {
        self.session.encode(w);
        w.str(&self.title).str(&self.terms);
        w.list(&self.checklist, |w, item| {
            w.str(item);
        });
        w.list(&self.attachments, |w, a| a.encode(w));
        self.mediator.encode(w);
        w.list(&self.signatories, |w, s| s.encode(w));
        w.u64(self.drafted_at);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            session: SessionId::decode(r)?,
            title: r.string()?,
            terms: r.string()?,
            checklist: r.list(|r| r.string())?,
            attachments: r.list(Attachment::decode)?,
            mediator: Signatory::decode(r)?,
            signatories: r.list(Signatory::decode)?,
            drafted_at: r.u64()?,
        })
    }
}

impl Agreement {
    /// The hash that names this exact agreement.
    pub fn hash(&self) -> Digest {
        Digest::of(label::AGREEMENT, &[&self.to_bytes()])
    }

    /// As a signatory: sign this exact text.
    pub fn sign(&self, keys: &DeviceKeys) -> Result<Signature, Error> {
        if !self
            .signatories
            .iter()
            .any(|s| s.identity.fingerprint() == keys.fingerprint())
        {
            return Err(Error::NotPermitted("not a signatory of this agreement"));
        }
        Ok(keys.sign(label::AGREEMENT_SIGN, &self.hash().0))
    }

    fn countersign_input(&self, signatures: &[Signature]) -> Vec<u8> {
        let mut w = Writer::new();
        self.hash().encode(&mut w);
        for s in signatures {
            s.encode(&mut w);
        }
        w.into_bytes()
    }
}

/// An agreement with every signature and the mediator's countersignature:
/// the copy each participant keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedAgreement {
    /// The agreement.
    pub agreement: Agreement,
    /// One signature per signatory, in the agreement's order.
    pub signatures: Vec<Signature>,
    /// The mediator's countersignature.
    pub countersignature: Signature,
}

impl Canonical for SignedAgreement {
    fn encode(&self, w: &mut Writer) {
        w.bytes(&self.agreement.to_bytes());
        w.list(&self.signatures, |w, s| s.encode(w));
        self.countersignature.encode(w);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            agreement: Agreement::from_bytes(r.bytes()?)?,
            signatures: r.list(Signature::decode)?,
            countersignature: Signature::decode(r)?,
        })
    }
}

/// Who signed what, as [`SignedAgreement::verify`] found it. The title,
/// terms, checklist and attachments are the signed text: show these as what
/// was agreed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// The agreement's hash.
    pub agreement: Digest,
    /// The title, as signed.
    pub title: String,
    /// The terms, as signed.
    pub terms: String,
    /// The reality-testing checklist, as signed.
    pub checklist: Vec<String>,
    /// The attached documents, as signed.
    pub attachments: Vec<Attachment>,
    /// Each signer: name, party label (none for the mediator), fingerprint.
    pub signers: Vec<(String, Option<String>, Fingerprint)>,
}

impl SignedAgreement {
    /// As the mediator, once every signatory has signed: check each
    /// signature and countersign.
    pub fn countersign(
        agreement: Agreement,
        signatures: Vec<Signature>,
        mediator: &DeviceKeys,
    ) -> Result<Self, Error> {
        if agreement.mediator.identity.fingerprint() != mediator.fingerprint() {
            return Err(Error::NotPermitted(
                "only the agreement's mediator countersigns",
            ));
        }
        check_signatures(&agreement, &signatures)?;
        let countersignature = mediator.sign(
            label::AGREEMENT_COUNTERSIGN,
            &agreement.countersign_input(&signatures),
        );
        Ok(Self {
            agreement,
            signatures,
            countersignature,
        })
    }

    /// Check every signature and the countersignature, with nothing but
    /// this copy: a changed byte or a missing signature fails.
    pub fn verify(&self) -> Result<Verified, Error> {
        let a = &self.agreement;
        check_signatures(a, &self.signatures)?;
        a.mediator.identity.verify(
            label::AGREEMENT_COUNTERSIGN,
            &a.countersign_input(&self.signatures),
            &self.countersignature,
            "agreement countersignature",
        )?;
        let mut signers: Vec<_> = a
            .signatories
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    s.party.as_ref().map(|(_, l)| l.clone()),
                    s.identity.fingerprint(),
                )
            })
            .collect();
        signers.push((
            a.mediator.name.clone(),
            None,
            a.mediator.identity.fingerprint(),
        ));
        Ok(Verified {
            agreement: a.hash(),
            title: a.title.clone(),
            terms: a.terms.clone(),
            checklist: a.checklist.clone(),
            attachments: a.attachments.clone(),
            signers,
        })
    }

    /// A readable copy (Markdown) that carries the signatures, and ends
    /// with the canonical signed copy in base64url in a block of its own
    /// (opened by the line `` ```caucus-signed-agreement ``). [`verify_export`]
    /// checks that everything before that block reads exactly as the block
    /// says.
    pub fn to_markdown(&self) -> String {
        self.markdown_parts()
            .into_iter()
            .map(|(_, text)| text)
            .collect()
    }

    /// The JSON export: `{"agreement", "attachments", "checklist",
    /// "signed", "terms", "title"}`, the signed copy in base64url in
    /// `signed`, each attachment as `{"name", "sha256", "size", "title"}`
    /// with its SHA-256 in hex.
    pub fn to_json(&self) -> String {
        let a = &self.agreement;
        serde_json::json!({
            "title": a.title,
            "terms": a.terms,
            "checklist": a.checklist,
            "attachments": exported_attachments(a),
            "agreement": crate::b64::encode(&a.hash().0),
            "signed": crate::b64::encode(&self.to_bytes()),
        })
        .to_string()
    }

    /// The Markdown export in parts, each named as [`verify_export`] names
    /// it when the text there differs, and each ending with a line break.
    fn markdown_parts(&self) -> Vec<(&'static str, String)> {
        let a = &self.agreement;
        let mut parts = vec![
            ("the title", format!("# {}\n\n", literal_line(&a.title))),
            (
                "the session and drafting time",
                format!(
                    "Session `{}`. Drafted at {} (Unix time).\n\n",
                    a.session, a.drafted_at
                ),
            ),
            (
                "the terms",
                format!("## Terms\n\n{}\n", literal_block(&a.terms)),
            ),
        ];
        if !a.checklist.is_empty() {
            let mut list = String::from("## Reality-testing checklist\n\n");
            for item in &a.checklist {
                let item = item.split('\n').map(literal_line).collect::<Vec<_>>();
                list.push_str(&format!("- {}\n", item.join("\\\n  ")));
            }
            list.push('\n');
            parts.push(("the checklist", list));
        }
        if !a.attachments.is_empty() {
            let mut list = String::from(
                "## Attachments\n\nThe signatures cover each file's SHA-256, which `sha256sum FILE` prints.\n\n",
            );
            for file in &a.attachments {
                list.push_str(&format!(
                    "- {}: {}, {} bytes, SHA-256 `{}`\n",
                    literal_line(&file.title),
                    literal_line(&file.name),
                    file.size,
                    file.sha256_hex()
                ));
            }
            list.push('\n');
            parts.push(("the attachments", list));
        }
        let mut table = String::from(
            "## Signatures\n\n| signer | party | fingerprint | signature |\n| --- | --- | --- | --- |\n",
        );
        for (s, sig) in a.signatories.iter().zip(&self.signatures) {
            let party = s.party.as_ref().map_or("", |(_, l)| l.as_str());
            table.push_str(&format!(
                "| {} | {} | `{}` | `{}` |\n",
                literal_line(&s.name),
                literal_line(party),
                s.identity.fingerprint(),
                crate::b64::encode(&sig.0)
            ));
        }
        table.push_str(&format!(
            "| {} (mediator, countersigning) | | `{}` | `{}` |\n\n",
            literal_line(&a.mediator.name),
            a.mediator.identity.fingerprint(),
            crate::b64::encode(&self.countersignature.0),
        ));
        parts.push(("the signatures", table));
        parts.push((
            "the agreement hash",
            format!("Agreement hash `{}`.\n\n", crate::b64::encode(&a.hash().0)),
        ));
        parts.push((
            "the text around the signed copy",
            format!(
                "## Signed copy\n\nThe block below is the canonical signed copy. `caucus agreement verify` checks its signatures, and that everything above reads exactly as it says.\n\n{SIGNED_BLOCK}\n{}\n{FENCE}\n",
                crate::b64::encode(&self.to_bytes())
            ),
        ));
        parts
    }
}

/// The line that opens the block holding the signed copy in the Markdown
/// export; the block is the base64url on the next line, then [`FENCE`].
const SIGNED_BLOCK: &str = "```caucus-signed-agreement";

/// The line that closes a fenced block.
const FENCE: &str = "```";

/// Text in a fenced code block, which a Markdown renderer shows exactly as
/// it is (an HTML comment, a `#` heading, a `` ``` `` of its own): the fence
/// is a run of backticks longer than any in the text (three at least), so
/// that no line of the text can close it.
fn literal_block(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}text\n{text}\n{fence}\n")
}

/// The characters that can make Markdown or HTML of running text: hide
/// some of it (a comment, a tag, a link's target, an escape, an entity) or
/// read it as emphasis, code, a heading, a quote or a table.
const MARKUP: &[char] = &[
    '\\', '`', '*', '_', '[', ']', '<', '>', '#', '!', '&', '|', '~',
];

/// One line of text in running Markdown (the title, a checklist line, a
/// name or label in a table cell) shown as it is: each character of
/// [`MARKUP`] escaped with a backslash (so a `|` stays in its cell), a line
/// break as a space (so the text stays in its line or row).
fn literal_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\r' | '\n' => out.push(' '),
            c if MARKUP.contains(&c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// The JSON export, as [`SignedAgreement::to_json`] writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonExport {
    title: String,
    terms: String,
    checklist: Vec<String>,
    attachments: Vec<JsonAttachment>,
    agreement: Digest,
    signed: String,
}

/// An attachment in the JSON export: its SHA-256 in hex, as `sha256sum`
/// prints it.
#[derive(PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonAttachment {
    title: String,
    name: String,
    size: u64,
    sha256: String,
}

fn exported_attachments(a: &Agreement) -> Vec<JsonAttachment> {
    a.attachments
        .iter()
        .map(|file| JsonAttachment {
            title: file.title.clone(),
            name: file.name.clone(),
            size: file.size,
            sha256: file.sha256_hex(),
        })
        .collect()
}

/// Check an exported copy of an agreement, with nothing else: the Markdown
/// export ([`SignedAgreement::to_markdown`]), the JSON export
/// ([`SignedAgreement::to_json`]) or the bare signed copy in base64url.
///
/// The signed copy must verify ([`SignedAgreement::verify`]), and the text
/// a person reads beside it must be the text signed: in JSON, `title`,
/// `terms`, `checklist`, `attachments` and `agreement` equal the signed
/// ones exactly; in
/// Markdown, the whole document equals the Markdown export of the signed
/// copy, reading CRLF as LF and ignoring white space at the ends of lines
/// and blank lines at the end. Otherwise [`Error::ReadableTextDiffers`]
/// names the first part that differs. The report carries the signed text.
pub fn verify_export(text: &str) -> Result<Verified, Error> {
    let trimmed = text.trim();
    if trimmed.starts_with('{') {
        return verify_json(trimmed);
    }
    if !trimmed.is_empty()
        && trimmed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Ok(signed_copy(trimmed)?.1);
    }
    verify_markdown(text)
}

/// Decode and verify the signed copy written in base64url.
fn signed_copy(text: &str) -> Result<(SignedAgreement, Verified), Error> {
    let bytes =
        crate::b64::decode(text).ok_or(Error::NotAnExport("the signed copy is not base64url"))?;
    let copy = SignedAgreement::from_bytes(&bytes)?;
    let verified = copy.verify()?;
    Ok((copy, verified))
}

fn verify_json(text: &str) -> Result<Verified, Error> {
    let export: JsonExport = serde_json::from_str(text).map_err(|_| {
        Error::NotAnExport(
            "a JSON export has exactly title, terms, checklist, attachments, agreement and signed",
        )
    })?;
    let (copy, verified) = signed_copy(&export.signed)?;
    let a = &copy.agreement;
    let differs = if export.title != a.title {
        Some("the title")
    } else if export.terms != a.terms {
        Some("the terms")
    } else if export.checklist != a.checklist {
        Some("the checklist")
    } else if export.attachments != exported_attachments(a) {
        Some("the attachments")
    } else if export.agreement != verified.agreement {
        Some("the agreement hash")
    } else {
        None
    };
    match differs {
        Some(part) => Err(Error::ReadableTextDiffers(part)),
        None => Ok(verified),
    }
}

fn verify_markdown(text: &str) -> Result<Verified, Error> {
    let given = comparable_lines(text);
    // The last block opened by SIGNED_BLOCK: one line, then FENCE.
    let encoded = given
        .iter()
        .rposition(|line| *line == SIGNED_BLOCK)
        .and_then(|at| match (given.get(at + 1), given.get(at + 2)) {
            (Some(encoded), Some(&FENCE)) => Some(*encoded),
            _ => None,
        })
        .ok_or(Error::NotAnExport(
            "no signed copy: a Markdown export ends with a block that opens with ```caucus-signed-agreement",
        ))?;
    let (copy, verified) = signed_copy(encoded)?;
    let parts = copy.markdown_parts();
    let markdown: String = parts.iter().map(|(_, text)| text.as_str()).collect();
    let expected = comparable_lines(&markdown);
    // The part each line is in: a part is whole lines.
    let part_of: Vec<&str> = parts
        .iter()
        .flat_map(|(part, text)| std::iter::repeat_n(*part, text.split_terminator('\n').count()))
        .collect();
    // The lines that differ lie between the longest common start and the
    // longest common end; they are named by the part of the first expected
    // line among them, or, when lines were only added, of the line before.
    let start = given
        .iter()
        .zip(&expected)
        .take_while(|(g, e)| g == e)
        .count();
    if start == given.len() && start == expected.len() {
        return Ok(verified);
    }
    let end = given
        .iter()
        .rev()
        .zip(expected.iter().rev())
        .take(given.len().min(expected.len()) - start)
        .take_while(|(g, e)| g == e)
        .count();
    let part = if start == expected.len() {
        "text after the signed copy"
    } else if start < expected.len() - end {
        part_of[start]
    } else {
        part_of[start.saturating_sub(1)]
    };
    Err(Error::ReadableTextDiffers(part))
}

/// The lines of a document as they are compared: CRLF read as LF (the CR
/// is white space at the end of its line), white space at the ends of
/// lines cut, and blank lines at the end dropped.
fn comparable_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.split('\n').map(str::trim_end).collect();
    while lines.last().is_some_and(|line| line.is_empty()) {
        lines.pop();
    }
    lines
}

fn check_signatures(a: &Agreement, signatures: &[Signature]) -> Result<(), Error> {
    if signatures.len() != a.signatories.len() {
        return Err(Error::BadSignature("agreement: a signature is missing"));
    }
    let hash = a.hash();
    for (s, sig) in a.signatories.iter().zip(signatures) {
        s.identity
            .verify(label::AGREEMENT_SIGN, &hash.0, sig, "agreement signature")?;
    }
    Ok(())
}
