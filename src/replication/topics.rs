//! The topics of replication on the broker: `<prefix>/gallery/<student_id>` (a person; empty:
//! deleted) and `<prefix>/gallery-deleted/<student_id>` (a tombstone: the deletion's version;
//! empty: none), and a message to publish on one of them ([`Outgoing`]).

use crate::gallery::StudentId;

/// The topic of a person's message.
pub fn topic(prefix: &str, id: &StudentId) -> String {
    format!("{prefix}/gallery/{id}")
}

/// The topic filter that gets every person's message.
pub fn topic_filter(prefix: &str) -> String {
    format!("{prefix}/gallery/+")
}

/// The id part of a gallery topic (unchecked: [`super::Replicator::receive`] checks it), `None`
/// when the topic is not one.
pub fn topic_id<'a>(prefix: &str, topic: &'a str) -> Option<&'a str> {
    topic.strip_prefix(prefix)?.strip_prefix("/gallery/")
}

/// The topic of a person's tombstone (their deletion's version).
pub fn topic_deleted(prefix: &str, id: &StudentId) -> String {
    format!("{prefix}/gallery-deleted/{id}")
}

/// The topic filter that gets every tombstone.
pub fn topic_deleted_filter(prefix: &str) -> String {
    format!("{prefix}/gallery-deleted/+")
}

/// The id part of a tombstone's topic (unchecked: [`super::Replicator::receive_deleted`] checks
/// it), `None` when the topic is not one.
pub fn topic_deleted_id<'a>(prefix: &str, topic: &'a str) -> Option<&'a str> {
    topic
        .strip_prefix(prefix)?
        .strip_prefix("/gallery-deleted/")
}

/// Which of the two topics of a person a message is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `<prefix>/gallery/<id>`: the person (empty: deleted).
    Person,
    /// `<prefix>/gallery-deleted/<id>`: the tombstone (empty: none).
    Deleted,
}

/// A message to publish, retained, QoS 1.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Which of the person's two topics.
    pub kind: Kind,
    /// The person.
    pub id: StudentId,
    /// The message (empty: deleted, or no tombstone).
    pub payload: Vec<u8>,
}

impl Outgoing {
    /// The topic to publish on, under `prefix`.
    pub fn topic(&self, prefix: &str) -> String {
        match self.kind {
            Kind::Person => topic(prefix, &self.id),
            Kind::Deleted => topic_deleted(prefix, &self.id),
        }
    }
}
