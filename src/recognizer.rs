//! Recognize and enroll: image bytes in, JSON-ready answers out. The CLI and the HTTP API both
//! go through here, so they give the same answers.

use std::sync::Arc;

use serde::Serialize;

use crate::engine::{Encoding, Engine, Face, FaceBox};
use crate::error::Error;
use crate::gallery::{Gallery, LabelChange, NewSample, Rejection, StudentId};
use crate::image_io::{self, RgbImage, DEFAULT_MAX_PIXELS};
use crate::metrics::Path::Request;
use crate::pipeline::{self, timed, Analysis, Purpose};
use crate::quality::{FaceQuality, QualityLimits, DEFAULT_ENROLL_JITTERS};

/// One face in a recognize answer: `{"box":[t,r,b,l],"label":"alip","distance":0.38}`, and
/// `"ambiguous":["alip","budi"]` when a margin refused the match.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recognition {
    /// Where the face is in the photo.
    #[serde(rename = "box")]
    pub bbox: FaceBox,
    /// The student id matched, or `Unknown`.
    pub label: String,
    /// Distance to the closest enrolled encoding (`None` with an empty gallery).
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
    /// Faces detected in the photo.
    pub faces_found: usize,
    /// Samples saved (0 or 1).
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
    /// The checks of `quality`, with the duplicate check at the match tolerance.
    pub fn new(quality: QualityLimits) -> EnrollPolicy {
        EnrollPolicy {
            quality,
            duplicate_distance: None,
        }
    }

    /// The quality limits.
    pub fn quality(&self) -> &QualityLimits {
        &self.quality
    }

    /// The distance within which another person's sample refuses a new face (`None`: the
    /// match tolerance; 0: no check).
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
    /// Enroll even within the duplicate distance of another person (`force=true`).
    pub force: bool,
    /// The API key's label, or `cli`: for the audit log.
    pub by: String,
    /// The person's name and group, set by this enrollment (nothing by default).
    pub label: LabelChange,
}

impl Default for EnrollRequest {
    fn default() -> Self {
        EnrollRequest {
            force: false,
            by: "cli".into(),
            label: LabelChange::default(),
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
        /// The face's encoding.
        encoding: &'a Encoding,
        /// Width of the face's box in pixels when it was taken.
        face_px: u32,
        /// Its sharpness when it was taken.
        sharpness: f64,
    },
}

/// What [`Recognizer::enroll_offered`] did: faces offered, found (a photo's face detected, an
/// encoding taken as is), saved, and why each refused one was.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OfferedOutcome {
    /// Faces offered.
    pub offered: usize,
    /// Faces found (a photo's face detected, an encoding taken as is).
    pub faces_found: usize,
    /// Samples saved.
    pub saved: usize,
    /// Why each refused face was refused.
    pub refused: Vec<String>,
}

/// What one photo offers for enrollment: its largest face and that face's crop.
pub struct Candidate {
    /// Faces detected in the photo.
    pub faces_found: usize,
    /// The largest face and its crop as JPEG (None without a face).
    pub face: Option<(Face, Vec<u8>)>,
    /// The largest face's quality, measured on the box and landmarks its encoding came from
    /// (None without a face).
    pub quality: Option<FaceQuality>,
}

/// A photo to work on: its bytes (decoded within the recognizer's memory bounds: a large photo
/// is never held whole while detecting) or an image already decoded (a camera frame).
#[derive(Debug, Clone, Copy)]
pub enum Photo<'a> {
    /// An encoded photo (JPEG, PNG, ...), as uploaded.
    Bytes(&'a [u8]),
    /// An upright RGB image.
    Image(&'a RgbImage),
}

/// How faces are matched; `None` takes the recognizer's own setting.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MatchOptions {
    /// The match tolerance (default [`Recognizer::tolerance`]).
    pub tolerance: Option<f64>,
    /// The lead a match needs over the closest other person (default
    /// [`Recognizer::match_margin`]; 0: the original rule).
    pub margin: Option<f64>,
}

impl MatchOptions {
    /// The recognizer's defaults with `tolerance` (when given) instead of its own.
    pub fn tolerance(tolerance: Option<f64>) -> MatchOptions {
        MatchOptions {
            tolerance,
            margin: None,
        }
    }
}

/// The faces of a photo with their labels, and the photo's upright (EXIF-turned) width and
/// height, e.g. for an event's `frame_info`.
#[derive(Debug, Clone, PartialEq)]
pub struct Recognized {
    /// Every face found, with its best label.
    pub faces: Vec<Recognition>,
    /// Upright width and height of the photo.
    pub size: (usize, usize),
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
    /// [`Recognizer::recognize`] / [`Recognizer::candidate`] with [`Photo::Bytes`]: they never
    /// hold a large photo whole while detecting.
    pub fn decode(&self, bytes: &[u8]) -> Result<RgbImage, Error> {
        Ok(image_io::decode(bytes, self.max_pixels)?)
    }

