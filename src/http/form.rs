//! Request bodies: `multipart/form-data` as curl `-F` and browsers send it (parsed by multer),
//! or a raw `image/*` body. The size limit is enforced while reading, never after.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};

use bytes::Bytes;

use super::error::ApiError;

/// The form's fields by name (file or text, as bytes), or a body taken as it came.
#[derive(Debug, Default)]
pub struct Form {
    // Bytes: multer hands out each field as one; keeping it avoids a copy of every upload.
    fields: HashMap<String, Bytes>,
    /// A JSON body's members by name: their JSON type (`string`, `number`, `boolean`, `null`,
    /// `array`, `object`), so that a field of the wrong type is a 400 naming it while members
    /// no route reads are ignored, whatever they hold. `None` for any other body.
    json_types: Option<HashMap<String, &'static str>>,
    raw: Vec<u8>,
}

impl Form {
    /// A body that is not a form (a JSON event), kept whole.
    pub fn raw(body: Vec<u8>) -> Form {
        Form {
            fields: HashMap::new(),
            json_types: None,
            raw: body,
        }
    }

    /// 400 when the body is JSON and member `name` is there but not of type `want`.
    fn json_type(&self, name: &'static str, want: &[&str]) -> Result<(), ApiError> {
        match self.json_types.as_ref().and_then(|t| t.get(name)) {
            Some(got) if !want.contains(got) => Err(ApiError::BadRequest(format!(
                "field {name} must be a JSON {}, got {} {got}",
                want.join(" or a "),
                if *got == "array" { "an" } else { "a" }
            ))),
            _ => Ok(()),
        }
    }

    /// The body of [`Form::raw`] (empty for a parsed form).
    pub fn into_raw(self) -> Vec<u8> {
        self.raw
    }

    pub fn file(&self, name: &'static str) -> Result<&[u8], ApiError> {
        self.fields
            .get(name)
            .map(|b| b.as_ref())
            .ok_or(ApiError::MissingField(name))
    }

    /// A text field (in a JSON body: a string).
    pub fn text(&self, name: &'static str) -> Result<String, ApiError> {
        self.json_type(name, &["string"])?;
        self.any_text(name)
    }

    /// A text field that a JSON body may also give as a number (a cluster id).
    pub fn text_or_number(&self, name: &'static str) -> Result<String, ApiError> {
        self.json_type(name, &["string", "number"])?;
        self.any_text(name)
    }

    fn any_text(&self, name: &'static str) -> Result<String, ApiError> {
        let field = self.fields.get(name).ok_or(ApiError::MissingField(name))?;
        std::str::from_utf8(field)
            .map(|s| s.trim().to_string())
            .map_err(|_| ApiError::BadRequest(format!("field {name} is not UTF-8 text")))
    }

    /// A yes/no field (`true`/`1`/`yes`/`on`, `false`/`0`/`no`/`off`/empty, any case); absent
    /// is no; anything else is 400.
    /// In a JSON body only `true` and `false` (JSON booleans).
    pub fn flag(&self, name: &'static str) -> Result<bool, ApiError> {
        self.json_type(name, &["boolean"])?;
        match self.any_text(name) {
            Err(ApiError::MissingField(_)) => Ok(false),
            Err(e) => Err(e),
            Ok(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" | "" => Ok(false),
                _ => Err(ApiError::BadRequest(format!(
                    "{name} must be true or false, got {v:?}"
                ))),
            },
        }
    }
}

/// Reads at most `limit` bytes of body: 413 past it (checked against Content-Length first, then
/// while reading), 408 when the client stalls past the socket timeout, 400 when it hangs up.
pub fn read_body(
    reader: &mut dyn Read,
    content_length: Option<usize>,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    if content_length.is_none_or(|n| n <= limit) {
        body.reserve_exact(content_length.unwrap_or(0));
    }
    copy_body(reader, content_length, limit, &mut body)?;
    Ok(body)
}

/// [`read_body`] into `sink` (a file: the body is never held in memory), a block at a time;
/// the bytes written. A failing `sink` is the server's trouble (500, or 507 when the disk is
/// full).
pub fn copy_body(
    reader: &mut dyn Read,
    content_length: Option<usize>,
    limit: usize,
    sink: &mut dyn Write,
) -> Result<u64, ApiError> {
    if content_length.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let mut block = vec![0u8; COPY_BLOCK];
    let mut total: u64 = 0;
    loop {
        let n = match reader.read(&mut block) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(ApiError::Timeout)
            }
            Err(e) => {
                return Err(ApiError::BadRequest(format!(
                    "reading the body failed: {e}"
                )))
            }
        };
        total += n as u64;
        if total > limit as u64 {
            return Err(too_large(limit));
        }
        sink.write_all(&block[..n])
            .map_err(|e| ApiError::io("keeping the request body", e))?;
    }
    match content_length {
        Some(n) if total < n as u64 => Err(ApiError::BadRequest(format!(
            "the body ended after {total} of {n} bytes"
        ))),
        _ => Ok(total),
    }
}

