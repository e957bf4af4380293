//! Settings shared by every command, from flags or the environment (the original service's
//! variables plus the new ones), checked once at start-up.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use crate::engine::{Engine, EngineConfig};
use crate::error::Error;
use crate::gallery::{Gallery, LoadReport};
use crate::image_io::DEFAULT_MAX_PIXELS;
use crate::recognizer::Recognizer;

/// Upsampling multiplies detection cost and memory by ~4 each time; past 3 it is never useful.
pub const MAX_UPSAMPLE: u32 = 3;
pub const MAX_JITTERS: u32 = 100;

#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Runtime state: embeddings/<id>.npy and faces/<id>/*.jpg
    #[arg(
        long = "data",
        env = "FACE_DATA_DIR",
        default_value = "data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Folder with the dlib model files (filled by scripts/fetch-models)
    #[arg(
        long = "models",
        env = "FACE_MODELS_DIR",
        default_value = "models",
        global = true
    )]
    pub models_dir: PathBuf,
    /// Largest distance that still counts as a match (smaller is stricter)
    #[arg(long, env = "FACE_TOLERANCE", default_value_t = 0.45, global = true)]
    pub tolerance: f64,
    /// Times the image is upsampled before face detection (finds smaller faces, ~4x slower each)
    #[arg(long, env = "FACE_UPSAMPLE", default_value_t = 1, global = true)]
    pub upsample: u32,
    /// Jittered re-encodings averaged per face (1 = none; 10 is ~10x slower, a bit steadier)
    #[arg(long, env = "FACE_JITTERS", default_value_t = 1, global = true)]
    pub jitters: u32,
    /// Largest image accepted, in pixels (checked from the header before decoding)
    #[arg(long, env = "FACE_MAX_PIXELS", default_value_t = DEFAULT_MAX_PIXELS, global = true)]
    pub max_pixels: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("data"),
            models_dir: PathBuf::from("models"),
            tolerance: 0.45,
            upsample: 1,
            jitters: 1,
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

impl Settings {
    pub fn validate(&self) -> Result<(), Error> {
        if !(self.tolerance.is_finite() && self.tolerance > 0.0 && self.tolerance <= 2.0) {
            return Err(Error::Config(format!(
                "FACE_TOLERANCE must be in (0, 2], got {}",
                self.tolerance
            )));
        }
        if self.upsample > MAX_UPSAMPLE {
            return Err(Error::Config(format!(
                "FACE_UPSAMPLE must be 0 to {MAX_UPSAMPLE}, got {}",
                self.upsample
            )));
        }
        if !(1..=MAX_JITTERS).contains(&self.jitters) {
            return Err(Error::Config(format!(
                "FACE_JITTERS must be 1 to {MAX_JITTERS}, got {}",
                self.jitters
            )));
        }
        if self.max_pixels == 0 {
            return Err(Error::Config("FACE_MAX_PIXELS must be above 0".into()));
        }
        Ok(())
    }

    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            models_dir: self.models_dir.clone(),
            upsample: self.upsample,
            jitters: self.jitters,
        }
    }

    /// Validates the settings, loads the models and the gallery.
    pub fn open(&self) -> Result<(Recognizer, LoadReport), Error> {
        self.validate()?;
        let engine = Engine::load(self.engine_config())?;
        let (gallery, report) = Gallery::open(&self.data_dir)?;
        Ok((
            Recognizer {
                engine: Arc::new(engine),
                gallery: Arc::new(gallery),
                tolerance: self.tolerance,
                max_pixels: self.max_pixels,
            },
            report,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_original_services() {
        let s = Settings::default();
        assert_eq!((s.tolerance, s.upsample, s.jitters), (0.45, 1, 1));
        assert!(s.validate().is_ok());
    }

    #[test]
    fn nonsense_is_refused_with_the_variable_name() {
        for (s, var) in [
            (
                Settings {
                    tolerance: f64::NAN,
                    ..Default::default()
                },
                "FACE_TOLERANCE",
            ),
            (
                Settings {
                    tolerance: 0.0,
                    ..Default::default()
                },
                "FACE_TOLERANCE",
            ),
            (
                Settings {
                    upsample: 9,
                    ..Default::default()
                },
                "FACE_UPSAMPLE",
            ),
            (
                Settings {
                    jitters: 0,
                    ..Default::default()
                },
                "FACE_JITTERS",
            ),
            (
                Settings {
                    max_pixels: 0,
                    ..Default::default()
                },
                "FACE_MAX_PIXELS",
            ),
        ] {
            let err = s.validate().unwrap_err().to_string();
            assert!(err.contains(var), "{err}");
        }
    }
}
