//! Recognize and enroll: image bytes in, JSON-ready answers out. The CLI and the HTTP API both
//! go through here, so they give the same answers.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::engine::{largest_box, Encoding, Engine, Face, FaceBox, Frame};
use crate::error::Error;
use crate::gallery::{Gallery, NewSample, Rejection, StudentId};
use crate::image_io::{self, Oriented, RgbImage, DEFAULT_MAX_PIXELS};
use crate::metrics::{stages, Path::Request, Stage};
use crate::quality::{FaceQuality, QualityLimits, DEFAULT_ENROLL_JITTERS};

/// One face in a recognize answer: `{"box":[t,r,b,l],"label":"alip","distance":0.38}`, and
/// `"ambiguous":["alip","budi"]` when a margin refused the match.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recognition {
    #[serde(rename = "box")]
    pub bbox: FaceBox,
    pub label: String,
    pub distance: Option<f64>,
    /// Within the tolerance of two people, neither ahead by `MATCH_MARGIN`: both (the label is
    /// `Unknown`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ambiguous: Option<[String; 2]>,
    /// The closest other person and their distance, for the camera's decisions.
    #[serde(skip)]
    pub runner_up: Option<(String, f64)>,
}

impl Recognition {
    /// A face labelled `label` at `distance`, with no runner-up known.
    pub fn new(bbox: FaceBox, label: &str, distance: Option<f64>) -> Recognition {
        Recognition {
            bbox,
            label: label.to_string(),
            distance,
            ambiguous: None,
            runner_up: None,
        }
    }
}

/// The `msg` of an enroll answer: `{"faces_found":1,"saved":1}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EnrollOutcome {
    pub faces_found: usize,
    pub saved: usize,
}

/// What enrollment checks: the face's quality (`ENROLL_MIN_FACE`, `ENROLL_MIN_SHARPNESS`,
/// `ENROLL_MAX_YAW`) and that it is nobody else's (`ENROLL_DUPLICATE_DISTANCE`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnrollPolicy {
    quality: QualityLimits,
    /// A new face this close to another person's sample is refused; `None`: the tolerance.
    duplicate_distance: Option<f64>,
}

impl EnrollPolicy {
    pub fn new(quality: QualityLimits) -> EnrollPolicy {
        EnrollPolicy {
            quality,
            duplicate_distance: None,
        }
    }

    pub fn quality(&self) -> &QualityLimits {
        &self.quality
    }

    pub fn with_duplicate_distance(mut self, distance: Option<f64>) -> EnrollPolicy {
        self.duplicate_distance = distance;
        self
    }

    /// The distance within which another person's sample refuses a new face (`None`: no check).
    pub fn duplicate_limit(&self, tolerance: f64, force: bool) -> Option<f64> {
        let limit = self.duplicate_distance.unwrap_or(tolerance);
        (!force && limit > 0.0).then_some(limit)
    }
}

/// Who enrolls, and whether the duplicate check is overridden (`force=true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollRequest {
    pub force: bool,
    /// The API key's label, or `cli`: for the audit log.
    pub by: String,
}

impl Default for EnrollRequest {
    fn default() -> Self {
        EnrollRequest {
            force: false,
            by: "cli".into(),
        }
    }
}

/// A face offered for enrollment from elsewhere than an upload (the unknown faces the camera
/// kept, [`crate::unknowns`]).
#[derive(Debug, Clone, Copy)]
pub enum Offered<'a> {
    /// A photo of the face (a crop with a margin): detected, encoded and checked again, as
    /// `/enroll` does with an upload.
    Photo(&'a [u8]),
    /// An encoding with the face's size and sharpness measured when it was taken (no crop
    /// kept): checked against the size and sharpness limits (its yaw is not known).
    Encoding {
        encoding: &'a Encoding,
        face_px: u32,
        sharpness: f64,
    },
}

/// What [`Recognizer::enroll_offered`] did: faces offered, found (a photo's face detected, an
/// encoding taken as is), saved, and why each refused one was.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OfferedOutcome {
    pub offered: usize,
    pub faces_found: usize,
    pub saved: usize,
    pub refused: Vec<String>,
}

/// What one photo offers for enrollment: its largest face and that face's crop.
pub struct Candidate {
    pub faces_found: usize,
    pub face: Option<(Face, Vec<u8>)>,
    /// The largest face's quality, measured on the box and landmarks its encoding came from
    /// (None without a face).
    pub quality: Option<FaceQuality>,
}

