//! Recognize and enroll: image bytes in, JSON-ready answers out. The CLI and the HTTP API both
//! go through here, so they give the same answers.

use std::sync::Arc;

use serde::Serialize;

use crate::engine::{Engine, Face, FaceBox};
use crate::error::Error;
use crate::gallery::{Gallery, StudentId};
use crate::image_io::{self, Oriented, RgbImage};

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

/// The faces of one photo, with what enrolling needs.
struct Analysis {
    faces: Vec<Face>,
    /// Upright width and height of the photo.
    size: (usize, usize),
    /// The pixels inside the largest face's box (only when asked for).
    largest_crop: Option<RgbImage>,
}

/// The face with the largest box (the first of equals).
fn largest(faces: &[Face]) -> Option<&Face> {
    faces.iter().reduce(|best, f| {
        if f.bbox.area() > best.bbox.area() {
            f
        } else {
            best
        }
    })
}

fn crop_box(image: &Oriented<'_>, b: &FaceBox) -> RgbImage {
    image.crop(
        b.top.max(0) as usize,
        b.right.max(0) as usize,
        b.bottom.max(0) as usize,
        b.left.max(0) as usize,
    )
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
    /// The whole photo, upright, at full size. To recognize or enroll from bytes, prefer
    /// [`Recognizer::recognize_bytes`] / [`Recognizer::candidate_bytes`]: they never hold a large
    /// photo whole while detecting.
    pub fn decode(&self, bytes: &[u8]) -> Result<RgbImage, Error> {
        Ok(image_io::decode(bytes, self.max_pixels)?)
    }

    /// Finds and encodes the faces of a photo given as bytes. Within the detection budget this
    /// is decode-then-analyze, the Python library's path. Above it: a small upright copy is
    /// decoded (JPEG: DCT scaling; PNG: rows averaged as they stream) and detected on, its
    /// scratch freed, then, only if a face was found, the photo is decoded at full size as
    /// stored and each face encoded from an upright crop around it: one full-size copy at a
    /// time, and never together with the detector's scratch.
    fn analyze_bytes(&self, bytes: &[u8], want_crop: bool) -> Result<Analysis, Error> {
        let probe = image_io::probe(bytes, self.max_pixels)?;
        let size = (probe.width(), probe.height());
        if self
            .engine
            .detects_at_full_size(probe.stored_width, probe.stored_height)
        {
            let stored = image_io::decode_stored(bytes, &probe)?;
            let image = image_io::upright(stored, probe.orientation);
            let faces = self.engine.analyze(&image);
            let largest_crop = largest(&faces)
                .filter(|_| want_crop)
                .map(|f| crop_box(&Oriented::upright(&image), &f.bbox));
            return Ok(Analysis {
                faces,
                size,
                largest_crop,
            });
        }
        let small = image_io::decode_downscaled(bytes, &probe, self.engine.detect_max_pixels())?;
        let boxes = self.engine.detect_on_copy(&small, size);
        drop(small);
        if boxes.is_empty() {
            return Ok(Analysis {
                faces: Vec::new(),
                size,
                largest_crop: None,
            });
        }
        let stored = image_io::decode_stored(bytes, &probe)?;
        let image = Oriented::new(&stored, probe.orientation);
        let faces = self.engine.encode_from_crops(&image, &boxes);
        let largest_crop = largest(&faces)
            .filter(|_| want_crop)
            .map(|f| crop_box(&image, &f.bbox));
        Ok(Analysis {
            faces,
            size,
            largest_crop,
        })
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

    /// Every face in the photo with its best label; `tolerance` overrides the default.
    pub fn recognize_bytes(
        &self,
        bytes: &[u8],
        tolerance: Option<f64>,
    ) -> Result<Vec<Recognition>, Error> {
        Ok(self.recognize_bytes_sized(bytes, tolerance)?.0)
    }

    /// As [`Recognizer::recognize_bytes`], with the photo's upright (EXIF-turned) width and
    /// height, e.g. for an event's `frame_info`.
    pub fn recognize_bytes_sized(
        &self,
        bytes: &[u8],
        tolerance: Option<f64>,
    ) -> Result<(Vec<Recognition>, (usize, usize)), Error> {
        let analysis = self.analyze_bytes(bytes, false)?;
        let found = analysis
            .faces
            .into_iter()
            .map(|face| self.label(face, tolerance))
            .collect();
        Ok((found, analysis.size))
    }

    /// Finds the faces of a photo to enroll and keeps the largest, with its JPEG crop.
    pub fn candidate(&self, image: &RgbImage) -> Result<Candidate, Error> {
        let faces = self.engine.analyze(image);
        let crop = largest(&faces).map(|f| crop_box(&Oriented::upright(image), &f.bbox));
        Self::candidate_from(faces, crop)
    }

    /// As [`Recognizer::candidate`], from the photo's bytes, within the memory bounds of
    /// [`Recognizer::recognize_bytes`].
    pub fn candidate_bytes(&self, bytes: &[u8]) -> Result<Candidate, Error> {
        let analysis = self.analyze_bytes(bytes, true)?;
        Self::candidate_from(analysis.faces, analysis.largest_crop)
    }

    fn candidate_from(faces: Vec<Face>, crop: Option<RgbImage>) -> Result<Candidate, Error> {
        let faces_found = faces.len();
        let (Some(face), Some(crop)) = (largest(&faces).cloned(), crop) else {
            return Ok(Candidate {
                faces_found,
                face: None,
            });
        };
        let jpeg = image_io::encode_jpeg(&crop)?;
        Ok(Candidate {
            faces_found,
            face: Some((face, jpeg)),
        })
    }

    /// Enrolls the largest face of one photo for `student_id`. A photo without a face saves
    /// nothing and says so; an invalid id or a bad image writes nothing at all.
    pub fn enroll_bytes(&self, student_id: &str, bytes: &[u8]) -> Result<EnrollOutcome, Error> {
        let id = StudentId::parse(student_id).map_err(Error::InvalidId)?;
        let candidate = self.candidate_bytes(bytes)?;
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
