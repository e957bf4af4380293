//! What a signed change must pass before it is applied, beyond its signature: the signer's
//! role, and the checks of a local enrollment.
//!
//! - Role `enroll`: may add a new person, and add samples to an existing person only when each
//!   new face matches that person's samples within the tolerance (a stolen enrolling box cannot
//!   put its own face under someone else's id). Role `admin` may also replace or remove samples,
//!   delete people, rename them and force a duplicate.
//! - Every new face passes the duplicate check against other people (a rename's old id left
//!   out), unless an admin forced it (`force`, twins), and must not be within the tolerance of a
//!   face this box was told is not this person (its rejections).

use super::replicator::Replicator;
use super::trust::{Role, Trusted};
use super::{PersonChange, Refused};
use crate::engine::distance;

/// Whether two encodings are the same face's: equal but for the last bits a JSON round trip of
/// an older release may have changed (its parser was not exact).
fn same(a: &crate::engine::Encoding, b: &crate::engine::Encoding) -> bool {
    distance(a, b) < SAME
}

/// Below this distance two encodings are one sample (dlib's faces of one person are 0.2 to 0.6
/// apart; an inexact parse moves a value by 1e-16).
const SAME: f64 = 1e-9;

impl Replicator {
    /// Whether `signer` may make `change` and its faces pass the enrollment checks.
    pub(super) fn check_person(
        &self,
        signer: &Trusted,
        change: &PersonChange<'_>,
    ) -> Result<(), Refused> {
        let admin = signer.role == Role::Admin;
        let not_allowed = |what: &'static str| Refused::NotAllowed {
            signer: signer.box_id.clone(),
            role: signer.role,
            change: what,
        };
        if change.renamed_from.is_some() && !admin {
            return Err(not_allowed("rename a person"));
        }
        if change.force && !admin {
            return Err(not_allowed("force a duplicate"));
        }
        let old = self.gallery.rows_in_memory(change.id);
        let is_old = |e: &crate::engine::Encoding| old.iter().any(|(o, _)| same(o, e));
        let removed = old
            .iter()
            .any(|(o, _)| !change.rows.iter().any(|(e, _)| same(e, o)));
        if removed && !admin {
            return Err(not_allowed("replace or remove samples"));
        }
        let added: Vec<_> = change
            .rows
            .iter()
            .map(|(e, _)| e)
            .filter(|e| !is_old(e))
            .collect();
        if !old.is_empty() && !admin {
            for e in &added {
                let nearest = old
                    .iter()
                    .map(|(o, _)| distance(o, e))
                    .fold(f64::INFINITY, f64::min);
                if nearest > self.policy.tolerance() {
                    return Err(Refused::NotThisPerson { distance: nearest });
                }
            }
        }
        if change.force && admin {
            return Ok(());
        }
        let mut except = vec![change.id];
        except.extend(change.renamed_from);
        if let Some(limit) = self.policy.duplicate_limit() {
            for e in &added {
                if let Some((of, d)) = self.gallery.nearest_except(e, &except) {
                    if d <= limit {
                        return Err(Refused::Duplicate { of, distance: d });
                    }
                }
            }
        }
        let rejected = self.gallery.rejected_in_memory(change.id);
        for e in &added {
            let nearest = rejected
                .iter()
                .map(|r| distance(r, e))
                .fold(f64::INFINITY, f64::min);
            if nearest <= self.policy.tolerance() {
                return Err(Refused::RejectedFace { distance: nearest });
            }
        }
        Ok(())
    }

    /// Whether `signer` may delete a person (a tombstone).
    pub(super) fn check_deletion(&self, signer: &Trusted) -> Result<(), Refused> {
        match signer.role {
            Role::Admin => Ok(()),
            role => Err(Refused::NotAllowed {
                signer: signer.box_id.clone(),
                role,
                change: "delete a person",
            }),
        }
    }

    /// Whether this box, in the trust list as `own`, would see its own change of `change`
    /// accepted (so that it does not publish what every box would refuse).
    pub(super) fn may_publish_deletion(own: Option<Role>) -> bool {
        own == Some(Role::Admin)
    }
}
