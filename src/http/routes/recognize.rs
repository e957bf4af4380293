//! `/enroll`, `/recognize`, `/recognize/realtime` and `/mock/webhook`: the original service's
//! face endpoints.

use serde_json::{json, Value};

use crate::events::{events_for, Event};
use crate::http::app::App;
use crate::http::call::Call;
use crate::http::error::ApiError;
use crate::http::form::Form;
use crate::http::respond::Answer;
use crate::recognizer::{EnrollRequest, MatchOptions, Photo};

pub(super) fn enroll(app: &App, form: Form, call: &Call) -> Result<Answer, ApiError> {
    let student_id = form.text("student_id")?;
    let image = form.file("image")?;
    let request = EnrollRequest {
        force: form.flag("force")?,
        by: call.by.clone(),
        label: super::label::enroll_label(&form)?,
    };
    let outcome = app.image_work(image, || {
        app.recognizer
            .enroll(&student_id, Photo::Bytes(image), &request)
    })?;
    if outcome.saved > 0 {
        log::info!("enrolled a face for {student_id}");
    }
    Ok(Answer::Json(
        json!({"ok": true, "saved": outcome.saved, "msg": outcome}),
    ))
}

pub(super) fn recognize(app: &App, form: Form, _call: &Call) -> Result<Answer, ApiError> {
    let image = form.file("image")?;
    let results = app.image_work(image, || {
        let options = MatchOptions::default();
        Ok(app
            .recognizer
            .recognize(Photo::Bytes(image), options)?
            .faces)
    })?;
    Ok(Answer::Json(json!({"ok": true, "results": results})))
}

/// Query parameters of `/recognize/realtime`, with FastAPI's defaults; values percent-decoded
/// (`min_conf=1e%2B2` is `1e+2`).
pub(crate) fn realtime_params(query: &str) -> Result<(Option<f64>, bool), ApiError> {
    let mut min_conf = 0.0;
    let mut send_unknown = false;
    for (key, raw) in crate::http::query::pairs(query) {
        let value = crate::http::query::percent_decode(raw).ok_or_else(|| {
            ApiError::BadRequest(format!("{key} is not valid percent-encoded UTF-8: {raw:?}"))
        })?;
        let value = value.as_str();
        match key {
            "min_conf" => {
                min_conf = value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "min_conf must be a number >= 0, got {value:?}"
                        ))
                    })?
            }
            "send_unknown" => {
                send_unknown = match value.to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "on" => true,
                    "false" | "0" | "no" | "off" => false,
                    _ => {
                        return Err(ApiError::BadRequest(format!(
                            "send_unknown must be true or false, got {value:?}"
                        )))
                    }
                }
            }
            _ => {}
        }
    }
    Ok(((min_conf > 0.0).then_some(min_conf), send_unknown))
}

pub(super) fn realtime(app: &App, form: Form, call: &Call) -> Result<Answer, ApiError> {
    let (tolerance, send_unknown) = realtime_params(&call.query)?;
    let bytes = form.file("image")?;
    // The image place is given back before the webhook wait below.
    let (results, frame) = app.image_work(bytes, || {
        let options = MatchOptions::tolerance(tolerance);
        let recognized = app.recognizer.recognize(Photo::Bytes(bytes), options)?;
        Ok((recognized.faces, recognized.size))
    })?;
    let events: Vec<Event> = events_for(&results, frame, send_unknown);
    let labels: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.student_id.clone(), e.event_id.clone()))
        .collect();
    let delivered = app.dispatcher.dispatch(events);
    // `report` is the webhook's, as in the original; `sinks` has every durable sink's.
    let dispatch: Vec<Value> = labels
        .into_iter()
        .zip(delivered)
        .map(|((label, event_id), d)| {
            json!({"label": label, "event_id": event_id, "report": d.report, "sinks": d.sinks})
        })
        .collect();
    Ok(Answer::Json(json!({
        "ok": true,
        "results": results,
        "dispatch": dispatch,
        "webhook_enabled": app.dispatcher.webhook_enabled(),
    })))
}

pub(super) fn mock_webhook(_app: &App, form: Form, _call: &Call) -> Result<Answer, ApiError> {
    let body = form.into_raw();
    let payload: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("body is not JSON: {e}")))?
    };
    Ok(Answer::Json(
        json!({"ok": true, "token": "dummy-token", "echo": payload}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realtime_query_defaults_and_errors() {
        assert_eq!(realtime_params("").unwrap(), (None, false));
        assert_eq!(
            realtime_params("min_conf=0.45&send_unknown=true").unwrap(),
            (Some(0.45), true)
        );
        assert_eq!(
            realtime_params("min_conf=0&send_unknown=False").unwrap(),
            (None, false)
        );
        assert_eq!(realtime_params("min_conf=abc").unwrap_err().status(), 400);
        assert_eq!(realtime_params("min_conf=-1").unwrap_err().status(), 400);
        assert_eq!(
            realtime_params("send_unknown=maybe").unwrap_err().status(),
            400
        );
    }
}
