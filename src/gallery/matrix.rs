//! Matching: the gallery's faces in memory, one row per enrolled face (and per rejected face),
//! behind the gallery's `RwLock`, and the answers read from them ([`Gallery::best_match`] and
//! its margin rule, the duplicate check's [`Gallery::nearest_other`]).
//!
//! Contract: the matrix only changes whole, under its write lock, after the files of the
//! change are written ([`super`]'s writer contract): a recognition sees a person before or
//! after a change, never half of one. A person's rejections ([`super::rejected`]) never outlive
//! their rows.

use std::collections::HashMap;

use serde::Serialize;

use super::{Gallery, Label, Sample, StudentId, UNKNOWN};
use crate::engine::{distance, Encoding};
use crate::locks;

/// The best match for one face.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Match {
    /// The person's id, or [`UNKNOWN`].
    pub label: String,
    /// Distance to the closest enrolled encoding (of the people not left out by their
    /// rejections); `None` when there is none.
    pub distance: Option<f64>,
    /// The closest person other than the closest one, with their distance (none with fewer than
    /// two people enrolled).
    #[serde(skip)]
    pub runner_up: Option<(String, f64)>,
    /// Within the tolerance, but not ahead of the runner-up by the margin: the two candidates
    /// (and the label is `Unknown`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ambiguous: Option<[String; 2]>,
}

impl Match {
    /// Whether the face is someone's (not [`UNKNOWN`]).
    pub fn is_known(&self) -> bool {
        self.label != UNKNOWN
    }
}

#[derive(Default)]
pub(super) struct Matrix {
    pub(super) labels: Vec<String>,
    pub(super) index: HashMap<String, u32>,
    /// One row per enrolled face, with the index of its label and its description.
    pub(super) encodings: Vec<Encoding>,
    pub(super) owners: Vec<u32>,
    pub(super) samples: Vec<Sample>,
    /// Negative samples ([`rejected`]): one row per rejected face, with the index of the label
    /// it must not be matched to. Empty in most galleries, and matching then never looks here.
    pub(super) rejected: Vec<Encoding>,
    pub(super) rejected_owners: Vec<u32>,
    /// Each person's name and group, by id (only people who have one): the events' label
    /// lookup is one hash lookup ([`Gallery::label`]).
    pub(super) names: HashMap<String, Label>,
}

impl Matrix {
    pub(super) fn label_index(&mut self, label: &str) -> u32 {
        if let Some(i) = self.index.get(label) {
            return *i;
        }
        let i = self.labels.len() as u32;
        self.labels.push(label.to_string());
        self.index.insert(label.to_string(), i);
        i
    }

    /// The person's rows become `rows` (none: they are gone, and their rejections with them:
    /// rejections never outlive their person, so a new person under the id starts clean).
    pub(super) fn set_person(&mut self, label: &str, rows: &[(Encoding, Sample)]) {
        if let Some(&i) = self.index.get(label) {
            without_owner(&mut self.encodings, &self.owners, i);
            without_owner(&mut self.samples, &self.owners, i);
            self.owners.retain(|o| *o != i);
        }
        if rows.is_empty() {
            self.set_rejected(label, &[]);
            self.names.remove(label);
            return;
        }
        let i = self.label_index(label);
        for (encoding, sample) in rows {
            self.encodings.push(*encoding);
            self.owners.push(i);
            self.samples.push(sample.clone());
        }
    }

    /// The person's name and group become `names` (empty: none). Set after their rows.
    pub(super) fn set_label(&mut self, label: &str, names: &Label) {
        if names.is_empty() {
            self.names.remove(label);
        } else {
            self.names.insert(label.to_string(), names.clone());
        }
    }

    /// The person's rows and name and group together ([`Matrix::set_person`] then
    /// [`Matrix::set_label`]).
    pub(super) fn set_labelled(&mut self, label: &str, rows: &[(Encoding, Sample)], names: &Label) {
        self.set_person(label, rows);
        if !rows.is_empty() {
            self.set_label(label, names);
        }
    }

    /// The person's rejected encodings become `rejected` (none: forgotten).
    pub(super) fn set_rejected(&mut self, label: &str, rejected: &[Encoding]) {
        if let Some(&i) = self.index.get(label) {
            without_owner(&mut self.rejected, &self.rejected_owners, i);
            self.rejected_owners.retain(|o| *o != i);
        }
        if rejected.is_empty() {
            return;
        }
        let i = self.label_index(label);
        self.rejected.extend_from_slice(rejected);
        self.rejected_owners
            .extend(std::iter::repeat_n(i, rejected.len()));
    }

