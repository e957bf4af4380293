//! Unknown faces grouped into clusters of one person each: Chinese whispers (the method dlib
//! recommends for face clustering, `dlib::chinese_whispers`) over the graph whose edges join
//! every two faces closer than the same-person threshold (`UNKNOWN_CLUSTER_DISTANCE`).
//!
//! dlib's version visits the nodes in a random order and breaks ties at random; this one is
//! deterministic, so that a page reloaded shows the same clusters: every pass visits the faces in
//! the order given (the store gives them oldest first), each face takes the label that weighs
//! most among itself and its neighbours (each edge weighs 1), a tie going to the smallest label
//! (the oldest face's), until a pass changes nothing (at most [`MAX_PASSES`]). Unlike plain
//! connected components, a single face that happens to sit between two people does not join
//! them: it takes the label of the side it has more neighbours on.
//!
//! A cluster is named by the smallest id among its members ([`Group::id`]): stable while that
//! face is kept, whatever newer faces join or leave.

use crate::engine::{distance, Encoding};

/// Passes after which the labels are taken as they are (they settle in a few on real faces).
pub const MAX_PASSES: usize = 100;

/// One cluster: the positions (in the input) of its members, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    id: u64,
    members: Vec<usize>,
}

impl Group {
    /// The smallest id among the members.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Positions of the members in the slice given to [`clusters`], in its order.
    pub fn members(&self) -> &[usize] {
        &self.members
    }
}

/// The clusters of `faces` (`(id, encoding)`, ids distinct), two faces being neighbours when
/// their distance is below `threshold`; ordered by id. Costs n²/2 distances: fine for the few
/// hundred faces the store keeps (`UNKNOWN_MAX`).
pub fn clusters(faces: &[(u64, Encoding)], threshold: f64) -> Vec<Group> {
    let n = faces.len();
    let mut neighbours: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..n {
        for j in i + 1..n {
            if distance(&faces[i].1, &faces[j].1) < threshold {
                neighbours[i].push(j);
                neighbours[j].push(i);
            }
        }
    }
    // A label is the position of a face; the smallest position is the oldest face when the
    // store passes them oldest first, and ties go to it.
    let mut label: Vec<usize> = (0..n).collect();
    let mut weight = vec![0usize; n];
    for _ in 0..MAX_PASSES {
        let mut changed = false;
        for i in 0..n {
            let mut seen: Vec<usize> = Vec::with_capacity(neighbours[i].len() + 1);
            for &j in neighbours[i].iter().chain(std::iter::once(&i)) {
                let l = label[j];
                if weight[l] == 0 {
                    seen.push(l);
                }
                weight[l] += 1;
            }
            let best = seen
                .iter()
                .copied()
                .max_by(|a, b| weight[*a].cmp(&weight[*b]).then(b.cmp(a)))
                .unwrap_or(i);
            for l in seen {
                weight[l] = 0;
            }
            if best != label[i] {
                label[i] = best;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut group_of_label: Vec<Option<usize>> = vec![None; n];
    for (i, &l) in label.iter().enumerate() {
        let g = *group_of_label[l].get_or_insert_with(|| {
            groups.push(Group {
                id: u64::MAX,
                members: Vec::new(),
            });
            groups.len() - 1
        });
        groups[g].members.push(i);
        groups[g].id = groups[g].id.min(faces[i].0);
    }
    groups.sort_by_key(|g| g.id);
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A face near `centre` (one of a few far-apart points), nudged by `k`.
    fn face(centre: usize, k: u64) -> Encoding {
        let mut e = [0.0; 128];
        e[centre] = 1.0;
        e[127] = 0.02 * k as f64;
        e
    }

    fn ids(faces: &[(u64, Encoding)], groups: &[Group]) -> Vec<(u64, Vec<u64>)> {
        groups
            .iter()
            .map(|g| (g.id(), g.members().iter().map(|&i| faces[i].0).collect()))
            .collect()
    }

    #[test]
    fn two_people_make_two_clusters_named_by_their_oldest_face() {
        let faces: Vec<(u64, Encoding)> = vec![
            (3, face(0, 0)),
            (4, face(1, 0)),
            (5, face(0, 1)),
            (6, face(0, 2)),
            (7, face(1, 1)),
        ];
        let groups = clusters(&faces, 0.5);
        assert_eq!(ids(&faces, &groups), [(3, vec![3, 5, 6]), (4, vec![4, 7])]);
        assert!(clusters(&[], 0.5).is_empty());
        // Nobody is anybody's neighbour at 0: one cluster each.
        assert_eq!(clusters(&faces, 0.0).len(), 5);
    }

    #[test]
    fn ids_are_stable_when_a_newer_member_comes_or_goes() {
        let mut faces: Vec<(u64, Encoding)> = vec![(10, face(0, 0)), (11, face(2, 0))];
        let before = ids(&faces, &clusters(&faces, 0.5));
        faces.push((12, face(0, 3)));
        faces.push((13, face(2, 1)));
        let grown = ids(&faces, &clusters(&faces, 0.5));
        assert_eq!(grown, [(10, vec![10, 12]), (11, vec![11, 13])]);
        faces.retain(|(id, _)| *id != 12);
        let shrunk = ids(&faces, &clusters(&faces, 0.5));
        assert_eq!(shrunk, [(10, vec![10]), (11, vec![11, 13])]);
        assert_eq!(before, [(10, vec![10]), (11, vec![11])]);
    }

    #[test]
    fn one_face_between_two_people_does_not_join_them() {
        // Two tight groups of three (0, 0.05, 0.1 and 1, 1.05, 1.1 on one axis), and a face at
        // 0.55 within 0.47 of the nearest member of each: connected components would make one
        // cluster of all seven.
        let at = |x: f64| {
            let mut e = [0.0; 128];
            e[0] = x;
            e
        };
        let xs = [0.0, 0.05, 0.1, 1.0, 1.05, 1.1, 0.55];
        let faces: Vec<(u64, Encoding)> = xs
            .iter()
            .enumerate()
            .map(|(i, x)| (i as u64, at(*x)))
            .collect();
        let groups = clusters(&faces, 0.47);
        let got = ids(&faces, &groups);
        // The bridge has one neighbour on each side: the tie goes to the older side.
        assert_eq!(got, [(0, vec![0, 1, 2, 6]), (3, vec![3, 4, 5])]);
    }
}
