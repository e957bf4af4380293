//! The signature of a gallery message on the wire.
//!
//! Messages stay JSON format 1 ([`super::wire`]); a signed one has two fields added at the end,
//! in exactly this form (no spaces): the unsigned object's final `}` replaced by
//! `,"signed_by":"<box_id>","signature":"<standard base64 of 64 bytes>"}`.
//!
//! Contract:
//! - The signature (Ed25519, [`super::keys`]) covers [`context`]`(kind)`, then every byte of the
//!   message up to (not including) `,"signature":`, then `}`: the whole message but the signature
//!   itself, `signed_by` included, and any field a later release adds before it. Each kind has
//!   its own context, so a person's message can never be taken for a tombstone, nor the reverse.
//! - [`open`] is purely syntactic (nothing is trusted yet): the exact suffix, a `signed_by`
//!   that [`check_box_id`] accepts, a signature of exactly 64 bytes in canonical base64.
//! - [`verify`] trusts a message only when its signer is in the [`TrustList`] and its signature
//!   verifies (strictly) with that box's key for that kind; what the message then says (its
//!   version, its samples) is checked by [`super::wire`] and the signer's role by the rules.
//! - An empty payload (a deletion, a tombstone cleared) is never signed: [`verify`] refuses it as
//!   [`Refusal::Unsigned`].

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use thiserror::Error;

use super::keys::{BoxKey, PublicKey};
use super::topics::Kind;
use super::trust::{TrustList, Trusted};
use super::wire::{check_box_id, clip};

/// What precedes the signer's id.
const SIGNED_BY: &[u8] = b",\"signed_by\":\"";

/// What precedes the signature.
const SIGNATURE: &[u8] = b",\"signature\":\"";

/// The base64 text of 64 bytes, with its padding.
const SIGNATURE_TEXT_LEN: usize = 88;

/// What the signature of a message of `kind` covers first: a domain separation per kind.
pub fn context(kind: Kind) -> &'static [u8] {
    match kind {
        Kind::Person => b"face-attendance gallery person v1\n",
        Kind::Deleted => b"face-attendance gallery tombstone v1\n",
    }
}

/// The message `unsigned` (a JSON object ending in `}`, as [`super::wire`] writes it) signed by
/// this box (`box_id`, already checked, and its `key`), for the topic of `kind`.
pub fn seal(kind: Kind, unsigned: &[u8], box_id: &str, key: &BoxKey) -> Vec<u8> {
    debug_assert!(unsigned.ends_with(b"}") && check_box_id(box_id).is_ok());
    let body = unsigned.strip_suffix(b"}").unwrap_or(unsigned);
    let mut signed = Vec::with_capacity(
        body.len() + SIGNED_BY.len() + box_id.len() + SIGNATURE.len() + SIGNATURE_TEXT_LEN + 3,
    );
    signed.extend_from_slice(body);
    signed.extend_from_slice(SIGNED_BY);
    signed.extend_from_slice(box_id.as_bytes());
    signed.push(b'"');
    let signature = key.sign(&covered(kind, &signed));
    signed.extend_from_slice(SIGNATURE);
    signed.extend_from_slice(STANDARD.encode(signature).as_bytes());
    signed.extend_from_slice(b"\"}");
    signed
}

/// What the signature of a message of `kind` whose bytes before `,"signature":` are `signed`
/// covers.
fn covered(kind: Kind, signed: &[u8]) -> Vec<u8> {
    let context = context(kind);
    let mut message = Vec::with_capacity(context.len() + signed.len() + 1);
    message.extend_from_slice(context);
    message.extend_from_slice(signed);
    message.push(b'}');
    message
}

/// Why a payload has no well-formed signature ([`open`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Unsealed {
    /// No `,"signature":"…"}` at its end.
    #[error("not signed")]
    Unsigned,
    /// No `,"signed_by":"…"` just before the signature.
    #[error("signed by nobody (no signed_by before the signature)")]
    NoSigner,
    /// A `signed_by` that is not a box id (clipped to 80 characters).
    #[error("signed_by {0:?} is not a box id")]
    BadSigner(String),
    /// The signature is not the canonical base64 of 64 bytes (its signer).
    #[error("the signature of {0:?} is not 64 bytes of base64")]
    BadEncoding(String),
}

