//! Images in dlib's own layout, and the landmark shapes found in them.

use dlib_face_recognition::{FaceLandmarks, ImageMatrix};

use super::dlib_ext;
use super::face::{long, Landmarks};
use crate::image_io::{ImageError, Oriented, RgbImage};

/// An image in dlib's own layout, converted once and shared by the steps that need it.
pub struct Frame {
    pub(super) matrix: ImageMatrix,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

impl Frame {
    /// Copies `image` into dlib's layout.
    ///
    /// # Panics
    /// When `image.pixels` does not hold exactly `width * height` RGB pixels (its fields are
    /// public, so this is checked, not assumed; [`Frame::try_new`] returns an error instead).
    /// Images from [`crate::image_io`] always do.
    pub fn new(image: &RgbImage) -> Frame {
        match Frame::try_new(image) {
            Ok(frame) => frame,
            Err(e) => panic!("Frame::new: {e}"),
        }
    }

    /// Copies `image` into dlib's layout; an error when its pixel buffer does not match its size.
    pub fn try_new(image: &RgbImage) -> Result<Frame, ImageError> {
        if !image.is_consistent() {
            return Err(ImageError::Corrupt(format!(
                "{} bytes of pixels for a {}x{} RGB image",
                image.pixels.len(),
                image.width,
                image.height
            )));
        }
        // SAFETY: ImageMatrix::new reads exactly width * height * 3 bytes from the pointer, and
        // we just checked that `pixels` holds that many (is_consistent: no overflow, equal
        // length); the borrow keeps them alive and unchanged for the call, which copies them.
        let matrix = unsafe { ImageMatrix::new(image.width, image.height, image.pixels.as_ptr()) };
        Ok(Frame {
            matrix,
            width: image.width,
            height: image.height,
        })
    }

    /// The upright rectangle `[left, right) x [top, bottom)` of `image` (clipped to it),
    /// copied straight into dlib's layout: the same pixels as `Frame::new(&image.crop(..))`
    /// without the intermediate RGB crop.
    pub fn from_region(
        image: &Oriented<'_>,
        top: usize,
        right: usize,
        bottom: usize,
        left: usize,
    ) -> Frame {
        let (right, bottom) = (right.min(image.width()), bottom.min(image.height()));
        let (left, top) = (left.min(right), top.min(bottom));
        let (width, height) = (right - left, bottom - top);
        let matrix =
            dlib_ext::matrix_from_rows(width, height, |y, row| image.copy_row(top + y, left, row));
        Frame {
            matrix,
            width,
            height,
        }
    }

    /// A bilinear-resampled copy scaled by `scale`, at least 1x1.
    pub fn scaled(&self, scale: f64) -> Frame {
        let dim = |v: usize| ((v as f64 * scale).round() as usize).max(1);
        let (width, height) = (dim(self.width), dim(self.height));
        Frame {
            matrix: self.matrix.resize(width, height),
            width,
            height,
        }
    }
}

/// The five landmark points of one face, in the form the encoder takes.
pub struct Shape(pub(super) FaceLandmarks);

impl Shape {
    /// The points as [`Landmarks`] (the engine loads the 5-point model; missing points, which
    /// it never leaves, would read as the origin).
    pub fn points(&self) -> Landmarks {
        let mut out = [(0, 0); 5];
        for (o, p) in out.iter_mut().zip(self.0.iter()) {
            *o = (long(p.x()), long(p.y()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_refuses_pixels_that_do_not_fit_its_size() {
        let short = RgbImage {
            width: 100,
            height: 100,
            pixels: vec![0; 10],
        };
        assert!(Frame::try_new(&short).is_err());
        let overflowing = RgbImage {
            width: usize::MAX,
            height: 3,
            pixels: vec![0; 9],
        };
        assert!(Frame::try_new(&overflowing).is_err());
        assert!(std::panic::catch_unwind(|| Frame::new(&short)).is_err());
        let fine = RgbImage::from_raw(4, 3, vec![7; 36]).unwrap();
        let frame = Frame::try_new(&fine).unwrap();
        assert_eq!((frame.width, frame.height), (4, 3));
    }
}
