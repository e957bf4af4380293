//! The few dlib calls that `dlib-face-recognition` does not expose.
//!
//! The Python library runs dlib's HOG detector on an image upsampled with `pyramid_up` and maps
//! the boxes back with `pyramid_down<2>::rect_down`. A plain 2x resize gives boxes 1 px off, so
//! this does exactly what dlib's Python binding does.

use cpp::{cpp, cpp_class};
use dlib_face_recognition::{FaceLocations, ImageMatrix, Rectangle};

cpp! {{
    #include <dlib/image_processing/frontal_face_detector.h>
    #include <dlib/image_transforms.h>
}}

cpp_class!(
    /// dlib's frontal HOG face detector. Not `Sync`: scanning mutates internal buffers.
    // SAFETY: cpp_class! moves the C++ object by memcpy; dlib's object_detector holds only heap
    // pointers (std::vector, dlib::array) and no pointer into itself, so it survives the move.
    unsafe struct HogInner as "dlib::frontal_face_detector"
);

pub struct HogDetector {
    inner: HogInner,
    // The C++ detector keeps scratch state; keep it to one thread at a time.
    _not_sync: std::marker::PhantomData<std::cell::Cell<()>>,
}

impl HogDetector {
    pub fn new() -> Self {
        // SAFETY: takes no pointers; the returned C++ object is moved into the Rust-owned
        // HogInner, whose Drop runs its destructor.
        let inner = unsafe {
            cpp!([] -> HogInner as "dlib::frontal_face_detector" {
                return dlib::get_frontal_face_detector();
            })
        };
        Self {
            inner,
            _not_sync: std::marker::PhantomData,
        }
    }

    /// Detected face rectangles in `image` coordinates (not yet clipped to the image), after
    /// upsampling the image `upsample` times, as `face_recognition.face_locations` does.
    pub fn detect(&self, image: &ImageMatrix, upsample: u32) -> Vec<Rectangle> {
        let detector = &self.inner;
        // SAFETY: both pointers come from live references for the whole call. The detector
        // mutates its scan buffers through the pointer, which is why HogDetector is not Sync
        // (one thread at a time; the engine checks one out per caller). The image is only read.
        let found = unsafe {
            cpp!([detector as "dlib::frontal_face_detector*",
                  image as "const dlib::matrix<dlib::rgb_pixel>*",
                  upsample as "uint32_t"] -> FaceLocations as "std::vector<dlib::rectangle>" {
                if (upsample == 0) {
                    return (*detector)(*image);
                }
                dlib::pyramid_down<2> pyr;
                dlib::matrix<dlib::rgb_pixel> temp;
                dlib::pyramid_up(*image, temp, pyr);
                for (uint32_t i = 1; i < upsample; ++i) {
                    dlib::pyramid_up(temp);
                }
                std::vector<dlib::rectangle> rects = (*detector)(temp);
                for (auto& r : rects) {
                    r = pyr.rect_down(r, upsample);
                }
                return rects;
            })
        };
        found.to_vec()
    }

    /// Frees the scratch the last scan left behind (the HOG feature pyramid of the last image:
    /// ~25 bytes per scanned pixel, kept until the next scan otherwise). dlib's copy
    /// constructor copies the detector's configuration and weights, never the scanned image.
    pub fn release_scratch(&mut self) {
        self.inner = self.inner.clone();
    }
}

impl Default for HogDetector {
    fn default() -> Self {
        Self::new()
    }
}