/// A payload's signature, found ([`open`]) but not yet verified.
#[derive(Debug, Clone)]
pub struct Seal<'a> {
    /// Who says they signed it (a box id [`check_box_id`] accepts; not yet verified).
    pub signed_by: &'a str,
    signature: [u8; 64],
    /// The payload before `,"signature":`.
    signed: &'a [u8],
}

impl Seal<'_> {
    /// The signature's 64 bytes.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    /// Whether the signature is `key`'s on this payload for a message of `kind`.
    pub fn verify(&self, kind: Kind, key: &PublicKey) -> bool {
        key.verify(&covered(kind, self.signed), &self.signature)
    }
}

/// The signature at the end of `payload`, read but not verified.
pub fn open(payload: &[u8]) -> Result<Seal<'_>, Unsealed> {
    let Some(rest) = payload.strip_suffix(b"\"}") else {
        return Err(Unsealed::Unsigned);
    };
    let Some(at) = rfind(rest, SIGNATURE) else {
        return Err(Unsealed::Unsigned);
    };
    let (signed, signature_text) = (&rest[..at], &rest[at + SIGNATURE.len()..]);
    // The signer: the last `,"signed_by":"` (a box id holds no quote), up to the closing quote.
    let signer = signed
        .strip_suffix(b"\"")
        .and_then(|s| rfind(s, SIGNED_BY).map(|i| &s[i + SIGNED_BY.len()..]))
        .ok_or(Unsealed::NoSigner)?;
    let signed_by = std::str::from_utf8(signer)
        .map_err(|_| Unsealed::BadSigner(clip(&String::from_utf8_lossy(signer))))?;
    check_box_id(signed_by).map_err(|_| Unsealed::BadSigner(clip(signed_by)))?;
    let bad_encoding = || Unsealed::BadEncoding(signed_by.to_string());
    if signature_text.len() != SIGNATURE_TEXT_LEN {
        return Err(bad_encoding());
    }
    let signature: [u8; 64] = STANDARD
        .decode(signature_text)
        .map_err(|_| bad_encoding())?
        .try_into()
        .map_err(|_| bad_encoding())?;
    Ok(Seal {
        signed_by,
        signature,
        signed,
    })
}

/// The last place of `needle` in `haystack`.
fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// Why a message was not trusted ([`verify`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    /// Not signed (a box of an older release, an empty payload, or someone without a key).
    #[error("not signed")]
    Unsigned,
    /// Signed by a box that the trust list does not hold (its id, clipped to 80 characters).
    #[error("signed by {0:?}, which the trust list does not hold")]
    UnknownSigner(String),
    /// The signature does not verify with the key the trust list holds for its signer (who), or
    /// is malformed.
    #[error("the signature of {0:?} does not verify")]
    BadSignature(String),
}

impl Refusal {
    /// A short name for counters: `unsigned`, `untrusted` or `bad_signature`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Unsigned => "unsigned",
            Refusal::UnknownSigner(_) => "untrusted",
            Refusal::BadSignature(_) => "bad_signature",
        }
    }
}

