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
    #include <dlib/matrix.h>
    #include <dlib/pixel.h>
    static_assert(sizeof(dlib::rgb_pixel) == 3, "rgb_pixel is three bytes: red, green, blue");
}}

/// A `width`x`height` dlib RGB matrix whose rows `fill(y, row)` writes (each `row` is the
/// `width * 3` bytes of row `y`, red, green, blue), with no copy of the pixels in between.
pub fn matrix_from_rows(
    width: usize,
    height: usize,
    mut fill: impl FnMut(usize, &mut [u8]),
) -> ImageMatrix {
    // SAFETY: sizes only; the matrix (every pixel set to black) comes back by value into the
    // Rust-owned ImageMatrix.
    let mut matrix = unsafe {
        cpp!([width as "size_t", height as "size_t"] -> ImageMatrix as "dlib::matrix<dlib::rgb_pixel>" {
            dlib::matrix<dlib::rgb_pixel> m(height, width);
            // rgb_pixel's default constructor leaves its bytes uninitialised.
            m = dlib::rgb_pixel(0, 0, 0);
            return m;
        })
    };
    if width == 0 || height == 0 {
        return matrix;
    }
    let m = &mut matrix;
    // SAFETY: `m` is a live, exclusively borrowed matrix of height x width elements (both
    // non-zero, so element (0, 0) exists).
    let data = unsafe {
        cpp!([m as "dlib::matrix<dlib::rgb_pixel>*"] -> *mut u8 as "unsigned char*" {
            return reinterpret_cast<unsigned char*>(&(*m)(0, 0));
        })
    };
    // SAFETY: a dynamically sized dlib::matrix keeps its height * width elements in one
    // row-major allocation, and rgb_pixel is exactly three unsigned chars (static_assert
    // above), so `data` points at height * width * 3 initialised bytes. They stay valid and
    // are reached only through this slice while `matrix` is borrowed mutably here; the slice
    // ends before `matrix` is returned.
    let bytes = unsafe { std::slice::from_raw_parts_mut(data, width * height * 3) };
    for (y, row) in bytes.chunks_exact_mut(width * 3).enumerate() {
        fill(y, row);
    }
    matrix
}

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
    pub fn detect(&mut self, image: &ImageMatrix, upsample: u32) -> Vec<Rectangle> {
        let detector = &mut self.inner;
        // SAFETY: both pointers come from live references for the whole call: the detector's
        // from an exclusive one (scanning rewrites its buffers), the image's from a shared one
        // (only read).
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
    /// ~6 bytes per scanned pixel, kept until the next scan otherwise). dlib's copy
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