    /// The pipeline over a photo ([`pipeline::analyze_bytes`] / [`pipeline::analyze_image`]).
    fn analyze(&self, photo: Photo<'_>, purpose: Purpose) -> Result<Analysis, Error> {
        Ok(match photo {
            Photo::Bytes(bytes) => {
                pipeline::analyze_bytes(&self.engine, bytes, self.max_pixels, purpose)?
            }
            Photo::Image(image) => pipeline::analyze_image(&self.engine, image, purpose),
        })
    }

    /// Every face in the photo with its best label, and the photo's upright size. The stages
    /// of a photo given as bytes and detected at full size are timed for `/metrics`.
    pub fn recognize(&self, photo: Photo<'_>, options: MatchOptions) -> Result<Recognized, Error> {
        let mut analysis = self.analyze(photo, Purpose::Recognize)?;
        let faces: Vec<Recognition> = timed(&mut analysis.times.matching, || {
            analysis
                .faces
                .into_iter()
                .map(|face| self.label(face, options))
                .collect()
        });
        if analysis.whole && matches!(photo, Photo::Bytes(_)) {
            analysis.times.record(Request, !faces.is_empty());
        }
        Ok(Recognized {
            faces,
            size: analysis.size,
        })
    }

    /// The best label for one encoded face: within the tolerance and ahead of the closest other
    /// person by the margin (`options`, else the recognizer's own).
    pub fn label(&self, face: Face, options: MatchOptions) -> Recognition {
        let tolerance = options.tolerance.unwrap_or(self.tolerance);
        let margin = options.margin.unwrap_or(self.match_margin);
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

    /// Finds the faces of a photo to enroll and keeps the largest, encoded with `jitters`
    /// re-encodings (1 = none; default [`Recognizer::enroll_jitters`]), with its JPEG crop and
    /// its quality.
    pub fn candidate(&self, photo: Photo<'_>, jitters: Option<u32>) -> Result<Candidate, Error> {
        let jitters = jitters.unwrap_or(self.enroll_jitters);
        let analysis = self.analyze(photo, Purpose::Enroll { jitters })?;
        let (faces_found, crop) = (analysis.faces_found, analysis.largest_crop);
        let face = analysis.faces.into_iter().next();
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

    /// Enrolls the largest face of one photo for `student_id` (`request`: who, and whether the
    /// duplicate check is overridden; [`EnrollRequest::default`] from the command line). A photo
    /// without a face saves nothing and says so; an invalid id, a bad image or a refused face
    /// writes nothing at all. The face is refused when it is below [`EnrollPolicy`]'s quality
    /// limits ([`Error::PoorFace`]), or within its duplicate distance of another person's
    /// sample unless `request.force` (checked and written under the gallery's write lock).
    pub fn enroll(
        &self,
        student_id: &str,
        photo: Photo<'_>,
        request: &EnrollRequest,
    ) -> Result<EnrollOutcome, Error> {
        let id = StudentId::parse_new(student_id).map_err(Error::InvalidId)?;
        let candidate = self.candidate(photo, None)?;
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
        let limit = self
            .enroll_policy
            .duplicate_limit(self.tolerance, request.force);
        self.gallery
            .enroll_labelled(id, vec![sample], limit, &request.label, &request.by)?;
        Ok(EnrollOutcome {
            faces_found: candidate.faces_found,
            saved: 1,
        })
    }

    /// Records the largest face of a photo as *not* `id` ([`Gallery::reject`]): the face is
    /// found as enrollment finds it (without its quality limits, one encoding: a rejection
    /// needs to be close, not perfect). [`Error::NoFace`] without a face; a person who is not
    /// enrolled is [`crate::gallery::GalleryError::NotEnrolled`]. Nothing is written on error.
    pub fn reject(&self, id: &StudentId, photo: Photo<'_>, by: &str) -> Result<Rejection, Error> {
        let candidate = self.candidate(photo, Some(1))?;
        let Some((face, _crop)) = candidate.face else {
            return Err(Error::NoFace);
        };
        Ok(self.gallery.reject(id, &[face.encoding], by)?)
    }

    /// Enrolls for `student_id` every offered face that passes the checks of
    /// [`Recognizer::enroll`] (quality limits, then the duplicate check unless
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
                Offered::Photo(bytes) => match self.candidate(Photo::Bytes(bytes), None) {
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
        let limit = self
            .enroll_policy
            .duplicate_limit(self.tolerance, request.force);
        self.gallery
            .enroll_labelled(&id, samples, limit, &request.label, &request.by)?;
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