    /// [`Top2`] of the rows for `encoding`, leaving out the people whose rejections it does not
    /// lead by `margin`: a pass over the rejected rows (the closest per person), then one over
    /// the rows, where people with rejections keep their closest distance aside until the end.
    pub(super) fn top2_with_rejections(&self, encoding: &Encoding, margin: f64) -> Top2 {
        let mut rejected = vec![f64::INFINITY; self.labels.len()];
        for (e, &owner) in self.rejected.iter().zip(&self.rejected_owners) {
            let d = distance(e, encoding);
            let slot = &mut rejected[owner as usize];
            *slot = slot.min(d);
        }
        let mut own = vec![f64::INFINITY; self.labels.len()];
        let mut top = Top2::default();
        for (e, &owner) in self.encodings.iter().zip(&self.owners) {
            let d = distance(e, encoding);
            if rejected[owner as usize].is_finite() {
                let slot = &mut own[owner as usize];
                *slot = slot.min(d);
            } else {
                top.offer(d, owner);
            }
        }
        for (owner, (&d, &r)) in own.iter().zip(&rejected).enumerate() {
            // Excluded unless the person leads their closest rejection by the margin.
            if d.is_finite() && r - d >= margin {
                top.offer(d, owner as u32);
            }
        }
        top
    }

    /// How many rejected encodings the person has.
    pub(super) fn rejected_count(&self, label: &str) -> usize {
        self.index.get(label).map_or(0, |i| {
            self.rejected_owners.iter().filter(|o| *o == i).count()
        })
    }

    /// The person's rows, in order.
    pub(super) fn rows_of(&self, label: &str) -> Vec<usize> {
        let Some(&i) = self.index.get(label) else {
            return Vec::new();
        };
        (0..self.owners.len())
            .filter(|r| self.owners[*r] == i)
            .collect()
    }
}

/// Keeps the entries of `column` (beside `owners`, one each) whose owner is not `i`, in order.
fn without_owner<T>(column: &mut Vec<T>, owners: &[u32], i: u32) {
    // `retain` visits every entry once, in order: the owners are walked alongside.
    let mut owner = owners.iter();
    column.retain(|_| owner.next() != Some(&i));
}

/// The closest row and the closest row of anyone else, offered one distance at a time.
#[derive(Default)]
pub(super) struct Top2 {
    best: Option<(f64, u32)>,
    other: Option<(f64, u32)>,
}

impl Top2 {
    #[inline]
    fn offer(&mut self, d: f64, owner: u32) {
        match self.best {
            Some((d1, o1)) if d >= d1 => {
                if owner != o1 && self.other.is_none_or(|(d2, _)| d < d2) {
                    self.other = Some((d, owner));
                }
            }
            Some((_, o1)) => {
                if owner != o1 {
                    self.other = self.best;
                }
                self.best = Some((d, owner));
            }
            None => self.best = Some((d, owner)),
        }
    }
}

impl Gallery {
    /// The closest enrolled face: its label when within `tolerance`, else `Unknown`.
    pub fn best_match(&self, encoding: &Encoding, tolerance: f64) -> Match {
        self.best_match_with_margin(encoding, tolerance, 0.0)
    }

    /// [`Gallery::best_match`], and a match counts only when the closest person is closer than
    /// the closest *other* person by at least `margin` (`MATCH_MARGIN`); otherwise the face is
    /// `Unknown` and [`Match::ambiguous`] names both. 0: no margin (the original's rule).
    ///
    /// A person with rejected faces ([`Gallery::reject`]) must also lead their own rejections
    /// by `margin`: when the face's closest rejected face of P is closer than its closest sample
    /// of P plus `margin`, P is left out, as if not enrolled (neither the match nor the
    /// runner-up), and the rules apply among the others.
    pub fn best_match_with_margin(
        &self,
        encoding: &Encoding,
        tolerance: f64,
        margin: f64,
    ) -> Match {
        let m = locks::read(&self.matrix);
        let mut top = Top2::default();
        if m.rejected.is_empty() {
            // The common case: one pass, nothing more.
            for (e, &owner) in m.encodings.iter().zip(&m.owners) {
                top.offer(distance(e, encoding), owner);
            }
        } else {
            top = m.top2_with_rejections(encoding, margin);
        }
        let Top2 { best, other } = top;
        let label = |o: u32| m.labels[o as usize].clone();
        let runner_up = other.map(|(d, o)| (label(o), d));
        match best {
            Some((d, owner)) if d <= tolerance => {
                let close = other.filter(|(d2, _)| margin > 0.0 && d2 - d < margin);
                match close {
                    Some((_, o2)) => Match {
                        label: UNKNOWN.into(),
                        distance: Some(d),
                        ambiguous: Some([label(owner), label(o2)]),
                        runner_up,
                    },
                    None => Match {
                        label: label(owner),
                        distance: Some(d),
                        ambiguous: None,
                        runner_up,
                    },
                }
            }
            Some((d, _)) => Match {
                label: UNKNOWN.into(),
                distance: Some(d),
                ambiguous: None,
                runner_up,
            },
            None => Match {
                label: UNKNOWN.into(),
                distance: None,
                ambiguous: None,
                runner_up: None,
            },
        }
    }

    /// The enrolled person other than `except` closest to `encoding`, with the distance: what
    /// the duplicate check of enrollment compares with `ENROLL_DUPLICATE_DISTANCE`.
    pub fn nearest_other(&self, encoding: &Encoding, except: &StudentId) -> Option<(String, f64)> {
        self.nearest_except(encoding, &[except])
    }

