//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): the parsers that see untrusted
//! bytes, each behind one small function. Not part of the API the service offers.

/// The body parsers, as `POST /enroll`, `/recognize` and a rename use them (multipart, JSON,
/// urlencoded or a raw image, by the Content-Type): `data` is split into a Content-Type header
/// (up to the first newline) and the body.
pub fn multipart_form(data: &[u8]) {
    let (head, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[..0]),
    };
    let content_type = String::from_utf8_lossy(head);
    if let Ok(form) = crate::http::fuzz_form(Some(&content_type), body.to_vec()) {
        // Field access is part of the path too.
        let _ = form.text("student_id");
        let _ = form.file("image");
    }
}

/// The query string of `POST /recognize/realtime` (and the API key in a WebSocket query).
pub fn realtime_query(data: &[u8]) {
    let query = String::from_utf8_lossy(data);
    crate::http::fuzz_query(&query);
}

/// The headers that say who a request comes from (credentials, `Host`, `Origin`,
/// `Sec-Fetch-Site`): `data` is a query string on its first line, then `Name: value` lines.
pub fn request_guard(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.lines();
    let query = lines.next().unwrap_or_default();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    crate::http::fuzz_guard(&headers, query);
}

/// A request's method and target as routing sees them: `data` is `METHOD target`.
pub fn request_target(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (method, target) = text.split_once(' ').unwrap_or(("GET", &text));
    crate::http::fuzz_route(method, target);
}

/// Image decoding with the default pixel limit, then a face crop of the result; and the
/// large-image path: a downscaled decode and an upright crop of the image as stored.
pub fn image_decode(data: &[u8]) {
    use crate::image_io::{self, Oriented, DEFAULT_MAX_PIXELS};
    if let Ok(image) = image_io::decode(data, DEFAULT_MAX_PIXELS) {
        let (w, h) = (image.width, image.height);
        let crop = image.crop(h / 4, w - w / 4, h - h / 4, w / 4);
        assert!(crop.pixels.len() == crop.width * crop.height * 3);
    }
    let Ok(probe) = image_io::probe(data, DEFAULT_MAX_PIXELS) else {
        return;
    };
    if let Ok(small) = image_io::decode_downscaled(data, &probe, 4096) {
        assert!(small.width * small.height <= 4096.max(probe.pixels() as usize));
        assert!(small.pixels.len() == small.width * small.height * 3);
    }
    if let Ok(stored) = image_io::decode_stored(data, &probe) {
        let view = Oriented::new(&stored, probe.orientation);
        let (w, h) = (view.width(), view.height());
        assert!((w, h) == (probe.width(), probe.height()));
        let crop = view.crop(h / 3, w - w / 5, h - h / 4, w / 7);
        assert!(crop.pixels.len() == crop.width * crop.height * 3);
    }
}

/// A gallery `.npy` file.
pub fn npy(data: &[u8]) {
    if let Ok(rows) = crate::gallery::npy::read_encodings(data) {
        // What loads must write back and load the same.
        let again =
            crate::gallery::npy::read_encodings(&crate::gallery::npy::write_encodings(&rows));
        assert_eq!(again.as_deref().ok(), Some(rows.as_slice()));
    }
}

/// An HTTP request head as a client sends it: the vendored tiny_http's head reader (limits,
/// strict line endings and bytes), its Content-Length/Transfer-Encoding checks, then the body
/// reader over what follows the head.
pub fn http_head(data: &[u8]) {
    tiny_http::fuzz_request_head(data);
}

/// A gallery archive as `POST /gallery/import` and `gallery import` check it before writing
/// anything (the check only: no data folder is touched).
pub fn gallery_archive(data: &[u8]) {
    if let Ok(archive) = crate::gallery::archive::validate(data) {
        // What passes has people with rows: an import never writes an empty `.npy`.
        let mut samples = 0;
        for (_, rows) in archive.encodings() {
            assert!(!rows.is_empty());
            samples += rows.len();
        }
        assert_eq!(samples, archive.samples());
        assert!(archive.crops() <= archive.samples());
    }
}

/// The unknown faces' journal (`data/unknowns/faces.jsonl`) as the store reads it at start.
pub fn unknowns_journal(data: &[u8]) {
    crate::unknowns::fuzz_journal(data);
}

/// A day file of the event log (`data/events/YYYY-MM-DD.jsonl`) as `GET /events` reads it,
/// and its events as CSV rows.
pub fn event_log(data: &[u8]) {
    for e in crate::events::log::fuzz_lines(data) {
        let _ = crate::events::csv::event_row(&e);
    }
}

