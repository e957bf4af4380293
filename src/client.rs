//! Client side helpers: the multipart body curl `-F` would send, and the HTTP agent (for
//! `rt-client`, `bench-http` and tests).

use std::time::Duration;

/// A blocking HTTP agent that returns 4xx/5xx answers instead of failing on them.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .new_agent()
}

/// One part of a form: text, or a file with its name and content type.
pub enum Part<'a> {
    Text(&'a str),
    File {
        file_name: &'a str,
        content_type: &'a str,
        data: &'a [u8],
    },
}

/// `(content type, body)` of a `multipart/form-data` form with these fields.
pub fn multipart(fields: &[(&str, Part<'_>)]) -> (String, Vec<u8>) {
    // A boundary that cannot occur in the data: long and random enough, checked anyway.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let boundary = loop {
        let candidate = format!("----face-attendance-{seed:032x}");
        let clash = fields.iter().any(|(_, part)| match part {
            Part::Text(t) => t.contains(&candidate),
            Part::File { data, .. } => data
                .windows(candidate.len())
                .any(|w| w == candidate.as_bytes()),
        });
        if !clash {
            break candidate;
        }
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    };
    let mut body = Vec::new();
    for (name, part) in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match part {
            Part::Text(text) => {
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                );
                body.extend_from_slice(text.as_bytes());
            }
            Part::File {
                file_name,
                content_type,
                data,
            } => {
                body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{}\"\r\nContent-Type: {content_type}\r\n\r\n",
                        file_name.replace('"', "")
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(data);
            }
        }
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The form `curl -F image=@PATH` sends: `data` as the `image` file field.
pub fn image_form(path: &std::path::Path, data: &[u8]) -> (String, Vec<u8>) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let content_type = if name.to_ascii_lowercase().ends_with(".png") {
        "image/png"
    } else {
        "image/jpeg"
    };
    multipart(&[(
        "image",
        Part::File {
            file_name: &name,
            content_type,
            data,
        },
    )])
}
