//! `/gallery/export` and `/gallery/import`: the whole gallery as one archive.

use serde_json::json;

use crate::gallery::archive::ImportMode;
use crate::gallery::GalleryError;
use crate::http::app::App;
use crate::http::call::Call;
use crate::http::error::ApiError;
use crate::http::form::Form;
use crate::http::query::value as query_value;
use crate::http::respond::Answer;

/// `GET /gallery/export`: the gallery as one tar file (see [`crate::gallery::archive`]),
/// written to a temp file in the data folder first, so the write lock is not held while a slow
/// client downloads.
pub(super) fn export(app: &App, _form: Form, _call: &Call) -> Result<Answer, ApiError> {
    let gallery = &app.recognizer.gallery();
    let internal = |e: std::io::Error| {
        ApiError::from(crate::Error::from(GalleryError::Io {
            path: gallery.data_dir().to_path_buf(),
            source: e,
        }))
    };
    let mut file =
        crate::fsutil::unlinked_temp(gallery.data_dir(), "gallery-export.tar").map_err(internal)?;
    let summary = gallery
        .export(&mut file)
        .map_err(|e| ApiError::from(crate::Error::from(e)))?;
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(0)).map_err(internal)?;
    log::info!("gallery exported: {summary:?}");
    Ok(Answer::File {
        content_type: "application/x-tar",
        file,
        name: Some(format!(
            "face-attendance-gallery-{}.tar",
            crate::events::unix_now_ms() / 1000
        )),
    })
}

/// `POST /gallery/import?mode=merge|replace`: a gallery archive (in a file, see
/// [`crate::http::uploads::stream`]), checked whole before anything is written.
pub(super) fn import(
    app: &App,
    mut archive: std::fs::File,
    call: &Call,
) -> Result<Answer, ApiError> {
    let mode = match query_value(&call.query, "mode").as_deref() {
        None | Some("merge") => ImportMode::Merge,
        Some("replace") => ImportMode::Replace,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "mode must be merge or replace, got {other:?}"
            )))
        }
    };
    let summary = app
        .recognizer
        .gallery()
        .import_from(&mut archive, mode, &call.by)
        .map_err(|e| ApiError::from(crate::Error::from(e)))?;
    log::info!("gallery imported ({mode:?}): {summary:?}");
    Ok(Answer::Json(json!({"ok": true, "imported": summary})))
}