/// A gallery sync message from the broker (`<prefix>/gallery/<id>`, and the same bytes as a
/// tombstone on `<prefix>/gallery-deleted/<id>`): `data` is the topic's id (up to the first
/// newline), then the payload. What passes is within the limits, and writes back as a message
/// that passes the same.
pub fn gallery_sync(data: &[u8]) {
    use crate::replication::wire::{self, Incoming};
    let (head, payload) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[..0]),
    };
    let topic_id = String::from_utf8_lossy(head);
    let now = crate::clock::unix_ms();
    match wire::parse_tombstone(&topic_id, payload, now) {
        Ok(Incoming::Tombstone { id, .. }) | Ok(Incoming::TombstoneCleared(id)) => {
            assert_eq!(id.as_str(), topic_id);
        }
        Ok(other) => panic!("a tombstone parsed as {other:?}"),
        Err(_) => {}
    }
    if let Ok(Incoming::Person {
        id, version, rows, ..
    }) = wire::parse_message(&topic_id, payload, now)
    {
        assert_eq!(id.as_str(), topic_id);
        assert!((1..=wire::MAX_SAMPLES).contains(&rows.len()));
        assert!(rows
            .iter()
            .flat_map(|(e, _)| e.iter())
            .all(|v| v.is_finite() && v.abs() <= wire::MAX_ABS_VALUE));
        let again = wire::fuzz_encode(&id, &version, &rows);
        match wire::parse_message(&topic_id, &again, now) {
            Ok(Incoming::Person {
                version: v2,
                rows: rows2,
                ..
            }) => {
                assert_eq!((v2, rows2.len()), (version, rows.len()));
                // Numbers go through decimal text: equal to within rounding.
                for ((a, _), (b, _)) in rows.iter().zip(&rows2) {
                    assert!(a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-12));
                }
            }
            other => panic!("{other:?}"),
        }
    }
}

/// A signed gallery message ([`crate::replication::envelope`]): `data` is the topic's id (up to
/// the first newline) and the payload. Its signature is read and verified against a list that
/// trusts one fixed key; an unsigned person or tombstone is sealed with that key, and must then
/// verify and parse exactly as it did unsigned (the added fields change nothing for readers).
pub fn gallery_envelope(data: &[u8]) {
    use crate::replication::envelope::{self, Refusal};
    use crate::replication::keys::BoxKey;
    use crate::replication::trust::{Role, TrustList, Trusted};
    use crate::replication::{wire, Kind};
    let (head, payload) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[..0]),
    };
    let topic_id = String::from_utf8_lossy(head);
    let key = BoxKey::from_seed([7; 32]);
    let mut trust = TrustList::empty();
    trust.add(Trusted {
        box_id: "fz-1".into(),
        key: key.public_key(),
        role: Role::Admin,
    });
    if let Ok(seal) = envelope::open(payload) {
        assert!(wire::check_box_id(seal.signed_by).is_ok());
        let _ = seal.verify(Kind::Person, &key.public_key());
    }
    for kind in [Kind::Person, Kind::Deleted] {
        match envelope::verify(kind, payload, &trust) {
            Ok(t) => assert_eq!(t.box_id, "fz-1"),
            Err(Refusal::UnknownSigner(who) | Refusal::BadSignature(who)) => {
                assert!(who.chars().count() <= 80)
            }
            Err(Refusal::Unsigned) => {}
        }
    }
    let now = crate::clock::unix_ms();
    if !payload.ends_with(b"}") {
        return;
    }
    let person = wire::parse_message(&topic_id, payload, now);
    if person.is_ok() {
        let sealed = envelope::seal(Kind::Person, payload, "fz-1", &key);
        assert_eq!(
            envelope::verify(Kind::Person, &sealed, &trust)
                .ok()
                .map(|t| t.role),
            Some(Role::Admin)
        );
        assert!(envelope::verify(Kind::Deleted, &sealed, &trust).is_err());
        assert_eq!(wire::parse_message(&topic_id, &sealed, now), person);
    }
    let tombstone = wire::parse_tombstone(&topic_id, payload, now);
    if tombstone.is_ok() {
        let sealed = envelope::seal(Kind::Deleted, payload, "fz-1", &key);
        assert!(envelope::verify(Kind::Deleted, &sealed, &trust).is_ok());
        assert!(envelope::verify(Kind::Person, &sealed, &trust).is_err());
        assert_eq!(wire::parse_tombstone(&topic_id, &sealed, now), tombstone);
    }
}

/// The MJPEG stream scanner (child programs' output, HTTP multipart bodies, MJPEG files):
/// `data`'s first two bytes choose the frame cap (up to 64 KiB) and the piece sizes the rest is
/// fed in; every frame out is SOI..EOI within the cap, the pieces give the same frames and
/// counts as the whole, and the frames plus what was skipped account for no more than the input.
pub fn mjpeg_stream(data: &[u8]) {
    use crate::camera::sources::mjpeg::MjpegScanner;
    let [cap, piece, stream @ ..] = data else {
        return;
    };
    let cap = (usize::from(*cap) + 1) * 256;
    let piece = usize::from(*piece) + 1;
    let mut whole = MjpegScanner::new(cap);
    let mut want = Vec::new();
    whole.push(stream, &mut want);
    let want_skipped = whole.take_skipped();
    let mut pieces = MjpegScanner::new(cap);
    let mut frames = Vec::new();
    for chunk in stream.chunks(piece) {
        pieces.push(chunk, &mut frames);
    }
    assert_eq!(frames, want);
    assert_eq!(pieces.take_skipped(), want_skipped);
    let mut kept = 0;
    for frame in &frames {
        assert!(frame.len() >= 4 && frame.len() <= cap);
        assert!(frame.starts_with(&[0xFF, 0xD8]) && frame.ends_with(&[0xFF, 0xD9]));
        kept += frame.len() as u64;
    }
    assert!(kept + want_skipped.garbage_bytes <= stream.len() as u64);
    let mut gaps = MjpegScanner::new(cap).expecting_gaps();
    let mut same = Vec::new();
    gaps.push(stream, &mut same);
    assert_eq!(same, want);
    assert_eq!(gaps.take_skipped().garbage_bytes, 0);
}