/// The trusted box that signed `payload`, a message of `kind`: refused unless its signer is in
/// `trust` and the signature verifies with that box's key.
pub fn verify(kind: Kind, payload: &[u8], trust: &TrustList) -> Result<Trusted, Refusal> {
    let seal = open(payload).map_err(|e| match e {
        Unsealed::Unsigned => Refusal::Unsigned,
        Unsealed::NoSigner => Refusal::BadSignature(String::new()),
        Unsealed::BadSigner(who) => Refusal::UnknownSigner(who),
        Unsealed::BadEncoding(who) => Refusal::BadSignature(who),
    })?;
    let trusted = trust
        .get(seal.signed_by)
        .ok_or_else(|| Refusal::UnknownSigner(seal.signed_by.to_string()))?;
    if !seal.verify(kind, &trusted.key) {
        return Err(Refusal::BadSignature(seal.signed_by.to_string()));
    }
    Ok(trusted.clone())
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::clock;
    use crate::engine::Encoding;
    use crate::gallery::{Sample, StudentId};
    use crate::replication::trust::Role;
    use crate::replication::wire::{
        encode_message, encode_tombstone, parse_message, parse_tombstone, Incoming, Version,
    };

    fn key(n: u8) -> BoxKey {
        BoxKey::from_seed([n; 32])
    }

    fn trust(boxes: &[(&str, u8, Role)]) -> TrustList {
        let mut list = TrustList::empty();
        for &(box_id, n, role) in boxes {
            list.add(Trusted {
                box_id: box_id.to_string(),
                key: key(n).public_key(),
                role,
            });
        }
        list
    }

    /// A person of three samples (with quality) by `box_id`, unsigned.
    fn person(box_id: &str) -> Vec<u8> {
        let rows: Vec<(Encoding, Sample)> = (0..3)
            .map(|s| {
                let mut encoding = [0.0; 128];
                for (i, v) in encoding.iter_mut().enumerate() {
                    *v = ((i * 7 + s * 13) % 101) as f64 / 250.0 - 0.2;
                }
                let mut sample = Sample::plain(&encoding, 1_700_000_000 + s as u64);
                sample.quality = Some(json!({"face_px": 120 + s, "sharpness": 0.5, "yaw": 3.0}));
                (encoding, sample)
            })
            .collect();
        let version = Version::new(clock::unix_ms() - 1000, box_id);
        encode_message(
            &StudentId::parse("alip").unwrap(),
            &version,
            &rows,
            &Default::default(),
        )
    }

    fn tombstone(box_id: &str) -> Vec<u8> {
        let version = Version::new(clock::unix_ms() - 1000, box_id);
        encode_tombstone(&StudentId::parse("alip").unwrap(), &version)
    }

    #[test]
    fn a_sealed_message_verifies_and_parses_as_before() {
        let list = trust(&[("gate-1", 1, Role::Enroll), ("office", 2, Role::Admin)]);
        let unsigned = person("gate-1");
        let signed = seal(Kind::Person, &unsigned, "gate-1", &key(1));
        let text = std::str::from_utf8(&signed).unwrap();
        let tail = ",\"signed_by\":\"gate-1\",\"signature\":\"";
        let at = text.rfind(tail).unwrap();
        assert_eq!(at, unsigned.len() - 1, "{text}");
        assert_eq!(&signed[..at], &unsigned[..unsigned.len() - 1]);
        assert_eq!(signed.len(), at + tail.len() + 88 + 2);
        assert!(text.ends_with("==\"}"));
        let trusted = verify(Kind::Person, &signed, &list).unwrap();
        assert_eq!(
            (trusted.box_id.as_str(), trusted.role),
            ("gate-1", Role::Enroll)
        );
        let opened = open(&signed).unwrap();
        assert_eq!(opened.signed_by, "gate-1");
        assert!(opened.verify(Kind::Person, &key(1).public_key()));
        // The same message parses as it did unsigned: the new fields are ignored by readers.
        let now = clock::unix_ms();
        assert_eq!(
            parse_message("alip", &signed, now).unwrap(),
            parse_message("alip", &unsigned, now).unwrap()
        );
        // A tombstone too.
        let unsigned = tombstone("office");
        let signed = seal(Kind::Deleted, &unsigned, "office", &key(2));
        assert_eq!(
            verify(Kind::Deleted, &signed, &list).unwrap().box_id,
            "office"
        );
        assert_eq!(
            parse_tombstone("alip", &signed, now).unwrap(),
            parse_tombstone("alip", &unsigned, now).unwrap()
        );
    }

    #[test]
    fn a_message_is_verified_for_its_kind_only() {
        let list = trust(&[("gate-1", 1, Role::Admin)]);
        let as_person = seal(Kind::Person, &tombstone("gate-1"), "gate-1", &key(1));
        assert_eq!(
            verify(Kind::Deleted, &as_person, &list),
            Err(Refusal::BadSignature("gate-1".into()))
        );
        let as_tombstone = seal(Kind::Deleted, &person("gate-1"), "gate-1", &key(1));
        assert_eq!(
            verify(Kind::Person, &as_tombstone, &list),
            Err(Refusal::BadSignature("gate-1".into()))
        );
        assert_ne!(context(Kind::Person), context(Kind::Deleted));
    }

    #[test]
    fn signers_not_in_the_list_or_with_another_key_are_refused() {
        let signed = seal(Kind::Person, &person("gate-1"), "gate-1", &key(1));
        // Nobody trusted.
        let refusal = verify(Kind::Person, &signed, &TrustList::empty()).unwrap_err();
        assert_eq!(refusal, Refusal::UnknownSigner("gate-1".into()));
        assert_eq!(refusal.reason(), "untrusted");
        // Its key listed, under another box's id.
        let list = trust(&[("gate-2", 1, Role::Admin)]);
        assert_eq!(
            verify(Kind::Person, &signed, &list),
            Err(Refusal::UnknownSigner("gate-1".into()))
        );
        // Its id listed, with another box's key.
        let list = trust(&[("gate-1", 2, Role::Admin), ("gate-2", 1, Role::Admin)]);
        let refusal = verify(Kind::Person, &signed, &list).unwrap_err();
        assert_eq!(refusal, Refusal::BadSignature("gate-1".into()));
        assert_eq!(refusal.reason(), "bad_signature");
        // Signed by a trusted box, then claimed for another trusted box.
        let forged = String::from_utf8(signed.clone())
            .unwrap()
            .replace("\"signed_by\":\"gate-1\"", "\"signed_by\":\"gate-2\"");
        let list = trust(&[("gate-1", 1, Role::Enroll), ("gate-2", 2, Role::Admin)]);
        assert_eq!(
            verify(Kind::Person, forged.as_bytes(), &list),
            Err(Refusal::BadSignature("gate-2".into()))
        );
        // Unsigned: a message of the release before, and the empty payload.
        for unsigned in [person("gate-1"), tombstone("gate-1"), Vec::new()] {
            let refusal = verify(Kind::Person, &unsigned, &list).unwrap_err();
            assert_eq!(refusal, Refusal::Unsigned);
            assert_eq!(refusal.reason(), "unsigned");
        }
    }

    /// `text` with its `nth` (from 0) occurrence of `from` replaced by `to`.
    fn replace_nth(text: &str, from: &str, nth: usize, to: &str) -> String {
        let (at, _) = text.match_indices(from).nth(nth).expect(from);
        format!("{}{to}{}", &text[..at], &text[at + from.len()..])
    }

    /// `text` with the value at `index` of its `nth` sample's encoding changed in its last digit.
    fn change_value(text: &str, nth: usize, index: usize) -> String {
        let (at, key) = text.match_indices("\"encoding\":[").nth(nth).unwrap();
        let start = at + key.len();
        let len = text[start..].find(']').unwrap();
        let mut values: Vec<String> = text[start..start + len]
            .split(',')
            .map(String::from)
            .collect();
        let value = &mut values[index];
        let last = value.pop().unwrap();
        value.push(if last == '1' { '2' } else { '1' });
        format!(
            "{}{}{}",
            &text[..start],
            values.join(","),
            &text[start + len..]
        )
    }

    #[test]
    fn tampering_with_any_field_is_refused() {
        let list = trust(&[("gate-1", 1, Role::Enroll), ("gate-2", 2, Role::Admin)]);
        let signed = seal(Kind::Person, &person("gate-1"), "gate-1", &key(1));
        let text = String::from_utf8(signed.clone()).unwrap();
        let now = clock::unix_ms();
        let version: Value = serde_json::from_slice::<Value>(&signed).unwrap()["version"].clone();
        let updated_ms = version["updated_ms"].to_string();
        let signature = text.rsplit_once("\"signature\":\"").unwrap().1;
        let signature = signature.strip_suffix("\"}").unwrap();
        let mut flipped = STANDARD.decode(signature).unwrap();
        flipped[10] ^= 4;
        let last_sample = text.rfind(",{\"encoding\":").unwrap();
        let samples_end = text.rfind("],\"signed_by\"").unwrap();
        let mut changes: Vec<(String, String)> = vec![
            (
                "format".into(),
                replace_nth(&text, "\"format\":1", 0, "\"format\":2"),
            ),
            (
                "student_id".into(),
                replace_nth(&text, "\"alip\"", 0, "\"bob\""),
            ),
            (
                "version.updated_ms".into(),
                replace_nth(
                    &text,
                    &updated_ms,
                    0,
                    &(clock::unix_ms() + 60_000).to_string(),
                ),
            ),
            (
                "version.box_id".into(),
                replace_nth(&text, "\"box_id\":\"gate-1\"", 0, "\"box_id\":\"gate-2\""),
            ),
            (
                "a sample removed".into(),
                format!("{}{}", &text[..last_sample], &text[samples_end..]),
            ),
            (
                "signed_by".into(),
                replace_nth(
                    &text,
                    "\"signed_by\":\"gate-1\"",
                    0,
                    "\"signed_by\":\"gate-2\"",
                ),
            ),
            (
                "signed_by unknown".into(),
                replace_nth(
                    &text,
                    "\"signed_by\":\"gate-1\"",
                    0,
                    "\"signed_by\":\"gate-9\"",
                ),
            ),
            (
                "signature".into(),
                replace_nth(&text, signature, 0, &STANDARD.encode(flipped)),
            ),
            (
                "an added field".into(),
                replace_nth(
                    &text,
                    ",\"signed_by\"",
                    0,
                    ",\"display_name\":\"Alip\",\"signed_by\"",
                ),
            ),
        ];
        for sample in 0..3 {
            for value in [0, 64, 127] {
                changes.push((
                    format!("sample {sample} value {value}"),
                    change_value(&text, sample, value),
                ));
            }
            let enrolled = format!("\"enrolled_at\":{}", 1_700_000_000 + sample);
            changes.push((
                format!("sample {sample} enrolled_at"),
                replace_nth(&text, &enrolled, 0, "\"enrolled_at\":1700000100"),
            ));
            changes.push((
                format!("sample {sample} quality"),
                replace_nth(&text, "\"yaw\":3.0", sample, "\"yaw\":0.0"),
            ));
        }
        for (what, bytes) in changes {
            assert_ne!(bytes, text, "{what}");
            let refusal = verify(Kind::Person, bytes.as_bytes(), &list).unwrap_err();
            let expected = match what.as_str() {
                "signed_by unknown" => Refusal::UnknownSigner("gate-9".into()),
                "signed_by" => Refusal::BadSignature("gate-2".into()),
                _ => Refusal::BadSignature("gate-1".into()),
            };
            assert_eq!(refusal, expected, "{what}");
            // Without the signature, most of these would be applied: they are valid messages.
            if !matches!(what.as_str(), "format" | "student_id") {
                assert!(
                    parse_message("alip", bytes.as_bytes(), now).is_ok(),
                    "{what}: {bytes}"
                );
            }
        }
    }

    #[test]
    fn any_byte_flipped_is_refused() {
        let list = trust(&[("g", 1, Role::Admin)]);
        let signed = seal(Kind::Deleted, &tombstone("g"), "g", &key(1));
        assert!(verify(Kind::Deleted, &signed, &list).is_ok());
        for at in 0..signed.len() {
            for bit in [0x01u8, 0x20, 0x80] {
                let mut bytes = signed.clone();
                bytes[at] ^= bit;
                assert!(
                    verify(Kind::Deleted, &bytes, &list).is_err(),
                    "byte {at} ^ {bit:#x}: {}",
                    String::from_utf8_lossy(&bytes)
                );
            }
            // Cut there.
            assert!(
                verify(Kind::Deleted, &signed[..at], &list).is_err(),
                "cut at {at}"
            );
        }
    }

    #[test]
    fn open_reads_the_suffix_exactly() {
        let signed = seal(Kind::Person, &person("gate-1"), "gate-1", &key(1));
        let text = String::from_utf8(signed).unwrap();
        let (head, signature) = text.rsplit_once(",\"signature\":\"").unwrap();
        let signature = signature.strip_suffix("\"}").unwrap();
        let body = head.rsplit_once(",\"signed_by\":").unwrap().0;
        let cases = [
            (format!("{text} "), Unsealed::Unsigned),
            (format!("{head}}}"), Unsealed::Unsigned),
            (
                format!("{head}, \"signature\":\"{signature}\"}}"),
                Unsealed::Unsigned,
            ),
            (
                format!("{body},\"signature\":\"{signature}\"}}"),
                Unsealed::NoSigner,
            ),
            (
                format!("{body},\"signed_by\": \"gate-1\",\"signature\":\"{signature}\"}}"),
                Unsealed::NoSigner,
            ),
            (
                format!("{body},\"signed_by\":\"gate/1\",\"signature\":\"{signature}\"}}"),
                Unsealed::BadSigner("gate/1".into()),
            ),
            (
                format!("{body},\"signed_by\":\"\",\"signature\":\"{signature}\"}}"),
                Unsealed::BadSigner(String::new()),
            ),
            (
                format!("{body},\"signed_by\":\"a\\\"b\",\"signature\":\"{signature}\"}}"),
                Unsealed::BadSigner("a\\\"b".into()),
            ),
            (
                format!("{head},\"signature\":\"{}\"}}", &signature[..84]),
                Unsealed::BadEncoding("gate-1".into()),
            ),
            (
                format!(
                    "{head},\"signature\":\"{}\"}}",
                    &signature.replace('=', "A")
                ),
                Unsealed::BadEncoding("gate-1".into()),
            ),
            (
                format!("{head},\"signature\":\"{} \"}}", &signature[..87]),
                Unsealed::BadEncoding("gate-1".into()),
            ),
            (
                format!(
                    "{head},\"signature\":\"{}\"}}",
                    &STANDARD.encode([5u8; 65])[..88]
                ),
                Unsealed::BadEncoding("gate-1".into()),
            ),
        ];
        for (payload, expected) in cases {
            assert_eq!(
                open(payload.as_bytes()).map(|s| s.signed_by).unwrap_err(),
                expected,
                "{payload}"
            );
        }
    }

    #[test]
    fn the_fuzz_target_survives_cut_and_flipped_messages() {
        let signed = seal(Kind::Person, &person("gate-1"), "gate-1", &key(1));
        let mut inputs = vec![];
        for payload in [signed, person("gate-1"), tombstone("g")] {
            let mut input = b"alip\n".to_vec();
            input.extend_from_slice(&payload);
            crate::fuzzing::gallery_envelope(&input);
            inputs.push(input);
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..3000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut data = inputs[i % 3].clone();
            let at = (state as usize) % data.len();
            match (i / 3) % 3 {
                0 => data.truncate(at),
                1 => data[at] ^= 1 << ((state >> 40) % 8),
                _ => data.insert(at, b"\"},=\\"[(state >> 32) as usize % 5]),
            }
            crate::fuzzing::gallery_envelope(&data);
        }
    }

    #[test]
    fn incoming_messages_keep_their_parse() {
        // A sealed person whose samples parse: the rows are the unsigned message's.
        let unsigned = person("gate-1");
        let signed = seal(Kind::Person, &unsigned, "gate-1", &key(1));
        match parse_message("alip", &signed, clock::unix_ms()).unwrap() {
            Incoming::Person { rows, version, .. } => {
                assert_eq!(rows.len(), 3);
                assert_eq!(version.box_id(), "gate-1");
            }
            other => panic!("{other:?}"),
        }
    }
}
