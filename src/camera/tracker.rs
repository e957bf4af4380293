//! Faces that stay in place between frames keep their label for a few frames instead of being
//! encoded again: the encoding (~16 ms a face here, several times that on a Pi) is most of a
//! frame's cost once detection runs on a downscaled copy.
//!
//! A face is "the same" when its box overlaps a box of the previous frames by at least
//! [`MIN_IOU`] and its [`Thumbnail`] changed by at most [`MAX_LOOK_CHANGE`]. It is encoded again
//! every `recheck` frames, when it moves or changes further than that, and when it was not seen
//! for more than [`MAX_MISSED`] frames, so a label is not carried over to someone who steps into
//! the same place a moment later.

use crate::engine::{Encoding, FaceBox};
use crate::quality::Thumbnail;
use crate::recognizer::Recognition;

/// Overlap (intersection over union) above which two boxes are one face that stayed put.
pub const MIN_IOU: f64 = 0.5;
/// Frames a face may go undetected and still keep its track.
pub const MAX_MISSED: u64 = 1;
/// Largest [`Thumbnail::difference`] of one face between frames. Measured on the photos of
/// ../shared/faces at 640x480: two different people differ by 19.5 at the least (27 for the
/// closest 5%); the same frame with its box shifted by 2-4 px by 5-20 (a still face's boxes
/// barely move). Above it the face is encoded again, which costs time, never a wrong label.
pub const MAX_LOOK_CHANGE: f32 = 12.0;

struct Track {
    /// Stays with the face across re-encodings: one face, one stream of votes.
    id: u64,
    recognition: Recognition,
    look: Thumbnail,
    /// Frame number of the last encoding.
    checked: u64,
    /// Frame number the face was last detected in.
    seen: u64,
}

/// What an encoding of this very frame measured of a face, besides its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// The face's encoding in this frame.
    pub encoding: Encoding,
    /// Width of the face's box, in pixels of the full frame.
    pub face_px: u32,
    /// [`crate::quality::sharpness`] of the face.
    pub sharpness: f64,
}

/// One face of a frame: its recognition, the track it belongs to, and what was measured when
/// it was encoded in this frame (`None`: the label was carried over from an earlier frame).
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// The face's box and label.
    pub recognition: Recognition,
    /// The id of the track the face belongs to (stable while it stays in view).
    pub track: u64,
    /// What this frame's encoding measured (`None`: tracked, not encoded).
    pub measured: Option<Measured>,
}

impl Seen {
    /// Whether the label was carried over rather than computed from this frame.
    pub fn tracked(&self) -> bool {
        self.measured.is_none()
    }
}

/// Follows faces from frame to frame, so that a face that stays in place is encoded again only
/// every `recheck` frames.
pub struct Tracker {
    tracks: Vec<Track>,
    recheck: u64,
    next_id: u64,
}

/// Intersection over union of two boxes, 0 when they do not overlap.
pub fn iou(a: &FaceBox, b: &FaceBox) -> f64 {
    let inter = FaceBox {
        top: a.top.max(b.top),
        right: a.right.min(b.right),
        bottom: a.bottom.min(b.bottom),
        left: a.left.max(b.left),
    }
    .area();
    let union = a.area() + b.area() - inter;
    if union <= 0 {
        0.0
    } else {
        inter as f64 / union as f64
    }
}

impl Tracker {
    /// `recheck`: a tracked face is encoded again at least every this many frames (1 = every
    /// frame, i.e. no tracking).
    pub fn new(recheck: u32) -> Tracker {
        Tracker {
            tracks: Vec::new(),
            recheck: u64::from(recheck.max(1)),
            next_id: 0,
        }
    }