    /// [`Gallery::nearest_other`] leaving out every person of `except` (a rename received:
    /// the new id and the old one).
    pub fn nearest_except(
        &self,
        encoding: &Encoding,
        except: &[&StudentId],
    ) -> Option<(String, f64)> {
        let m = locks::read(&self.matrix);
        let skip: Vec<u32> = except
            .iter()
            .filter_map(|id| m.index.get(id.as_str()).copied())
            .collect();
        m.encodings
            .iter()
            .zip(&m.owners)
            .filter(|(_, o)| !skip.contains(o))
            .map(|(e, o)| (distance(e, encoding), *o))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(d, o)| (m.labels[o as usize].clone(), d))
    }

    /// The person's rejected faces as matching holds them (none: no rejection, or not enrolled).
    pub fn rejected_in_memory(&self, id: &StudentId) -> Vec<Encoding> {
        let m = locks::read(&self.matrix);
        let Some(&owner) = m.index.get(id.as_str()) else {
            return Vec::new();
        };
        m.rejected
            .iter()
            .zip(&m.rejected_owners)
            .filter(|(_, o)| **o == owner)
            .map(|(e, _)| *e)
            .collect()
    }

    /// (encodings, people) currently enrolled.
    pub fn counts(&self) -> (usize, usize) {
        let m = locks::read(&self.matrix);
        let mut people = vec![false; m.labels.len()];
        for o in &m.owners {
            people[*o as usize] = true;
        }
        (m.encodings.len(), people.iter().filter(|p| **p).count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gallery::npy;
    use crate::gallery::tests::enc;
    use std::fs;

    #[test]
    fn append_keeps_earlier_rows_and_matches_the_nearest() {
        let dir = tempfile::tempdir().unwrap();
        let (g, report) = Gallery::open(dir.path()).unwrap();
        assert_eq!(report.files, 0);
        assert_eq!(g.best_match(&enc(0.0), 0.45).distance, None);
        let alip = StudentId::parse("alip").unwrap();
        let yoga = StudentId::parse("yoga").unwrap();
        assert_eq!(g.append(&alip, &[enc(0.0)], "test").unwrap(), 1);
        assert_eq!(g.append(&alip, &[enc(0.1)], "test").unwrap(), 2);
        g.append(&yoga, &[enc(1.0)], "test").unwrap();
        assert_eq!(g.counts(), (3, 2));

        let m = g.best_match(&enc(0.9), 0.45);
        assert_eq!(
            (m.label.as_str(), m.distance.map(|d| (d * 1e6).round())),
            ("yoga", Some(100000.0))
        );
        let m = g.best_match(&enc(0.5), 0.3);
        assert_eq!(m.label, UNKNOWN);
        // Exactly at the tolerance is a match.
        assert_eq!(g.best_match(&enc(0.55), 0.45).label, "yoga");

        // Reopening reads back both files, rows in order.
        let (g2, report) = Gallery::open(dir.path()).unwrap();
        assert_eq!((report.files, report.encodings), (2, 3));
        assert_eq!(g2.people(), vec![("alip".into(), 2), ("yoga".into(), 1)]);
        let rows = npy::read_encodings(&fs::read(dir.path().join("embeddings/alip.npy")).unwrap())
            .unwrap();
        assert_eq!(rows, vec![enc(0.0), enc(0.1)]);
    }

    #[test]
    fn a_match_must_lead_the_runner_up_by_the_margin() {
        let dir = tempfile::tempdir().unwrap();
        let (g, _) = Gallery::open(dir.path()).unwrap();
        let id = |s: &str| StudentId::parse(s).unwrap();
        g.append(&id("alip"), &[enc(0.0), enc(0.05)], "k").unwrap();
        g.append(&id("budi"), &[enc(0.3)], "k").unwrap();
        g.append(&id("cici"), &[enc(2.0)], "k").unwrap();
        // 0.1 from alip, 0.2 from budi: a lead of 0.1 (alip's two rows count once).
        let m = g.best_match_with_margin(&enc(0.1), 0.45, 0.05);
        assert_eq!((m.label.as_str(), m.ambiguous.as_ref()), ("alip", None));
        let (second, d2) = m.runner_up.clone().unwrap();
        assert_eq!((second.as_str(), (d2 * 100.0).round()), ("budi", 20.0));
        let m = g.best_match_with_margin(&enc(0.1), 0.45, 0.15);
        assert_eq!(m.label, UNKNOWN);
        assert_eq!(m.ambiguous, Some(["alip".into(), "budi".into()]));
        assert_eq!(m.distance.map(|d| (d * 100.0).round()), Some(5.0));
        // No margin: the original rule; beyond the tolerance no one is ambiguous.
        assert_eq!(g.best_match(&enc(0.1), 0.45).label, "alip");
        let far = g.best_match_with_margin(&enc(1.2), 0.45, 0.15);
        assert_eq!((far.label.as_str(), far.ambiguous), (UNKNOWN, None));
        // Rows are visited in any order: the runner-up is still the closest other person.
        let m = g.best_match_with_margin(&enc(0.29), 0.45, 0.0);
        assert_eq!(m.label, "budi");
        assert_eq!(m.runner_up.map(|(l, _)| l).as_deref(), Some("alip"));
    }
}