/// What an analysis is for: recognizing encodes every face at the engine's jitters; enrolling
/// only the largest face, at its own jitters, and keeps its crop.
#[derive(Clone, Copy)]
enum Purpose {
    Recognize,
    Enroll { jitters: u32 },
}

/// The faces of one photo, with what enrolling needs.
struct Analysis {
    /// Every face (recognizing) or the largest only (enrolling).
    faces: Vec<Face>,
    /// Faces detected, encoded or not.
    faces_found: usize,
    /// Upright width and height of the photo.
    size: (usize, usize),
    /// The pixels inside the largest face's box (enrolling only).
    largest_crop: Option<RgbImage>,
}

fn crop_box(image: &Oriented<'_>, b: &FaceBox) -> RgbImage {
    image.crop(
        b.top.max(0) as usize,
        b.right.max(0) as usize,
        b.bottom.max(0) as usize,
        b.left.max(0) as usize,
    )
}

/// Cheap to clone: the engine and gallery are shared. Built with [`Recognizer::new`] and the
/// `with_*` methods; read through its accessors.
#[derive(Clone)]
pub struct Recognizer {
    engine: Arc<Engine>,
    gallery: Arc<Gallery>,
    /// Default match tolerance (`FACE_TOLERANCE`).
    tolerance: f64,
    /// Largest image accepted, in pixels (`FACE_MAX_PIXELS`).
    max_pixels: u64,
    /// Lead a match needs over the closest other person in `/recognize` answers
    /// (`MATCH_MARGIN`; 0: the original rule).
    match_margin: f64,
    /// Jittered re-encodings averaged for a face being enrolled (`ENROLL_JITTERS`); recognition
    /// keeps the engine's own (`FACE_JITTERS`).
    enroll_jitters: u32,
    /// What enrollment checks.
    enroll_policy: EnrollPolicy,
}

impl Recognizer {
    /// A recognizer over `engine` and `gallery` with the default tolerance (0.45), image size
    /// limit, enrollment jitters and checks; the `with_*` methods change them.
    pub fn new(engine: Arc<Engine>, gallery: Arc<Gallery>) -> Recognizer {
        Recognizer {
            engine,
            gallery,
            tolerance: 0.45,
            max_pixels: DEFAULT_MAX_PIXELS,
            match_margin: 0.0,
            enroll_jitters: DEFAULT_ENROLL_JITTERS,
            enroll_policy: EnrollPolicy::default(),
        }
    }

    /// The same recognizer on another engine (same gallery and settings).
    pub fn with_engine(mut self, engine: Arc<Engine>) -> Self {
        self.engine = engine;
        self
    }

    /// The default match tolerance (`FACE_TOLERANCE`).
    pub fn with_tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The largest image accepted, in pixels (`FACE_MAX_PIXELS`).
    pub fn with_max_pixels(mut self, max_pixels: u64) -> Self {
        self.max_pixels = max_pixels;
        self
    }

    /// The lead a match needs over the closest other person (`MATCH_MARGIN`; 0: off).
    pub fn with_match_margin(mut self, margin: f64) -> Self {
        self.match_margin = margin;
        self
    }

    /// Jittered re-encodings averaged for a face being enrolled (`ENROLL_JITTERS`).
    pub fn with_enroll_jitters(mut self, jitters: u32) -> Self {
        self.enroll_jitters = jitters;
        self
    }

    /// What enrollment checks (quality limits, the duplicate distance).
    pub fn with_enroll_policy(mut self, policy: EnrollPolicy) -> Self {
        self.enroll_policy = policy;
        self
    }

    /// The face engine (models and the thread pool its work runs on).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The enrolled people.
    pub fn gallery(&self) -> &Arc<Gallery> {
        &self.gallery
    }

    /// The default match tolerance.
    pub fn tolerance(&self) -> f64 {
        self.tolerance
    }

    /// The largest image accepted, in pixels.
    pub fn max_pixels(&self) -> u64 {
        self.max_pixels
    }

    /// The lead a match needs over the closest other person (0: off).
    pub fn match_margin(&self) -> f64 {
        self.match_margin
    }

    /// Jittered re-encodings averaged for a face being enrolled.
    pub fn enroll_jitters(&self) -> u32 {
        self.enroll_jitters
    }