/// The 413 of a body larger than `limit`.
pub fn too_large(limit: usize) -> ApiError {
    ApiError::TooLarge(format!(
        "request body larger than {limit} bytes (MAX_UPLOAD_BYTES)"
    ))
}

/// What [`copy_body`] reads at a time.
const COPY_BLOCK: usize = 64 << 10;

/// A JSON object's members as fields: strings as they are, numbers and booleans as their text
/// (`{"student_id":"new","force":true}`), each member's JSON type kept (see [`Form::text`],
/// [`Form::flag`]); `null`, arrays and objects are no field (400 when a route reads them).
fn json_fields(body: &[u8]) -> Result<Form, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("body is not JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| ApiError::BadRequest("the JSON body must be an object".into()))?;
    let mut form = Form::default();
    let mut types = HashMap::new();
    for (name, v) in object {
        let (kind, text) = match v {
            serde_json::Value::String(s) => ("string", Some(s.clone())),
            serde_json::Value::Number(_) => ("number", Some(v.to_string())),
            serde_json::Value::Bool(_) => ("boolean", Some(v.to_string())),
            serde_json::Value::Null => ("null", None),
            serde_json::Value::Array(_) => ("array", None),
            serde_json::Value::Object(_) => ("object", None),
        };
        types.insert(name.clone(), kind);
        if let Some(text) = text {
            form.fields.insert(name.clone(), Bytes::from(text));
        }
    }
    form.json_types = Some(types);
    Ok(form)
}

/// `a=1&b=x+y` as fields (`+` is a space, `%XX` escapes decoded).
fn urlencoded_fields(body: &[u8]) -> Result<Form, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::BadRequest("the form is not UTF-8 text".into()))?;
    let mut form = Form::default();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            super::query::form_decode(s)
                .ok_or_else(|| ApiError::BadRequest(format!("bad %-escape in the form: {s:?}")))
        };
        form.fields
            .insert(decode(name)?, Bytes::from(decode(value)?));
    }
    Ok(form)
}

