//! Confirmation over frames: a face's identity is decided only once `frames` encodings of it,
//! within `window`, agree. One tracker track is one face and one stream of votes, so a stray
//! frame (a stranger who looks like somebody for one frame, a blurred turn of the head) never
//! decides anything.
//!
//! Contract: a track decides at most once per identity. A decision is a person, a face close to
//! two people (`Ambiguous`) or nobody (`Unknown`); each needs its own `frames` agreeing votes
//! within the window. Until its identity is decided (or while a re-check disagrees with the
//! decided one) a track is *unsettled*, and the tracker encodes it every frame instead of
//! carrying its label over, so that votes come from real encodings only. With `frames` 1 a
//! face decides on its first encoding (the first release's behaviour, once per track).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use super::tracker::{Measured, Seen};
use crate::events::Decision;
use crate::gallery::UNKNOWN;
use crate::recognizer::Recognition;

/// What a vote says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Person(String),
    /// Close to two people, ahead of neither by the margin.
    Ambiguous,
    Unknown,
}

impl Verdict {
    fn of(r: &Recognition) -> Verdict {
        if r.ambiguous.is_some() {
            Verdict::Ambiguous
        } else if r.label == UNKNOWN {
            Verdict::Unknown
        } else {
            Verdict::Person(r.label.clone())
        }
    }
}

struct Vote {
    /// Since the confirmer's clock started (the caller's time base).
    at: Duration,
    verdict: Verdict,
    recognition: Recognition,
    measured: Measured,
}

#[derive(Default)]
struct Votes {
    recent: VecDeque<Vote>,
    decided: Option<Verdict>,
}

/// A decided face: what to report, and what the decision rests on.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    /// The tracker's id of the face.
    pub track: u64,
    /// The closest of the agreeing votes (its box, label, distance and candidates).
    pub recognition: Recognition,
    /// Its encoding and measurements (for the unknown faces' store).
    pub measured: Measured,
    /// What the decision rested on (reported with the event).
    pub decision: Decision,
}

/// `CAMERA_CONFIRM_FRAMES` and `CAMERA_CONFIRM_SECONDS`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConfirmSettings {
    frames: u32,
    window: Duration,
}

impl ConfirmSettings {
    /// `frames` agreeing encodings (at least 1) within `window`.
    pub fn new(frames: u32, window: Duration) -> ConfirmSettings {
        ConfirmSettings {
            frames: frames.max(1),
            window,
        }
    }

    /// Agreeing frames needed (`CAMERA_CONFIRM_FRAMES`).
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// The time the agreeing frames must fall within (`CAMERA_CONFIRM_SECONDS`).
    pub fn window(&self) -> Duration {
        self.window
    }
}

impl Default for ConfirmSettings {
    fn default() -> Self {
        ConfirmSettings::new(3, Duration::from_secs(2))
    }
}

/// Decides faces over frames: a track's identity is reported once enough recent frames agree on it.
pub struct Confirmer {
    settings: ConfirmSettings,
    tracks: HashMap<u64, Votes>,
}

impl Confirmer {
    /// A confirmer with no track seen yet.
    pub fn new(settings: ConfirmSettings) -> Confirmer {
        Confirmer {
            settings,
            tracks: HashMap::new(),
        }
    }

    /// Whether the track still needs votes: it has none yet, or its last vote is not the
    /// identity it decided.
    pub fn unsettled(&self, track: u64) -> bool {
        match self.tracks.get(&track) {
            None => true,
            Some(v) => match (&v.decided, v.recent.back()) {
                (Some(decided), Some(last)) => *decided != last.verdict,
                (Some(_), None) => false,
                (None, _) => true,
            },
        }
    }

    /// Counts this frame's fresh faces as votes (tracked ones are not votes) and returns the
    /// decisions they complete; forgets tracks the tracker no longer has (`alive`). `now`:
    /// the frame's time, on any clock that only goes forward.
    pub fn step(
        &mut self,
        now: Duration,
        faces: &[Seen],
        alive: impl IntoIterator<Item = u64>,
    ) -> Vec<Decided> {
        let alive: HashSet<u64> = alive.into_iter().collect();
        self.tracks.retain(|id, _| alive.contains(id));
        let mut decided = Vec::new();
        for face in faces {
            let Some(measured) = &face.measured else {
                continue;
            };
            if let Some(d) = self.vote(face.track, now, &face.recognition, measured) {
                decided.push(d);
            }
        }
        decided
    }