    /// The tracks alive now.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.tracks.iter().map(|t| t.id)
    }

    /// The faces of frame `frame` at `boxes`, each with its look. `encode` is called once with
    /// the indices of the boxes that need encoding and returns their recognitions in that order.
    /// A face continuing a track is encoded again anyway when `unsettled(track id)` says so
    /// (a decision still waiting for votes).
    pub fn step(
        &mut self,
        frame: u64,
        faces: &[(FaceBox, Thumbnail)],
        unsettled: impl Fn(u64) -> bool,
        encode: impl FnOnce(&[usize]) -> Vec<(Recognition, Measured)>,
    ) -> Vec<Seen> {
        self.tracks
            .retain(|t| frame.saturating_sub(t.seen) <= MAX_MISSED + 1);
        let matched = self.match_faces(faces);
        let mut seen: Vec<Option<Seen>> = vec![None; faces.len()];
        let mut to_encode = Vec::new();
        for (i, track) in matched.iter().enumerate() {
            match track {
                Some(t)
                    if frame.saturating_sub(self.tracks[*t].checked) < self.recheck
                        && !unsettled(self.tracks[*t].id) =>
                {
                    let track = &mut self.tracks[*t];
                    track.seen = frame;
                    track.recognition.bbox = faces[i].0;
                    track.look = faces[i].1.clone();
                    seen[i] = Some(Seen {
                        recognition: track.recognition.clone(),
                        track: track.id,
                        measured: None,
                    });
                }
                _ => to_encode.push(i),
            }
        }
        let fresh = if to_encode.is_empty() {
            Vec::new()
        } else {
            encode(&to_encode)
        };
        // Tracks of re-encoded faces are replaced by the new recognitions, keeping their ids.
        let ids: Vec<Option<u64>> = to_encode
            .iter()
            .map(|&i| matched[i].map(|t| self.tracks[t].id))
            .collect();
        let mut stale: Vec<usize> = to_encode.iter().filter_map(|&i| matched[i]).collect();
        stale.sort_unstable();
        for t in stale.into_iter().rev() {
            self.tracks.swap_remove(t);
        }
        for ((&i, id), (recognition, measured)) in to_encode.iter().zip(ids).zip(fresh) {
            let id = id.unwrap_or_else(|| {
                self.next_id += 1;
                self.next_id
            });
            self.tracks.push(Track {
                id,
                recognition: recognition.clone(),
                look: faces[i].1.clone(),
                checked: frame,
                seen: frame,
            });
            seen[i] = Some(Seen {
                recognition,
                track: id,
                measured: Some(measured),
            });
        }
        // An encoder that returned fewer answers than asked leaves those faces out.
        seen.into_iter().flatten().collect()
    }

    /// For each face, the track it continues (best overlap first, each track used once).
    fn match_faces(&self, faces: &[(FaceBox, Thumbnail)]) -> Vec<Option<usize>> {
        let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
        for (b, (bbox, look)) in faces.iter().enumerate() {
            for (t, track) in self.tracks.iter().enumerate() {
                let overlap = iou(bbox, &track.recognition.bbox);
                if overlap >= MIN_IOU && look.difference(&track.look) <= MAX_LOOK_CHANGE {
                    pairs.push((overlap, b, t));
                }
            }
        }
        pairs.sort_by(|x, y| y.0.total_cmp(&x.0));
        let mut by_box = vec![None; faces.len()];
        let mut taken = vec![false; self.tracks.len()];
        for (_, b, t) in pairs {
            if by_box[b].is_none() && !taken[t] {
                by_box[b] = Some(t);
                taken[t] = true;
            }
        }
        by_box
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_io::RgbImage;

    fn bx(left: i64, top: i64, size: i64) -> FaceBox {
        FaceBox {
            top,
            right: left + size,
            bottom: top + size,
            left,
        }
    }

    /// A smooth synthetic scene; `invert` gives a different "person" in the same places.
    fn scene(invert: bool) -> RgbImage {
        let (w, h) = (640, 480);
        let mut pixels = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let v = 128.0 + 100.0 * (x as f64 / 20.0).sin() * (y as f64 / 25.0).cos();
                let v = if invert { 255.0 - v } else { v } as u8;
                pixels.extend([v, v, v]);
            }
        }
        RgbImage::from_raw(w, h, pixels).unwrap()
    }

    fn named(label: &str, bbox: FaceBox) -> (Recognition, Measured) {
        let measured = Measured {
            encoding: [0.0; crate::engine::ENCODING_LEN],
            face_px: crate::quality::width(&bbox) as u32,
            sharpness: 500.0,
        };
        (Recognition::new(bbox, label, Some(0.3)), measured)
    }

    /// Runs one frame of `image`, labelling freshly encoded faces `label`; returns (faces,
    /// encoded count).
    fn run(
        tracker: &mut Tracker,
        frame: u64,
        image: &RgbImage,
        boxes: &[FaceBox],
        label: &str,
    ) -> (Vec<Seen>, usize) {
        let faces: Vec<_> = boxes
            .iter()
            .map(|b| (*b, Thumbnail::of(image, b)))
            .collect();
        let mut encoded = 0;
        let seen = tracker.step(
            frame,
            &faces,
            |_| false,
            |idx| {
                encoded = idx.len();
                idx.iter().map(|&i| named(label, boxes[i])).collect()
            },
        );
        (seen, encoded)
    }

    #[test]
    fn overlap_of_boxes() {
        assert_eq!(iou(&bx(0, 0, 10), &bx(0, 0, 10)), 1.0);
        assert_eq!(iou(&bx(0, 0, 10), &bx(20, 20, 10)), 0.0);
        let half = iou(&bx(0, 0, 10), &bx(5, 0, 10));
        assert!((half - 50.0 / 150.0).abs() < 1e-12, "{half}");
    }

    #[test]
    fn a_face_that_stays_is_encoded_once_per_recheck_period() {
        let image = scene(false);
        let mut t = Tracker::new(5);
        let mut encodes = 0;
        for frame in 0..10 {
            // Jitters by a pixel or two, as detections do.
            let left = 100 + frame as i64 % 3;
            let (seen, n) = run(&mut t, frame, &image, &[bx(left, 80, 120)], "alip");
            encodes += n;
            assert_eq!(seen.len(), 1);
            assert_eq!(seen[0].recognition.label, "alip");
            assert_eq!(seen[0].tracked(), n == 0);
            assert_eq!(seen[0].recognition.bbox.left, left);
        }
        assert_eq!(encodes, 2, "frames 0 and 5");
    }

    #[test]
    fn a_face_that_moves_changes_or_disappears_is_encoded_again() {
        let (image, other) = (scene(false), scene(true));
        let mut t = Tracker::new(100);
        let at = bx(100, 80, 120);
        assert_eq!(run(&mut t, 0, &image, &[at], "a").1, 1);
        assert_eq!(run(&mut t, 1, &image, &[at], "a").1, 0);
        // Someone else in the very same place: not tracked as "a".
        let (seen, n) = run(&mut t, 2, &other, &[at], "b");
        assert_eq!((n, seen[0].recognition.label.as_str()), (1, "b"));
        // Moved well away: a new face as far as the tracker knows.
        let (seen, n) = run(&mut t, 3, &other, &[bx(300, 80, 120)], "c");
        assert_eq!((n, seen[0].recognition.label.as_str()), (1, "c"));
        // Gone for longer than MAX_MISSED frames, then back in the same place: encoded again.
        let back = 3 + MAX_MISSED + 2;
        let (seen, n) = run(&mut t, back, &other, &[bx(300, 80, 120)], "d");
        assert_eq!((n, seen[0].recognition.label.as_str()), (1, "d"));
        // Missing for one frame is fine.
        assert_eq!(run(&mut t, back + 2, &other, &[bx(300, 80, 120)], "e").1, 0);
    }

    #[test]
    fn two_faces_keep_their_own_labels_and_a_newcomer_is_encoded() {
        let image = scene(false);
        let mut t = Tracker::new(100);
        let (a, b, c) = (bx(0, 0, 100), bx(300, 0, 100), bx(150, 200, 100));
        let faces: Vec<_> = [a, b]
            .iter()
            .map(|x| (*x, Thumbnail::of(&image, x)))
            .collect();
        t.step(
            0,
            &faces,
            |_| false,
            |idx| {
                idx.iter()
                    .map(|&i| named(["left", "right"][i], faces[i].0))
                    .collect()
            },
        );
        let (seen, n) = run(&mut t, 1, &image, &[b, c, a], "new");
        assert_eq!(n, 1);
        let labels: Vec<_> = seen.iter().map(|s| s.recognition.label.as_str()).collect();
        assert_eq!(labels, ["right", "new", "left"]);
        let tracked: Vec<_> = seen.iter().map(|s| s.tracked()).collect();
        assert_eq!(tracked, [true, false, true]);
        assert_eq!(seen[0].track, 2, "the right face keeps its track");
        assert_eq!(seen[1].track, 3, "a newcomer gets a new one");
        assert_eq!(seen[2].track, 1);
    }

    #[test]
    fn recheck_one_means_every_frame_is_encoded() {
        let image = scene(false);
        let mut t = Tracker::new(1);
        for frame in 0..4 {
            assert_eq!(run(&mut t, frame, &image, &[bx(10, 10, 90)], "x").1, 1);
        }
        assert_eq!(run(&mut t, 4, &image, &[], "x").1, 0);
    }
}

