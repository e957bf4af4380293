//! Recognize and enroll: image bytes in, JSON-ready answers out. The CLI and the HTTP API both
//! go through here, so they give the same answers.

use std::sync::Arc;

use serde::Serialize;

use crate::engine::{Engine, Face, FaceBox};
use crate::error::Error;
use crate::gallery::{Gallery, StudentId};
use crate::image_io::{self, RgbImage};

/// One face in a recognize answer: `{"box":[t,r,b,l],"label":"alip","distance":0.38}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recognition {
    #[serde(rename = "box")]
    pub bbox: FaceBox,
    pub label: String,
    pub distance: Option<f64>,
}

/// The `msg` of an enroll answer: `{"faces_found":1,"saved":1}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EnrollOutcome {
    pub faces_found: usize,
    pub saved: usize,
}

/// What one photo offers for enrollment: its largest face and that face's crop.
pub struct Candidate {
    pub faces_found: usize,
    pub face: Option<(Face, Vec<u8>)>,
}

/// Cheap to clone: the engine and gallery are shared.
#[derive(Clone)]
pub struct Recognizer {
    pub engine: Arc<Engine>,
    pub gallery: Arc<Gallery>,
    /// Default match tolerance (`FACE_TOLERANCE`).
    pub tolerance: f64,
    /// Largest image accepted, in pixels (`FACE_MAX_PIXELS`).
    pub max_pixels: u64,
}

impl Recognizer {
    pub fn decode(&self, bytes: &[u8]) -> Result<RgbImage, Error> {
        Ok(image_io::decode(bytes, self.max_pixels)?)
    }

    /// Every face in the image with its best label; `tolerance` overrides the default.
    pub fn recognize_image(&self, image: &RgbImage, tolerance: Option<f64>) -> Vec<Recognition> {
        self.engine
            .analyze(image)
            .into_iter()
            .map(|face| self.label(face, tolerance))
            .collect()
    }

    /// The best label for one encoded face; `tolerance` overrides the default.
    pub fn label(&self, face: Face, tolerance: Option<f64>) -> Recognition {
        let m = self
            .gallery
            .best_match(&face.encoding, tolerance.unwrap_or(self.tolerance));
        Recognition {
            bbox: face.bbox,
            label: m.label,
            distance: m.distance,
        }
    }

    pub fn recognize_bytes(
        &self,
        bytes: &[u8],
        tolerance: Option<f64>,
    ) -> Result<Vec<Recognition>, Error> {
        let image = self.decode(bytes)?;
        Ok(self.recognize_image(&image, tolerance))
    }

    /// Finds the faces of a photo to enroll and keeps the largest, with its JPEG crop.
    pub fn candidate(&self, image: &RgbImage) -> Result<Candidate, Error> {
        let faces = self.engine.analyze(image);
        let faces_found = faces.len();
        let Some(largest) = faces.into_iter().reduce(|best, f| {
            if f.bbox.area() > best.bbox.area() {
                f
            } else {
                best
            }
        }) else {
            return Ok(Candidate {
                faces_found,
                face: None,
            });
        };
        let b = largest.bbox;
        let crop = image.crop(
            b.top.max(0) as usize,
            b.right.max(0) as usize,
            b.bottom.max(0) as usize,
            b.left.max(0) as usize,
        );
        let jpeg = image_io::encode_jpeg(&crop)?;
        Ok(Candidate {
            faces_found,
            face: Some((largest, jpeg)),
        })
    }

    /// Enrolls the largest face of one photo for `student_id`. A photo without a face saves
    /// nothing and says so; an invalid id or a bad image writes nothing at all.
    pub fn enroll_bytes(&self, student_id: &str, bytes: &[u8]) -> Result<EnrollOutcome, Error> {
        let id = StudentId::parse(student_id).map_err(Error::InvalidId)?;
        let image = self.decode(bytes)?;
        let candidate = self.candidate(&image)?;
        let Some((face, jpeg)) = candidate.face else {
            return Ok(EnrollOutcome {
                faces_found: 0,
                saved: 0,
            });
        };
        let crop = self.gallery.save_crop(&id, &jpeg)?;
        if let Err(e) = self.gallery.append(&id, &[face.encoding]) {
            // Keep data/ consistent: no crop without its encoding.
            let _ = std::fs::remove_file(crop);
            return Err(e.into());
        }
        Ok(EnrollOutcome {
            faces_found: candidate.faces_found,
            saved: 1,
        })
    }
}
