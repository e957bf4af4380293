//! `/unknowns/...`: the unknown faces the camera kept, for review: list, crops, forget, enroll.

use serde_json::json;

use crate::gallery::StudentId;
use crate::http::app::App;
use crate::http::call::Call;
use crate::http::error::ApiError;
use crate::http::form::Form;
use crate::http::respond::Answer;
use crate::recognizer::{EnrollRequest, Offered};
use crate::unknowns::Unknowns;

/// The unknown-faces store, or 404 when the service keeps none.
pub(super) fn unknowns_store(app: &App) -> Result<&Unknowns, ApiError> {
    app.unknowns()
        .map(|u| u.as_ref())
        .ok_or_else(|| ApiError::NotFound("unknown faces (none are kept: see the log)".into()))
}

/// A whole-number path parameter (`{cluster}`, `{entry}`): 400 otherwise.
fn number_param(call: &Call, name: &'static str) -> Result<u64, ApiError> {
    let v = call.params.get(name)?;
    v.parse::<u64>()
        .map_err(|_| ApiError::BadRequest(format!("{name} is a whole number, got {v:?}")))
}

pub(super) fn no_cluster(cluster: u64) -> ApiError {
    ApiError::NotFound(format!("unknown-face cluster {cluster}"))
}

/// `GET /unknowns`: the clusters, newest `last_seen` first, and whether faces are collected
/// (`"collecting":false` with `UNKNOWN_MAX=0`: then never any cluster).
pub(super) fn unknowns_list(app: &App, _call: &Call) -> Result<Answer, ApiError> {
    let store = unknowns_store(app)?;
    Ok(Answer::Json(crate::unknowns::list_json(
        store.settings(),
        &store.clusters(),
    )))
}

/// `GET /unknowns/{cluster}/faces/{entry}.jpg`: a face's crop (404 when it has none).
pub(super) fn unknown_crop(app: &App, call: &Call) -> Result<Answer, ApiError> {
    let (cluster, entry) = (number_param(call, "cluster")?, number_param(call, "entry")?);
    let jpeg = unknowns_store(app)?.crop(cluster, entry).ok_or_else(|| {
        ApiError::NotFound(format!("a crop of face {entry} in cluster {cluster}"))
    })?;
    Ok(Answer::Bytes("image/jpeg", jpeg))
}

/// `DELETE /unknowns/{cluster}`: its faces and crops forgotten.
pub(super) fn forget_unknown(app: &App, call: &Call) -> Result<Answer, ApiError> {
    let cluster = number_param(call, "cluster")?;
    let faces = unknowns_store(app)?
        .forget_cluster(cluster)?
        .ok_or_else(|| no_cluster(cluster))?;
    log::info!("forgot unknown-face cluster {cluster} ({faces} faces)");
    Ok(Answer::Json(
        json!({"ok": true, "deleted": cluster, "faces": faces}),
    ))
}

/// `POST /unknowns/{cluster}/enroll` with `student_id` (and `force`): the cluster's best faces
/// enrolled through `/enroll`'s checks (their crops detected again; without crops, their
/// encodings within the size and sharpness limits), then the cluster forgotten.
pub(super) fn enroll_unknown(app: &App, form: Form, call: &Call) -> Result<Answer, ApiError> {
    let store = unknowns_store(app)?;
    let cluster = number_param(call, "cluster")?;
    let student_id = StudentId::parse_new(&form.text("student_id")?)
        .map_err(|e| ApiError::BadRequest(format!("invalid student_id: {e}")))?;
    let request = EnrollRequest {
        force: form.flag("force")?,
        by: call.by.clone(),
        label: super::label::enroll_label(&form)?,
    };
    let offer = store
        .enroll_samples(cluster)
        .ok_or_else(|| no_cluster(cluster))?;
    let offered: Vec<Offered<'_>> = offer
        .samples
        .iter()
        .map(|s| match &s.crop {
            Some(jpeg) => Offered::Photo(jpeg),
            None => Offered::Encoding {
                encoding: &s.encoding,
                face_px: s.face_px,
                sharpness: s.sharpness,
            },
        })
        .collect();
    // The crops are small: one image place covers them all (the largest decides).
    let largest = offer
        .samples
        .iter()
        .filter_map(|s| s.crop.as_deref())
        .max_by_key(|c| c.len())
        .unwrap_or_default();
    let outcome = app.image_work(largest, || {
        app.recognizer
            .enroll_offered(student_id.as_str(), &offered, &request)
    })?;
    let forgotten = store.forget(&offer.members)?;
    log::info!(
        "enrolled {} face(s) of unknown-face cluster {cluster} as {student_id}; {forgotten} forgotten",
        outcome.saved
    );
    Ok(Answer::Json(json!({
        "ok": true,
        "saved": outcome.saved,
        "msg": {"faces_found": outcome.faces_found, "saved": outcome.saved},
        "student_id": student_id.as_str(),
        "cluster": cluster,
        "samples": outcome.offered,
        "refused": outcome.refused,
        "forgotten": forgotten,
    })))
}