    fn vote(
        &mut self,
        track: u64,
        now: Duration,
        recognition: &Recognition,
        measured: &Measured,
    ) -> Option<Decided> {
        let (needed, window) = (self.settings.frames as usize, self.settings.window);
        let votes = self.tracks.entry(track).or_default();
        while votes
            .recent
            .front()
            .is_some_and(|v| now.saturating_sub(v.at) > window)
        {
            votes.recent.pop_front();
        }
        let verdict = Verdict::of(recognition);
        votes.recent.push_back(Vote {
            at: now,
            verdict: verdict.clone(),
            recognition: recognition.clone(),
            measured: measured.clone(),
        });
        // A track never needs more than the votes of one decision.
        while votes.recent.len() > needed.max(1) * 4 {
            votes.recent.pop_front();
        }
        if votes.decided.as_ref() == Some(&verdict) {
            return None;
        }
        let agreeing: Vec<&Vote> = votes
            .recent
            .iter()
            .filter(|v| v.verdict == verdict)
            .collect();
        if agreeing.len() < needed {
            return None;
        }
        let best = agreeing
            .iter()
            .min_by(|a, b| {
                let d = |v: &Vote| v.recognition.distance.unwrap_or(f64::INFINITY);
                d(a).total_cmp(&d(b))
            })
            .copied()?;
        let decision = Decision {
            frames: agreeing.len() as u32,
            best_distance: best.recognition.distance,
            second_label: best.recognition.runner_up.as_ref().map(|r| r.0.clone()),
            second_distance: best.recognition.runner_up.as_ref().map(|r| r.1),
            face_px: best.measured.face_px,
            sharpness: best.measured.sharpness,
        };
        let decided = Decided {
            track,
            recognition: best.recognition.clone(),
            measured: best.measured.clone(),
            decision,
        };
        votes.decided = Some(verdict);
        Some(decided)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{FaceBox, ENCODING_LEN};

    const AT: FaceBox = FaceBox {
        top: 10,
        right: 110,
        bottom: 110,
        left: 10,
    };

    fn seen(track: u64, label: &str, distance: f64) -> Seen {
        let mut recognition = Recognition::new(AT, label, Some(distance));
        recognition.runner_up = Some(("budi".into(), 0.52));
        Seen {
            recognition,
            track,
            measured: Some(Measured {
                encoding: [0.0; ENCODING_LEN],
                face_px: 100,
                sharpness: 640.0,
            }),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn confirmer(frames: u32) -> Confirmer {
        Confirmer::new(ConfirmSettings::new(frames, Duration::from_secs(2)))
    }

    #[test]
    fn three_agreeing_frames_decide_once_with_what_they_rest_on() {
        let mut c = confirmer(3);
        assert!(c.unsettled(1));
        assert!(c.step(ms(0), &[seen(1, "alip", 0.35)], [1]).is_empty());
        assert!(c.step(ms(100), &[seen(1, "alip", 0.31)], [1]).is_empty());
        assert!(c.unsettled(1), "two votes are not enough");
        let d = c.step(ms(200), &[seen(1, "alip", 0.33)], [1]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].recognition.label, "alip");
        assert_eq!(
            d[0].decision,
            Decision {
                frames: 3,
                best_distance: Some(0.31),
                second_label: Some("budi".into()),
                second_distance: Some(0.52),
                face_px: 100,
                sharpness: 640.0,
            }
        );
        assert!(!c.unsettled(1));
        for n in 3..10 {
            assert!(c.step(ms(n * 100), &[seen(1, "alip", 0.3)], [1]).is_empty());
        }
    }

    #[test]
    fn a_stray_frame_never_decides_and_votes_expire() {
        let mut c = confirmer(3);
        // A stray "alip" between strangers' frames: one vote for alip, the rest Unknown.
        c.step(ms(0), &[seen(1, UNKNOWN, 0.6)], [1]);
        assert!(c.step(ms(100), &[seen(1, "alip", 0.44)], [1]).is_empty());
        let d = c.step(ms(200), &[seen(1, UNKNOWN, 0.6)], [1]);
        assert!(d.is_empty());
        let d = c.step(ms(300), &[seen(1, UNKNOWN, 0.6)], [1]);
        assert_eq!(d.len(), 1, "three Unknown votes decide Unknown");
        assert_eq!(d[0].recognition.label, UNKNOWN);

        // Votes further apart than the window never add up.
        let mut c = confirmer(3);
        for n in 0..5 {
            assert!(c
                .step(ms(n * 2100), &[seen(2, "alip", 0.3)], [2])
                .is_empty());
        }
    }

    #[test]
    fn a_recheck_that_disagrees_unsettles_and_a_new_identity_needs_its_own_votes() {
        let mut c = confirmer(2);
        c.step(ms(0), &[seen(1, "alip", 0.3)], [1]);
        assert_eq!(c.step(ms(50), &[seen(1, "alip", 0.3)], [1]).len(), 1);
        assert!(c.step(ms(500), &[seen(1, "budi", 0.3)], [1]).is_empty());
        assert!(c.unsettled(1));
        // Back to alip: already decided, settled again, nothing new.
        assert!(c.step(ms(600), &[seen(1, "alip", 0.3)], [1]).is_empty());
        assert!(!c.unsettled(1));
    }

    #[test]
    fn ambiguous_is_its_own_verdict_and_tracks_vote_apart() {
        let mut c = confirmer(2);
        let mut a = seen(1, UNKNOWN, 0.3);
        a.recognition.ambiguous = Some(["alip".into(), "budi".into()]);
        c.step(ms(0), &[a.clone(), seen(2, "alip", 0.3)], [1, 2]);
        let d = c.step(ms(10), &[a, seen(3, "alip", 0.3)], [1, 2, 3]);
        assert_eq!(
            d.len(),
            1,
            "track 1 decides; tracks 2 and 3 have one vote each"
        );
        assert_eq!(
            d[0].recognition.ambiguous,
            Some(["alip".to_string(), "budi".to_string()])
        );
        // A track that is gone is forgotten.
        c.step(ms(20), &[], [3]);
        assert!(c.unsettled(1));
    }

    #[test]
    fn one_frame_decides_at_once_and_tracked_faces_are_not_votes() {
        let mut c = confirmer(1);
        assert_eq!(c.step(ms(0), &[seen(1, "alip", 0.3)], [1]).len(), 1);
        let mut carried = seen(2, "alip", 0.3);
        carried.measured = None;
        for n in 1..5 {
            assert!(c.step(ms(n), &[carried.clone()], [1, 2]).is_empty());
        }
    }
}
