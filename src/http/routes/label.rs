//! The `name` and `group` of a request: an enrollment's form fields and the JSON body of
//! `PATCH /people/{id}`, checked by [`crate::gallery::label`]'s rules; a bad one is a 400 whose
//! message starts with the field's name.

use serde_json::Value;

use crate::gallery::label::{self, Field};
use crate::gallery::{LabelChange, LabelError};
use crate::http::error::ApiError;
use crate::http::form::Form;

/// A name or group that breaks the rules: 400 naming the field.
pub(super) fn bad_label(e: LabelError) -> ApiError {
    ApiError::BadRequest(e.to_string())
}

/// The `name` and `group` fields of an enrollment (`/enroll`, `/unknowns/{cluster}/enroll`):
/// each given (not empty) is set; absent or empty keeps what the person has.
pub(super) fn enroll_label(form: &Form) -> Result<LabelChange, ApiError> {
    let field = |field: Field| match form.text(field.as_str()) {
        Err(ApiError::MissingField(_)) => Ok(None),
        Err(e) => Err(e),
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => label::check(field, &v)
            .map(|v| Some(Some(v)))
            .map_err(bad_label),
    };
    Ok(LabelChange {
        name: field(Field::Name)?,
        group: field(Field::Group)?,
    })
}

/// The JSON body of `PATCH /people/{id}`: an object of `name` and/or `group`, each a string
/// (set) or `null` (cleared); anything else is 400 naming the field.
pub(super) fn label_change(body: &[u8]) -> Result<LabelChange, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("body is not JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object: {\"name\": ..., \"group\": ...}".into(),
        ));
    };
    let mut change = LabelChange::default();
    for (key, v) in &object {
        let field = match key.as_str() {
            "name" => Field::Name,
            "group" => Field::Group,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown field {:?}: only name and group can be changed",
                    other.chars().take(40).collect::<String>()
                )))
            }
        };
        let set = match v {
            Value::Null => None,
            Value::String(s) => Some(label::check(field, s).map_err(bad_label)?),
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "{}: must be a string, or null to clear it",
                    field.as_str()
                )))
            }
        };
        match field {
            Field::Name => change.name = Some(set),
            Field::Group => change.group = Some(set),
        }
    }
    if change.is_empty() {
        return Err(ApiError::BadRequest(
            "nothing to change: give name and/or group (null clears)".into(),
        ));
    }
    Ok(change)
}
