//! face-attendance: a face-recognition attendance box. ARCHITECTURE.md is the map: the layers
//! (what may import what, checked by tests/architecture.rs), the threads, where a frame and a
//! request go, which module owns which file on disk.
//!
//! Requests flow: `cli` or `http` → `recognizer` → `pipeline` → `engine` (dlib) and `gallery`
//! (the `.npy` files); `service` assembles the running box.
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod bulk_enroll;
pub mod camera;
pub mod cli;
pub mod client;
mod client_tls;
mod clock;
pub mod data_format;
pub mod engine;
mod error;
pub mod events;
mod fsutil;
#[cfg(any(fuzzing, test))]
#[doc(hidden)]
pub mod fuzzing;
pub mod gallery;
pub mod http;
pub mod image_io;
pub mod kiosk;
mod liveness;
pub mod localtime;
mod locks;
mod metrics;
pub mod mqtt;
pub mod pipeline;
pub mod privacy;
pub mod quality;
pub mod recognizer;
pub mod replication;
pub mod service;
pub mod settings;
mod subprocess;
mod systemd;
pub mod unknowns;

pub use error::Error;