/// Parses a body by its Content-Type: a multipart form, or a raw image sent as the `image` field.
pub fn parse(content_type: Option<&str>, body: Vec<u8>) -> Result<Form, ApiError> {
    let content_type = content_type.unwrap_or("").trim();
    let lower = content_type.to_ascii_lowercase();
    if lower.starts_with("image/") || lower == "application/octet-stream" {
        let mut form = Form::default();
        form.fields.insert("image".into(), Bytes::from(body));
        return Ok(form);
    }
    if lower.starts_with("application/json") {
        return json_fields(&body);
    }
    if lower.starts_with("application/x-www-form-urlencoded") {
        return urlencoded_fields(&body);
    }
    if !lower.starts_with("multipart/form-data") {
        if body.is_empty() && content_type.is_empty() {
            return Ok(Form::default());
        }
        return Err(ApiError::UnsupportedMedia(format!(
            "expected a multipart/form-data form or an image/* body, got {:?}",
            if content_type.is_empty() {
                "no Content-Type"
            } else {
                content_type
            }
        )));
    }
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| ApiError::BadRequest(format!("malformed multipart form: {e}")))?;
    let stream = futures_util::stream::once(async move { Ok::<Vec<u8>, std::io::Error>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    pollster::block_on(async {
        let mut form = Form::default();
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| ApiError::BadRequest(format!("malformed multipart form: {e}")))?
        {
            let name = field.name().unwrap_or_default().to_string();
            let data = field
                .bytes()
                .await
                .map_err(|e| ApiError::BadRequest(format!("malformed multipart form: {e}")))?;
            // The first field of a name wins, as in FastAPI.
            form.fields.entry(name).or_insert(data);
        }
        Ok(form)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn multipart(boundary: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, file, data) in parts {
            out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            match file {
                Some(f) => out.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: image/jpeg\r\n\r\n").as_bytes(),
                ),
                None => out.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
            }
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        out
    }

    #[test]
    fn json_and_urlencoded_bodies_are_forms_too() {
        let form = parse(
            Some("application/json"),
            br#"{"student_id":"new","force":true}"#.to_vec(),
        )
        .unwrap();
        assert_eq!(form.text("student_id").unwrap(), "new");
        assert!(form.flag("force").unwrap());
        // A field of the wrong JSON type is a 400 naming it; members nobody reads are ignored.
        let form = parse(
            Some("application/json"),
            br#"{"student_id":7,"force":"true","unknown":7,"extra":{"a":[1]},"n":null}"#.to_vec(),
        )
        .unwrap();
        let wrong = form.text("student_id").unwrap_err().to_string();
        assert!(
            wrong.contains("student_id must be a JSON string"),
            "{wrong}"
        );
        let wrong = form.flag("force").unwrap_err().to_string();
        assert!(wrong.contains("force must be a JSON boolean"), "{wrong}");
        assert_eq!(form.text_or_number("unknown").unwrap(), "7");
        assert_eq!(form.text("extra").unwrap_err().status(), 400);
        assert_eq!(form.flag("n").unwrap_err().status(), 400);
        assert!(!form.flag("absent").unwrap());
        for bad in [&b"[1]"[..], b"{", b""] {
            assert_eq!(
                parse(Some("application/json"), bad.to_vec())
                    .unwrap_err()
                    .status(),
                400
            );
        }
        let form = parse(
            Some("application/x-www-form-urlencoded"),
            b"student_id=a%2Eb&note=x+y&empty".to_vec(),
        )
        .unwrap();
        assert_eq!(form.text("student_id").unwrap(), "a.b");
        assert_eq!(form.text("note").unwrap(), "x y");
        assert_eq!(form.text("empty").unwrap(), "");
        let bad = parse(Some("application/x-www-form-urlencoded"), b"a=%zz".to_vec());
        assert_eq!(bad.unwrap_err().status(), 400);
    }

    #[test]
    fn parses_curl_style_forms() {
        let body = multipart(
            "XyZ",
            &[
                ("student_id", None, b"alip"),
                ("image", Some("a.jpg"), b"\xff\xd8\xff\x00\r\n--X"),
            ],
        );
        let form = parse(Some("multipart/form-data; boundary=XyZ"), body).unwrap();
        assert_eq!(form.text("student_id").unwrap(), "alip");
        assert_eq!(form.file("image").unwrap(), b"\xff\xd8\xff\x00\r\n--X");
        assert!(matches!(
            form.file("other"),
            Err(ApiError::MissingField("other"))
        ));
    }

    #[test]
    fn raw_image_bodies_are_the_image_field() {
        let form = parse(Some("image/jpeg"), b"\xff\xd8".to_vec()).unwrap();
        assert_eq!(form.file("image").unwrap(), b"\xff\xd8");
    }

    #[test]
    fn malformed_forms_are_400_and_other_types_415() {
        let garbage = parse(
            Some("multipart/form-data; boundary=abc"),
            b"--zzz\r\nnonsense".to_vec(),
        );
        assert_eq!(garbage.unwrap_err().status(), 400);
        let no_boundary = parse(Some("multipart/form-data"), b"x".to_vec());
        assert_eq!(no_boundary.unwrap_err().status(), 400);
        assert_eq!(
            parse(Some("text/plain"), b"x".to_vec())
                .unwrap_err()
                .status(),
            415
        );
        // An empty request is an empty form: the handler then says which field is missing.
        assert!(matches!(
            parse(None, vec![]).unwrap().file("image"),
            Err(ApiError::MissingField("image"))
        ));
    }

    #[test]
    fn body_limit_is_enforced_while_reading() {
        let data = [7u8; 100];
        assert_eq!(
            read_body(&mut &data[..], Some(100), 100).unwrap().len(),
            100
        );
        assert_eq!(
            read_body(&mut &data[..], Some(101), 100)
                .unwrap_err()
                .status(),
            413
        );
        // A lying (or absent) Content-Length does not get past the limit either.
        assert_eq!(
            read_body(&mut &data[..], None, 99).unwrap_err().status(),
            413
        );
        assert_eq!(
            read_body(&mut &data[..50], Some(100), 1000)
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn copied_bodies_have_the_same_limits() {
        let data = vec![7u8; 200_000];
        let mut sink = Vec::new();
        let copied = copy_body(&mut &data[..], Some(200_000), 200_000, &mut sink);
        assert_eq!((copied.unwrap(), sink.len()), (200_000, 200_000));
        // Refused before a byte is read, or as soon as the limit is passed.
        let mut sink = Vec::new();
        let early = copy_body(&mut &data[..], Some(200_000), 1000, &mut sink);
        assert_eq!((early.unwrap_err().status(), sink.len()), (413, 0));
        let mut sink = Vec::new();
        let lying = copy_body(&mut &data[..], Some(10), 100_000, &mut sink);
        assert_eq!(lying.unwrap_err().status(), 413);
        assert!(sink.len() <= 100_000);
        let cut = copy_body(&mut &data[..50], Some(100), 1000, &mut Vec::new());
        assert_eq!(cut.unwrap_err().status(), 400);
        // A full disk is the server's trouble: 507.
        let mut full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let refused = copy_body(&mut &data[..], None, 1 << 20, &mut full);
        assert_eq!(refused.unwrap_err().status(), 507);
    }
}
