//! The engine's results: a face's box, landmarks and encoding, and the distance between
//! encodings.

use dlib_face_recognition::Rectangle;
use serde::{Serialize, Serializer};

/// Length of a face encoding.
pub const ENCODING_LEN: usize = 128;

/// A face encoding: a point in the 128-D space where distance means dissimilarity.
pub type Encoding = [f64; ENCODING_LEN];

/// A face box in pixels of the image, clipped to it. Serialized as `[top, right, bottom, left]`,
/// the original service's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaceBox {
    /// First row inside the box.
    pub top: i64,
    /// First column right of the box.
    pub right: i64,
    /// First row below the box.
    pub bottom: i64,
    /// First column inside the box.
    pub left: i64,
}

impl FaceBox {
    /// Pixels inside the box (0 when it is empty).
    pub fn area(&self) -> i64 {
        (self.right - self.left).max(0) * (self.bottom - self.top).max(0)
    }

    /// The box as `[top, right, bottom, left]`, the original service's order.
    pub fn as_css(&self) -> [i64; 4] {
        [self.top, self.right, self.bottom, self.left]
    }

    /// Clips a detector rectangle to the image, like `face_recognition._trim_css_to_bounds`.
    pub(super) fn clipped(r: &Rectangle, width: usize, height: usize) -> Self {
        FaceBox {
            top: long(r.top).max(0),
            right: long(r.right).min(width as i64),
            bottom: long(r.bottom).min(height as i64),
            left: long(r.left).max(0),
        }
    }

    pub(super) fn to_rect(self) -> Rectangle {
        Rectangle {
            left: self.left as _,
            top: self.top as _,
            right: self.right as _,
            bottom: self.bottom as _,
        }
    }
}

impl Serialize for FaceBox {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_css().serialize(s)
    }
}

/// dlib's five landmarks of a face, `(x, y)` in pixels of the image its box is in: the outer
/// and inner corner of the eye on the image's right (0, 1), of the eye on the image's left
/// (2, 3), then the base of the nose (4) (for an upright face seen from the front).
pub type Landmarks = [(i64, i64); 5];

/// One face found in an image.
#[derive(Debug, Clone)]
pub struct Face {
    /// Where the face is, in pixels of the image.
    pub bbox: FaceBox,
    /// Its 128-D encoding.
    pub encoding: Encoding,
    /// The points the encoding was aligned on (enrollment measures the head's yaw from them).
    pub landmarks: Landmarks,
}

/// dlib coordinates are C `long`: 64-bit here, 32-bit on armv7.
#[allow(clippy::useless_conversion)]
pub(super) fn long(v: std::os::raw::c_long) -> i64 {
    i64::from(v)
}

/// Euclidean distance between two encodings.
pub fn distance(a: &Encoding, b: &Encoding) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}
