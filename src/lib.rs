//! face-attendance: a face-recognition attendance box (see DESIGN.md for the picture).
//!
//! Requests flow: `cli` (or, later, the HTTP server) → `recognizer` → `engine` (dlib) and
//! `gallery` (the `.npy` files); images come in through `image_io`.

pub mod bulk_enroll;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod fsutil;
pub mod gallery;
pub mod image_io;
pub mod recognizer;

pub use error::Error;
