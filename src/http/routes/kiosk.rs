//! The greeting screen (`GET /kiosk`), its state (`GET /kiosk/state`) and the face crop of the
//! greeting shown (`GET /kiosk/photo/{seq}.jpg`), read from the app's [`crate::kiosk::Kiosk`]
//! board. `Access::Kiosk`: a kiosk key or above, or the box's own screen (loopback, no key).

use crate::http::app::App;
use crate::http::call::Call;
use crate::http::error::ApiError;
use crate::http::respond::Answer;

/// The greeting screen: plain HTML in the binary; its script and style are `/ui/kiosk.js` and
/// `/ui/kiosk.css`.
const KIOSK_PAGE: &str = include_str!("../page/kiosk.html");

/// `GET /kiosk`: the page.
pub(super) fn kiosk_page(_app: &App, _call: &Call) -> Result<Answer, ApiError> {
    Ok(Answer::Body("text/html; charset=utf-8", KIOSK_PAGE))
}

/// `GET /kiosk/state`: what the screen shows now (see [`crate::kiosk::Kiosk::state`]).
pub(super) fn kiosk_state(app: &App, _call: &Call) -> Result<Answer, ApiError> {
    Ok(Answer::Json(app.kiosk.state()))
}

/// `GET /kiosk/photo/{seq}.jpg`: the face crop of greeting `seq`, while it is shown; 404
/// otherwise (an older greeting, an expired one, one without a crop, a `seq` that is no number).
pub(super) fn kiosk_photo(app: &App, call: &Call) -> Result<Answer, ApiError> {
    let seq = call.params.get("seq")?;
    let missing = || ApiError::NotFound(format!("no face crop shown as greeting {seq}"));
    let n: u64 = seq.parse().map_err(|_| missing())?;
    let jpeg = app.kiosk.photo(n).ok_or_else(missing)?;
    Ok(Answer::Bytes("image/jpeg", jpeg.to_vec()))
}
