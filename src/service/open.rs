//! Opening what the settings describe: the models and the gallery, made into a recognizer.

use std::sync::Arc;

use crate::engine::Engine;
use crate::error::Error;
use crate::gallery::LoadReport;
use crate::recognizer::Recognizer;
use crate::settings::Settings;

/// Validates the settings, loads the models and the gallery: the recognizer every command
/// that looks at faces works with, and what loading the gallery found.
pub fn open_recognizer(settings: &Settings) -> Result<(Recognizer, LoadReport), Error> {
    settings.validate()?;
    let engine =
        Engine::load(settings.engine_config())?.with_detect_max_pixels(settings.detect_max_pixels);
    let (gallery, report) = settings.open_gallery()?;
    let recognizer = Recognizer::new(Arc::new(engine), Arc::new(gallery))
        .with_tolerance(settings.tolerance)
        .with_max_pixels(settings.max_pixels)
        .with_match_margin(settings.match_margin)
        .with_enroll_jitters(settings.enroll_jitters)
        .with_enroll_policy(settings.enroll_policy()?);
    Ok((recognizer, report))
}