    /// What enrollment checks.
    pub fn enroll_policy(&self) -> &EnrollPolicy {
        &self.enroll_policy
    }

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
    fn analyze_bytes(&self, bytes: &[u8], purpose: Purpose) -> Result<Analysis, Error> {
        let probe = image_io::probe(bytes, self.max_pixels)?;
        let size = (probe.width(), probe.height());
        if self
            .engine
            .detects_at_full_size(probe.stored_width, probe.stored_height)
        {
            let started = Instant::now();
            let stored = image_io::decode_stored(bytes, &probe)?;
            let image = image_io::upright(stored, probe.orientation);
            return Ok(match purpose {
                Purpose::Recognize => {
                    stages().observe(Request, Stage::Decode, started.elapsed());
                    let faces = self.analyze_timed(&image);
                    Analysis {
                        faces_found: faces.len(),
                        faces,
                        size,
                        largest_crop: None,
                    }
                }
                Purpose::Enroll { jitters } => {
                    let (faces_found, face) = self.engine.analyze_largest(&image, jitters);
                    let largest_crop = face
                        .as_ref()
                        .map(|f| crop_box(&Oriented::upright(&image), &f.bbox));
                    Analysis {
                        faces: face.into_iter().collect(),
                        faces_found,
                        size,
                        largest_crop,
                    }
                }
            });
        }
        let small = image_io::decode_downscaled(bytes, &probe, self.engine.detect_max_pixels())?;
        let boxes = self.engine.detect_on_copy(&small, size);
        drop(small);
        if boxes.is_empty() {
            return Ok(Analysis {
                faces: Vec::new(),
                faces_found: 0,
                size,
                largest_crop: None,
            });
        }
        let stored = image_io::decode_stored(bytes, &probe)?;
        let image = Oriented::new(&stored, probe.orientation);
        Ok(match purpose {
            Purpose::Recognize => Analysis {
                faces: self.engine.encode_from_crops(&image, &boxes),
                faces_found: boxes.len(),
                size,
                largest_crop: None,
            },
            Purpose::Enroll { jitters } => {
                // Detected on the small copy: only the largest face is encoded at full size.
                let largest: Vec<FaceBox> = largest_box(&boxes).into_iter().collect();
                let faces = self
                    .engine
                    .encode_from_crops_with(&image, &largest, jitters);
                let largest_crop = faces.first().map(|f| crop_box(&image, &f.bbox));
                Analysis {
                    faces,
                    faces_found: boxes.len(),
                    size,
                    largest_crop,
                }
            }
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

    /// The best label for one encoded face, with `MATCH_MARGIN`; `tolerance` overrides the
    /// default.
    pub fn label(&self, face: Face, tolerance: Option<f64>) -> Recognition {
        self.label_with_margin(face, tolerance, self.match_margin)
    }

    /// The best label for one encoded face: within the tolerance and ahead of the closest other
    /// person by `margin` (0: the original rule).
    pub fn label_with_margin(
        &self,
        face: Face,
        tolerance: Option<f64>,
        margin: f64,
    ) -> Recognition {
        let tolerance = tolerance.unwrap_or(self.tolerance);
        let m = self
            .gallery
            .best_match_with_margin(&face.encoding, tolerance, margin);
        Recognition {
            bbox: face.bbox,
            label: m.label,
            distance: m.distance,
            ambiguous: m.ambiguous,
            runner_up: m.runner_up,
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
        let analysis = self.analyze_bytes(bytes, Purpose::Recognize)?;
        let started = Instant::now();
        let found: Vec<Recognition> = analysis
            .faces
            .into_iter()
            .map(|face| self.label(face, tolerance))
            .collect();
        if !found.is_empty() {
            stages().observe(Request, Stage::Match, started.elapsed());
        }
        Ok((found, analysis.size))
    }

    /// [`Engine::analyze`] of an image within the detection budget, each stage timed for
    /// `/metrics`.
    fn analyze_timed(&self, image: &RgbImage) -> Vec<Face> {
        let engine = &self.engine;
        let started = Instant::now();
        let frame = Frame::new(image);
        let boxes = engine.detect_in(&frame);
        stages().observe(Request, Stage::Detect, started.elapsed());
        if boxes.is_empty() {
            return Vec::new();
        }
        let started = Instant::now();
        let shapes = engine.shapes_in(&frame, &boxes);
        stages().observe(Request, Stage::Landmarks, started.elapsed());
        let started = Instant::now();
        let shaped: Vec<_> = boxes.into_iter().zip(shapes).collect();
        let faces = engine.encode_shapes(&frame, &shaped);
        stages().observe(Request, Stage::Encode, started.elapsed());
        faces
    }

    /// Finds the faces of a photo to enroll and keeps the largest, encoded with
    /// [`Recognizer::enroll_jitters`], with its JPEG crop and its quality.
    pub fn candidate(&self, image: &RgbImage) -> Result<Candidate, Error> {
        let (faces_found, face) = self.engine.analyze_largest(image, self.enroll_jitters);
        let crop = face
            .as_ref()
            .map(|f| crop_box(&Oriented::upright(image), &f.bbox));
        Self::candidate_from(faces_found, face, crop)
    }

    /// As [`Recognizer::candidate`], from the photo's bytes, within the memory bounds of
    /// [`Recognizer::recognize_bytes`].
    pub fn candidate_bytes(&self, bytes: &[u8]) -> Result<Candidate, Error> {
        self.candidate_bytes_with(bytes, self.enroll_jitters)
    }

    /// As [`Recognizer::candidate_bytes`], with `jitters` re-encodings (1 = none) instead of
    /// [`Recognizer::enroll_jitters`].
    pub fn candidate_bytes_with(&self, bytes: &[u8], jitters: u32) -> Result<Candidate, Error> {
        let analysis = self.analyze_bytes(bytes, Purpose::Enroll { jitters })?;
        let face = analysis.faces.into_iter().next();
        Self::candidate_from(analysis.faces_found, face, analysis.largest_crop)
    }

    fn candidate_from(
        faces_found: usize,
        face: Option<Face>,
        crop: Option<RgbImage>,
    ) -> Result<Candidate, Error> {
        let (Some(face), Some(crop)) = (face, crop) else {
            return Ok(Candidate {
                faces_found,
                face: None,
                quality: None,
            });
        };
        // The crop is exactly the box's pixels: the quality of the face in the photo.
        let quality = FaceQuality::measure_crop(&crop, &face.bbox, &face.landmarks);
        let jpeg = image_io::encode_jpeg(&crop)?;
        Ok(Candidate {
            faces_found,
            face: Some((face, jpeg)),
            quality: Some(quality),
        })
    }

    /// Enrolls the largest face of one photo for `student_id`, from the command line, with
    /// every check. See [`Recognizer::enroll_with`].
    pub fn enroll_bytes(&self, student_id: &str, bytes: &[u8]) -> Result<EnrollOutcome, Error> {
        self.enroll_with(student_id, bytes, &EnrollRequest::default())
    }

    /// Enrolls the largest face of one photo for `student_id`. A photo without a face saves
    /// nothing and says so; an invalid id, a bad image or a refused face writes nothing at all.
    /// The face is refused when it is below [`EnrollPolicy`]'s quality limits
    /// ([`Error::PoorFace`]), or within its duplicate distance of another person's sample unless
    /// `request.force` (checked and written under the gallery's write lock).
    pub fn enroll_with(
        &self,
        student_id: &str,
        bytes: &[u8],
        request: &EnrollRequest,
    ) -> Result<EnrollOutcome, Error> {
        let id = StudentId::parse_new(student_id).map_err(Error::InvalidId)?;
        let candidate = self.candidate_bytes(bytes)?;
        self.enroll_candidate(&id, candidate, request)
    }

    /// [`Recognizer::enroll_with`] for a decoded image (a camera frame).
    pub fn enroll_image(
        &self,
        student_id: &str,
        image: &RgbImage,
        request: &EnrollRequest,
    ) -> Result<EnrollOutcome, Error> {
        let id = StudentId::parse_new(student_id).map_err(Error::InvalidId)?;
        let candidate = self.candidate(image)?;
        self.enroll_candidate(&id, candidate, request)
    }

    /// Enrolls a photo's largest face through the quality and duplicate checks.
    fn enroll_candidate(
        &self,
        id: &StudentId,
        candidate: Candidate,
        request: &EnrollRequest,
    ) -> Result<EnrollOutcome, Error> {
        let Some((face, jpeg)) = candidate.face else {
            return Ok(EnrollOutcome {
                faces_found: 0,
                saved: 0,
            });
        };
        let sample = self.checked_sample(face, jpeg, candidate.quality, candidate.faces_found)?;
        let gallery = &self.gallery;
        match self
            .enroll_policy
            .duplicate_limit(self.tolerance, request.force)
        {
            Some(limit) => gallery.enroll_unique(id, vec![sample], limit, &request.by)?,
            None => gallery.enroll(id, vec![sample], &request.by)?,
        };
        Ok(EnrollOutcome {
            faces_found: candidate.faces_found,
            saved: 1,
        })
    }

    /// Records the largest face of a photo as *not* `id` ([`Gallery::reject`]): the face is
    /// found as enrollment finds it (without its quality limits, one encoding: a rejection
    /// needs to be close, not perfect). [`Error::NoFace`] without a face; a person who is not
    /// enrolled is [`crate::gallery::GalleryError::NotEnrolled`]. Nothing is written on error.
    pub fn reject_bytes(&self, id: &StudentId, bytes: &[u8], by: &str) -> Result<Rejection, Error> {
        let candidate = self.candidate_bytes_with(bytes, 1)?;
        let Some((face, _crop)) = candidate.face else {
            return Err(Error::NoFace);
        };
        Ok(self.gallery.reject(id, &[face.encoding], by)?)
    }

    /// Enrolls for `student_id` every offered face that passes the checks of
    /// [`Recognizer::enroll_with`] (quality limits, then the duplicate check unless
    /// `request.force`), in one write. Faces below the limits are left out and listed in
    /// [`OfferedOutcome::refused`]; when none passes nothing is written and the answer is
    /// [`Error::PoorFace`] (the first refusal) or [`Error::NothingToEnroll`].
    pub fn enroll_offered(
        &self,
        student_id: &str,
        offered: &[Offered<'_>],
        request: &EnrollRequest,
    ) -> Result<OfferedOutcome, Error> {
        let id = StudentId::parse_new(student_id).map_err(Error::InvalidId)?;
        let mut samples = Vec::new();
        let mut refused = Vec::new();
        let mut first_refusal = None;
        let mut faces_found = 0;
        for offer in offered {
            let checked = match *offer {
                Offered::Photo(bytes) => match self.candidate_bytes(bytes) {
                    Err(e) => Err(e),
                    Ok(Candidate { face: None, .. }) => {
                        Err(Error::NothingToEnroll("no face found in the photo".into()))
                    }
                    Ok(Candidate {
                        face: Some((face, jpeg)),
                        quality,
                        faces_found: found,
                    }) => {
                        faces_found += 1;
                        self.checked_sample(face, jpeg, quality, found)
                    }
                },
                Offered::Encoding {
                    encoding,
                    face_px,
                    sharpness,
                } => {
                    faces_found += 1;
                    self.checked_encoding(encoding, face_px, sharpness)
                }
            };
            match checked {
                Ok(sample) => samples.push(sample),
                Err(Error::PoorFace { refusal, .. }) => {
                    refused.push(refusal.message.clone());
                    first_refusal.get_or_insert(refusal);
                }
                Err(e) => refused.push(e.to_string()),
            }
        }
        if samples.is_empty() {
            return Err(match first_refusal {
                Some(refusal) => Error::PoorFace {
                    refusal,
                    faces_found,
                },
                None => Error::NothingToEnroll(format!(
                    "none of the {} faces offered can be enrolled: {}",
                    offered.len(),
                    refused.join("; ")
                )),
            });
        }
        let saved = samples.len();
        match self
            .enroll_policy
            .duplicate_limit(self.tolerance, request.force)
        {
            Some(limit) => self
                .gallery
                .enroll_unique(&id, samples, limit, &request.by)?,
            None => self.gallery.enroll(&id, samples, &request.by)?,
        };
        Ok(OfferedOutcome {
            offered: offered.len(),
            faces_found,
            saved,
            refused,
        })
    }

    /// The sample for an encoding kept without its photo: refused below the size and sharpness
    /// limits (the yaw, not measured, is taken as frontal).
    fn checked_encoding(
        &self,
        encoding: &Encoding,
        face_px: u32,
        sharpness: f64,
    ) -> Result<NewSample, Error> {
        let quality = FaceQuality {
            face_px,
            sharpness,
            yaw: 0.0,
        };
        self.enroll_policy
            .quality()
            .check(&quality)
            .map_err(|refusal| Error::PoorFace {
                refusal,
                faces_found: 1,
            })?;
        Ok(NewSample::new(*encoding).with_quality(serde_json::json!({
            "face_px": face_px,
            "sharpness": sharpness,
        })))
    }

    /// The sample to enroll for a candidate's face, with its crop and measured quality; refused
    /// when the quality is below the policy's limits.
    pub fn checked_sample(
        &self,
        face: Face,
        jpeg: Vec<u8>,
        quality: Option<FaceQuality>,
        faces_found: usize,
    ) -> Result<NewSample, Error> {
        let mut sample = NewSample::new(face.encoding).with_crop(jpeg);
        if let Some(q) = quality {
            self.enroll_policy
                .quality()
                .check(&q)
                .map_err(|refusal| Error::PoorFace {
                    refusal,
                    faces_found,
                })?;
            if let Ok(value) = serde_json::to_value(q) {
                sample = sample.with_quality(value);
            }
        }
        Ok(sample)
    }
}
