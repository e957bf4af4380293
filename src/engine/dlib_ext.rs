//! dlib image calls that `dlib-face-recognition` does not expose (HOG detection, with the
//! Python library's `pyramid_up` upsampling, is in `hog.rs`).

use cpp::cpp;
use dlib_face_recognition::ImageMatrix;

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
