//! `/people` and `/people/{id}/...`: who is enrolled, their names and groups, their samples,
//! renames, captures from the camera, rejections and deletion.

use serde_json::json;

use super::label::{bad_label, enroll_label, label_change};
use super::unknowns::{no_cluster, unknowns_store};
use crate::gallery::label::{self, Field};
use crate::gallery::{GalleryError, StudentId};
use crate::http::app::App;
use crate::http::call::Call;
use crate::http::error::ApiError;
use crate::http::form::Form;
use crate::http::query::{self, value as query_value};
use crate::http::respond::Answer;
use crate::recognizer::{EnrollRequest, Photo};

/// People per page of `GET /people` unless `limit` says otherwise, and the most it may say.
const PEOPLE_PAGE: usize = 100;
const PEOPLE_PAGE_MAX: usize = 1000;

/// `PATCH /people/{id}` with `{"name": ..., "group": ...}` (JSON): the person's name and
/// group set (a string), cleared (`null`) or kept (absent). 404 when not enrolled.
pub(super) fn set_label(app: &App, form: Form, call: &Call) -> Result<Answer, ApiError> {
    let id = person_id(call)?;
    let change = label_change(&form.into_raw())?;
    let label = app
        .recognizer
        .gallery()
        .set_label(&id, &change, &call.by)
        .map_err(|e| ApiError::from(crate::Error::from(e)))?;
    log::info!("name or group of {id} changed by {}", call.by);
    Ok(Answer::Json(json!({
        "ok": true,
        "student_id": id.as_str(),
        "name": label.name,
        "group": label.group,
    })))
}

/// `GET /people?q=&group=&limit=&offset=`: enrolled people whose id starts with `q` (of
/// group `group` when given), by id.
pub(super) fn people(app: &App, call: &Call) -> Result<Answer, ApiError> {
    let prefix = query_value(&call.query, "q").unwrap_or_default();
    let group = query_value(&call.query, "group")
        .map(|g| label::check(Field::Group, &g).map_err(bad_label))
        .transpose()?;
    let number = |name: &str, default: usize, max: usize| match query_value(&call.query, name) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "{name} must be a whole number up to {max}, got {v:?}"
                ))
            }),
    };
    let limit = number("limit", PEOPLE_PAGE, PEOPLE_PAGE_MAX)?;
    let offset = number("offset", 0, usize::MAX)?;
    let (total, page) =
        app.recognizer
            .gallery()
            .people_page(&prefix, group.as_deref(), offset, limit);
    Ok(Answer::Json(
        json!({"ok": true, "total": total, "people": page}),
    ))
}

/// The `{id}` of the path, checked as enrollment checks it (400 otherwise).
fn person_id(call: &Call) -> Result<StudentId, ApiError> {
    StudentId::parse(call.params.get("id")?).map_err(ApiError::BadRequest)
}

/// `GET /people/{id}`.
pub(super) fn person(app: &App, call: &Call) -> Result<Answer, ApiError> {
    let id = person_id(call)?;
    let gallery = &app.recognizer.gallery();
    let detail = gallery
        .person_detail(&id)
        .ok_or_else(|| ApiError::NotFound(format!("person {id}")))?;
    Ok(Answer::Json(detail.to_json(&gallery.history(&id))))
}

/// The `{n}` of the path: a sample's index (a whole number, else 400; one past what this
/// machine can index is no sample: 404, as on a 64-bit one).
fn sample_index(call: &Call) -> Result<usize, ApiError> {
    let n = call.params.get("n")?;
    let index = n.parse::<u64>().map_err(|_| {
        ApiError::BadRequest(format!("a sample index is a whole number, got {n:?}"))
    })?;
    usize::try_from(index).or(Ok(usize::MAX))
}

/// `GET /people/{id}/samples/{n}.jpg`: the face crop.
pub(super) fn sample_crop(app: &App, call: &Call) -> Result<Answer, ApiError> {
    let (id, n) = (person_id(call)?, sample_index(call)?);
    let jpeg = app
        .recognizer
        .gallery()
        .sample_crop(&id, n)
        .ok_or_else(|| ApiError::NotFound(format!("a face crop for sample {n} of {id}")))?;
    Ok(Answer::Bytes("image/jpeg", jpeg))
}

/// `DELETE /people/{id}/samples/{n}`; the last sample takes the person with it.
pub(super) fn delete_sample(app: &App, call: &Call) -> Result<Answer, ApiError> {
    let (id, n) = (person_id(call)?, sample_index(call)?);
    let left = app
        .recognizer
        .gallery()
        .remove_sample(&id, n, &call.by)
        .map_err(|e| ApiError::from(crate::Error::from(e)))?;
    log::info!("deleted sample {n} of {id} ({left} left)");
    Ok(Answer::Json(
        json!({"ok": true, "student_id": id.as_str(), "samples": left}),
    ))
}