#[cfg(test)]
mod ids {
    use super::*;
    use crate::image_io::RgbImage;

    #[test]
    fn a_face_keeps_its_track_id_when_re_encoded_and_unsettled_faces_are_encoded_each_frame() {
        let image = RgbImage::from_raw(200, 200, vec![90; 200 * 200 * 3]).unwrap();
        let at = FaceBox {
            top: 40,
            right: 140,
            bottom: 140,
            left: 40,
        };
        let faces = vec![(at, Thumbnail::of(&image, &at))];
        let mut t = Tracker::new(100);
        let measured = Measured {
            encoding: [0.0; crate::engine::ENCODING_LEN],
            face_px: 100,
            sharpness: 1.0,
        };
        let answer = |_: &[usize]| vec![(Recognition::new(at, "a", Some(0.3)), measured.clone())];
        let mut encoded = 0;
        for frame in 0..4 {
            let seen = t.step(
                frame,
                &faces,
                |_| true,
                |i| {
                    encoded += 1;
                    answer(i)
                },
            );
            assert_eq!(seen[0].track, 1, "one face, one track");
            assert!(!seen[0].tracked());
        }
        assert_eq!(encoded, 4, "unsettled: encoded every frame");
        let seen = t.step(4, &faces, |_| false, answer);
        assert!(seen[0].tracked(), "settled: carried over");
        assert_eq!(t.ids().collect::<Vec<_>>(), [1]);
    }
}