/// `POST /people/{id}/rename` with `student_id` (JSON or form): 409 when it is taken.
pub(super) fn rename(app: &App, form: Form, call: &Call) -> Result<Answer, ApiError> {
    let from = person_id(call)?;
    let to = StudentId::parse_new(&form.text("student_id")?)
        .map_err(|e| ApiError::BadRequest(format!("invalid student_id: {e}")))?;
    let samples = app
        .recognizer
        .gallery()
        .rename(&from, &to, &call.by)
        .map_err(|e| ApiError::from(crate::Error::from(e)))?;
    log::info!("renamed {from} to {to}");
    Ok(Answer::Json(json!({
        "ok": true,
        "student_id": to.as_str(),
        "from": from.as_str(),
        "samples": samples,
    })))
}

/// `POST /people/{id}/capture?samples=3&seconds=20`: enrolls the next camera frames that show
/// exactly one face, through the same checks as `/enroll` (a frame refused by them is skipped
/// and the next one tried), waiting at most `seconds`.
pub(super) fn capture(app: &App, form: Form, call: &Call) -> Result<Answer, ApiError> {
    let id = person_id(call)?;
    let captures = app.camera_for(&call.query)?.captures();
    let (mut samples, mut seconds) = (3u64, 20u64);
    for (key, value) in query::pairs(&call.query) {
        let number = || {
            value.parse::<u64>().map_err(|_| {
                ApiError::BadRequest(format!("{key} must be a whole number, got {value:?}"))
            })
        };
        match key {
            "samples" => samples = number()?,
            "seconds" => seconds = number()?,
            // The camera (`?camera=NAME`) was chosen above.
            _ => {}
        }
    }
    if !(1..=10).contains(&samples) {
        return Err(ApiError::BadRequest(format!(
            "samples must be 1 to 10, got {samples}"
        )));
    }
    let most = crate::camera::capture::MAX_CAPTURE_WAIT.as_secs();
    if !(1..=most).contains(&seconds) {
        return Err(ApiError::BadRequest(format!(
            "seconds must be 1 to {most}, got {seconds}"
        )));
    }
    let request = EnrollRequest {
        force: form.flag("force")?,
        by: call.by.clone(),
        label: enroll_label(&form)?,
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let (mut saved, mut after, mut refused) = (0u64, 0u64, Vec::new());
    let mut last_refusal = None;
    while saved < samples {
        let Some((n, frame)) = captures.next_after(after, deadline) else {
            break;
        };
        after = n;
        let recognizer = &app.recognizer;
        let Some(_place) = app.budget.images.take_within(app.budget.queue_wait) else {
            return Err(ApiError::Busy("too many images in progress"));
        };
        match recognizer
            .engine()
            .install(|| recognizer.enroll(id.as_str(), Photo::Image(&frame), &request))
        {
            Ok(outcome) if outcome.saved > 0 => saved += 1,
            Ok(_) => refused.push("no face found in the frame".to_string()),
            Err(e @ crate::Error::PoorFace { .. }) => {
                refused.push(e.to_string());
                last_refusal = Some(e);
            }
            // Somebody else's face: the next frames of it would be too.
            Err(e @ crate::Error::Gallery(GalleryError::Duplicate { .. })) => {
                refused.push(e.to_string());
                last_refusal = Some(e);
                break;
            }
            Err(e) => return Err(ApiError::from(e)),
        }
    }
    if saved == 0 {
        return Err(match last_refusal {
            Some(e) => ApiError::from(e),
            None => ApiError::Unprocessable {
                message: format!(
                    "no frame with one face good enough to enroll came from the camera in {seconds} s"
                ),
                details: json!({"refused": refused}),
            },
        });
    }
    log::info!("captured {saved} sample(s) of {id} from the camera");
    Ok(Answer::Json(json!({
        "ok": true,
        "student_id": id.as_str(),
        "saved": saved,
        "asked": samples,
        "refused": refused,
    })))
}

/// Where the face of `POST /people/{id}/reject` comes from.
enum RejectSource<'a> {
    /// A photo (`image`, as `/enroll` takes it): its largest face.
    Image(&'a [u8]),
    /// A cluster of unknown faces the camera kept (`unknown`, its id in `GET /unknowns`): its
    /// best faces.
    Unknown(u64),
}

impl<'a> RejectSource<'a> {
    fn of(form: &'a Form) -> Result<RejectSource<'a>, ApiError> {
        match form.text_or_number("unknown") {
            Ok(cluster) => cluster
                .parse::<u64>()
                .map(RejectSource::Unknown)
                .map_err(|_| {
                    ApiError::BadRequest(format!("unknown is a cluster id, got {cluster:?}"))
                }),
            Err(ApiError::MissingField(_)) => Ok(RejectSource::Image(form.file("image")?)),
            Err(e) => Err(e),
        }
    }
}

/// `POST /people/{id}/reject`: the face is not this person (see [`crate::gallery::rejected`]).
/// 404 before any image work when the person is not enrolled.
pub(super) fn reject(app: &App, form: Form, call: &Call) -> Result<Answer, ApiError> {
    let id = person_id(call)?;
    let recognizer = &app.recognizer;
    if recognizer.gallery().person(&id).is_none() {
        return Err(ApiError::NotFound(format!("person {id}")));
    }
    let rejection = match RejectSource::of(&form)? {
        RejectSource::Image(image) => app.image_work(image, || {
            recognizer.reject(&id, Photo::Bytes(image), &call.by)
        })?,
        RejectSource::Unknown(cluster) => {
            let offer = unknowns_store(app)?
                .enroll_samples(cluster)
                .ok_or_else(|| no_cluster(cluster))?;
            let faces: Vec<_> = offer.samples.iter().map(|s| s.encoding).collect();
            recognizer
                .gallery()
                .reject(&id, &faces, &call.by)
                .map_err(|e| ApiError::from(crate::Error::from(e)))?
        }
    };
    log::info!(
        "a face was rejected as not {id} (distance {:.3}; {} rejected)",
        rejection.distance,
        rejection.rejected
    );
    Ok(Answer::Json(json!({
        "ok": true,
        "student_id": id.as_str(),
        "rejected": rejection.rejected,
        "distance": rejection.distance,
    })))
}

/// `DELETE /people/{id}/rejected`: every rejection of the person forgotten.
pub(super) fn forget_rejections(app: &App, call: &Call) -> Result<Answer, ApiError> {
    let id = person_id(call)?;
    let forgotten = app.recognizer.gallery().forget_rejections(&id, &call.by)?;
    log::info!("forgot {forgotten} rejected face(s) of {id}");
    Ok(Answer::Json(json!({
        "ok": true,
        "student_id": id.as_str(),
        "rejected": 0,
        "forgotten": forgotten,
    })))
}

/// `DELETE /people/{id}`: encodings, descriptions, crops and rejections gone from disk and
/// from matching, then the unknown faces the camera kept that match their samples (within the
/// tolerance: their faces kept as nobody's) with their crops.
pub(super) fn delete_person(app: &App, call: &Call) -> Result<Answer, ApiError> {
    let id = person_id(call)?;
    let gallery = app.recognizer.gallery();
    let encodings: Vec<_> = gallery
        .rows_in_memory(&id)
        .into_iter()
        .map(|(e, _)| e)
        .collect();
    let samples = gallery
        .remove(&id, &call.by)
        .map_err(|e| ApiError::from(crate::Error::from(e)))?
        .ok_or_else(|| ApiError::NotFound(format!("person {id}")))?;
    let unknown_faces = match app.unknowns() {
        Some(store) => store.forget_matching(&encodings, app.recognizer.tolerance())?,
        None => 0,
    };
    log::info!("deleted {id} ({samples} samples, {unknown_faces} unknown faces like theirs)");
    Ok(Answer::Json(json!({
        "ok": true,
        "deleted": id.as_str(),
        "samples": samples,
        "unknown_faces": unknown_faces,
    })))
}

/// `GET /people/{id}/export`: everything the box holds about the person as one tar archive
/// ([`crate::privacy`]), written to a temp file in the data folder first (the gallery's lock
/// is not held while a slow client downloads). 404 when nothing is held about the id; a
/// reserved id (`Unknown`) is no person: 400.
pub(super) fn export_person(app: &App, _form: Form, call: &Call) -> Result<Answer, ApiError> {
    let id = StudentId::parse_new(call.params.get("id")?).map_err(ApiError::BadRequest)?;
    let recognizer = &app.recognizer;
    let gallery = recognizer.gallery();
    let internal = |e: std::io::Error| {
        ApiError::from(GalleryError::Io {
            path: gallery.data_dir().to_path_buf(),
            source: e,
        })
    };
    let mut file =
        crate::fsutil::unlinked_temp(gallery.data_dir(), "person-export.tar").map_err(internal)?;
    let summary = crate::privacy::export_person(gallery, &id, recognizer.tolerance(), &mut file)?;
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(0)).map_err(internal)?;
    log::info!(
        "exported what the box holds about {id} for {}: {summary:?}",
        call.by
    );
    Ok(Answer::File {
        content_type: "application/x-tar",
        file,
        name: Some(format!("face-attendance-{id}.tar")),
    })
}
