//! HOG face detection on every core of the rayon pool, box for box what dlib's single-threaded
//! `frontal_face_detector` finds.
//!
//! # Contract
//!
//! [`HogModel::detect`] returns exactly (same rectangles, same order) what the Python library's
//! path returns: the image upsampled `upsample` times with `pyramid_up`, scanned by
//! `dlib::get_frontal_face_detector()` (`object_detector<scan_fhog_pyramid<pyramid_down<6>>>`,
//! 5 filters, threshold adjustment 0), and each box mapped back with
//! `pyramid_down<2>::rect_down`. [`DlibDetector`] is that single-threaded call, kept for the
//! tests that prove it (tests/hog_parity.rs, and the unit tests below). A [`HogModel`] is
//! immutable and `Sync`: one per engine, shared by every thread. A detection keeps nothing
//! once it returns.
//!
//! # What dlib does (dlib 19.24, scan_fhog_pyramid.h and object_detector.h)
//!
//! 1. `scanner.load(img)` (`create_fhog_pyramid`): the number of levels comes from the image
//!    rectangle, shrunk with `pyramid_down<6>::rect_down` while it stays at least
//!    `min_pyramid_layer_width` x `..._height` wide and below `max_pyramid_levels`; level 0 is
//!    the image, level `l` is `pyramid_down<6>` of level `l - 1` (an `array2d<rgb_pixel>`);
//!    each level's fHOG planes are extracted with the scanner's cell size and the fHOG window
//!    size as the filter padding (rows: window height, columns: window width).
//! 2. For each weight vector `i` in order, `scanner.detect(filterbank_i, dets, thresh_i)`
//!    (`detect_from_fhog_pyramid`): for each level in order, `apply_filters_to_fhog` gives a
//!    saliency image; every position of its valid area, row by row then column by column,
//!    scoring `>= thresh_i` appends `(score, rect_up(feats_to_image(window at it), level))`;
//!    then `std::sort` of the whole list, highest score first. That sort is not stable, so
//!    the order of equal scores depends on the order of its input.
//! 3. The lists are appended in filter order as `rect_detection`s (confidence: score -
//!    thresh_i), sorted again (`std::sort`, highest first), and kept greedily unless a kept
//!    box overlaps them by the detector's `test_box_overlap` (any kept box, whatever its
//!    filter: object_detector's own `overlaps_any_box`).
//!
//! # How it is split here
//!
//! - **Resizes in row stripes.** The upsampling (`pyramid_up`) and every `pyramid_down<6>` level
//!   end in dlib's `resize_image(in, out, interpolate_bilinear)` for RGB images, whose output
//!   rows depend only on the input and on a `y` accumulated row by row. hog.hpp's
//!   `resize_rows` is that function limited to a range of rows (after the same additions to
//!   `y`), so stripes of rows are made in parallel into one image, byte for byte dlib's (unit
//!   test). Without this the upsampling alone is ~10% of the work and would run on one core.
//! - **One task per level.** The task of level `l` first makes level `l + 1` and hands it to the
//!   pool (the chain of levels is the one sequential path), then extracts its own fHOG planes
//!   and applies the 5 filters in parallel, each with its own saliency image and scratch. A
//!   level image (the upsampled image for level 0) is freed once its planes and the next level
//!   exist, so only a few exist at once; planes once their filters ran.
//! - **Merge on one thread.** Each `(filter, level)` task produces exactly the entries dlib's
//!   loop appends for that filter at that level, in the same order, so concatenating them per
//!   filter in level order rebuilds dlib's input to step 2's sort element for element. Step 2's
//!   sorts and step 3 then run with dlib's own comparison functions: ties come out as in dlib.
//!
//! Every step calls the same dlib templates with the same image types (the level-0 `matrix`,
//! the `array2d` levels) as the single-threaded detector, compiled in the same translation unit
//! with the same flags. The top level is ~30% of the work, but most of it is its fHOG planes
//! (~14% at 640x480 upsampled once, measured; its filters ~7%, already split 5 ways): the
//! longest task is under a quarter of the work, so splitting the filters of large levels into
//! row stripes would not shorten a detection even on 4 cores.
//!
//! The scanner's configuration that dlib keeps private (`compute_fhog_window_size`) comes from
//! its public accessors (`get_fhog_window_width/height`, `get_padding`); a unit test checks
//! them against the private formula, and checks the feature pyramid built here against the
//! one `scanner.load` builds, plane by plane.

use std::ffi::c_void;
use std::ptr::NonNull;

use cpp::{cpp, cpp_class};
use dlib_face_recognition::{FaceLocations, ImageMatrix, Rectangle};
use rayon::prelude::*;

use super::Frame;

cpp! {{
    // The C++ half of this module (build.rs puts src/engine on the include path).
    #include "hog.hpp"
}}

/// Why a detection may not finish: dlib threw (only `std::bad_alloc` is possible, on an image
/// far above the detection budget). Rust aborts on a failed allocation of its own; here the
/// thread panics with this message instead, which a caller may catch.
const OUT_OF_MEMORY: &str = "HOG detection: dlib could not allocate memory for this image";

/// The frontal face detector's configuration and its 5 processed filterbanks, read once from
/// `dlib::get_frontal_face_detector()` and never changed: shared by every thread.
pub struct HogModel {
    model: NonNull<c_void>,
}

// SAFETY: `model` owns a face_hog::model that nothing mutates after construction: every use
// takes it as `const model&`, and the dlib members read there (filterbanks, feature extractor,
// overlap tester) have only const, allocation-free accessors, so concurrent reads are sound
// and the owner may drop it from any thread.
unsafe impl Send for HogModel {}
// SAFETY: as above: only shared, read-only access after construction.
unsafe impl Sync for HogModel {}

impl Drop for HogModel {
    fn drop(&mut self) {
        let m = self.model.as_ptr();
        // SAFETY: `m` came from `new model` in new_frontal_face_model and is deleted once, here;
        // no borrow of it outlives `self`.
        unsafe { cpp!([m as "face_hog::model*"] { delete m; }) }
    }
}

impl HogModel {
    /// dlib's built-in frontal face detector (the model the Python library uses).
    ///
    /// # Panics
    /// Only when dlib cannot allocate the model (a few MB) or its built-in weights are
    /// inconsistent, neither of which depends on input.
    pub fn frontal_face() -> HogModel {
        // SAFETY: no arguments; the C++ side catches every exception and returns an owning
        // pointer or null.
        let model = unsafe {
            cpp!([] -> *mut c_void as "face_hog::model*" {
                return face_hog::new_frontal_face_model();
            })
        };
        let model =
            NonNull::new(model).expect("dlib's built-in frontal face detector could not be loaded");
        HogModel { model }
    }

    fn raw(&self) -> *const c_void {
        self.model.as_ptr()
    }

    /// Number of weight vectors (filters) of the detector: 5.
    pub fn filter_count(&self) -> usize {
        let m = self.raw();
        // SAFETY: `m` points at the live, immutable model of `self`.
        unsafe {
            cpp!([m as "const face_hog::model*"] -> usize as "size_t" {
                return m->filterbanks.size();
            })
        }
    }

    /// Face rectangles in `frame` coordinates (not clipped), in dlib's order: see the module
    /// docs. Spread over the rayon pool of the calling thread (the global pool from outside
    /// rayon).
    pub fn detect(&self, frame: &Frame, upsample: u32) -> Vec<Rectangle> {
        self.detect_with(frame, upsample, Spread::AllThreads)
    }

    /// [`HogModel::detect`], spread over the pool or not: the same rectangles either way.
    pub fn detect_with(&self, frame: &Frame, upsample: u32, spread: Spread) -> Vec<Rectangle> {
        self.detect_matrix(&frame.matrix, upsample, spread)
    }

    fn detect_matrix(&self, image: &ImageMatrix, upsample: u32, spread: Spread) -> Vec<Rectangle> {
        let upsampled = (upsample > 0).then(|| upsample_image(image, upsample, spread));
        let levels = self.level_count(upsampled.as_ref().unwrap_or(image));
        // The upsampled image goes to level 0's task, which frees it once it is done with it.
        let base = match upsampled {
            Some(m) => LevelImage::Upsampled(m),
            None => LevelImage::Frame(image),
        };
        let filters = self.filter_count();
        // found[level][filter]: what dlib's loop appends for that filter at that level.
        let mut found: Vec<Vec<Detections>> = (0..levels).map(|_| Vec::new()).collect();
        match spread {
            Spread::AllThreads => rayon::scope(|s| self.scan_from(s, base, 0, &mut found)),
            Spread::OneThread => {
                // Level by level: each level image lives until the next one is made.
                let mut image = base;
                for (level, slot) in found.iter_mut().enumerate() {
                    let next = (level + 1 < levels).then(|| image.next_level(spread));
                    *slot = self.scan_level(image, level, spread);
                    match next {
                        Some(next) => image = LevelImage::Down(next),
                        None => break,
                    }
                }
            }
        }
        self.merge(&found, filters, upsample)
    }

    /// Scans pyramid level `level` (`image`) into `slots[0]`, and the levels below it into the
    /// rest: makes the next level first and hands it to the pool (the chain of levels is the
    /// longest sequential path), then this level's planes and filters. Each level image lives
    /// until its planes and the next level exist, so at most a few exist at once whatever the
    /// number of threads (on one thread, two).
    fn scan_from<'s>(
        &'s self,
        scope: &rayon::Scope<'s>,
        image: LevelImage<'s>,
        level: usize,
        slots: &'s mut [Vec<Detections>],
    ) {
        let Some((slot, rest)) = slots.split_first_mut() else {
            return;
        };
        if !rest.is_empty() {
            let next = LevelImage::Down(image.next_level(Spread::AllThreads));
            scope.spawn(move |s| self.scan_from(s, next, level + 1, rest));
        }
        *slot = self.scan_level(image, level, Spread::AllThreads);
    }

    fn level_count(&self, image: &ImageMatrix) -> usize {
        let m = self.raw();
        // SAFETY: both pointers come from live shared references; only read.
        unsafe {
            cpp!([m as "const face_hog::model*", image as "const face_hog::base_image*"]
                 -> usize as "size_t" {
                return face_hog::level_count(*m, image->nc(), image->nr());
            })
        }
    }

    /// One level: its fHOG planes, then each filter on them (in parallel when spread), in
    /// filter order.
    fn scan_level(&self, image: LevelImage<'_>, level: usize, spread: Spread) -> Vec<Detections> {
        let features = image.features(self);
        // The planes are all the filters need: free the level image now.
        drop(image);
        (0..self.filter_count())
            .into_par_iter()
            .with_min_len(spread.min_len())
            .map(|filter| features.scan(self, filter, level))
            .collect()
    }

    fn merge(&self, found: &[Vec<Detections>], filters: usize, upsample: u32) -> Vec<Rectangle> {
        let levels = found.len();
        let mut lists: Vec<*const c_void> = Vec::with_capacity(filters * levels);
        for filter in 0..filters {
            for per_level in found {
                match per_level.get(filter) {
                    Some(d) => lists.push(d.list.as_ptr()),
                    // Every spawned task fills its slot before rayon::scope returns (a
                    // panicking one re-panics there), so this is unreachable.
                    None => unreachable!("a pyramid level was not scanned"),
                }
            }
        }
        let m = self.raw();
        let lists_ptr = lists.as_ptr();
        let mut out = FaceLocations::default();
        let out_ref = &mut out;
        // SAFETY: `m` is the live model; `lists_ptr` points at filters * levels valid det_list
        // pointers (the vector and every Detections in `found` live until after the call),
        // and the C++ side reads exactly filters * levels entries (filters is the model's
        // filterbank count). `out_ref` is an exclusive reference to a live vector.
        let ok = unsafe {
            cpp!([m as "const face_hog::model*",
                  lists_ptr as "const face_hog::det_list* const*",
                  levels as "size_t",
                  upsample as "uint32_t",
                  out_ref as "std::vector<dlib::rectangle>*"] -> bool as "bool" {
                return face_hog::merge(*m, lists_ptr, levels, upsample, *out_ref);
            })
        };
        assert!(ok, "{OUT_OF_MEMORY}");
        out.to_vec()
    }
}

/// Output pixels per stripe when an image is resized on the pool: small enough that a
/// 1280x960 upsampling splits into ~40 tasks for any number of threads, large enough that a
/// task costs far more than handing it to a thread.
const STRIPE_PIXELS: usize = 1 << 15;

/// How one detection uses the rayon pool it runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spread {
    /// Its stripes, levels and filters are tasks for every thread: the shortest time when
    /// threads are free.
    AllThreads,
    /// All on the calling thread, nothing for other threads to take: the least CPU when every
    /// thread already has an image of its own (a task taken from another detection holds up
    /// the taker's own work until it ends, and the pool idles meanwhile).
    OneThread,
}

impl Spread {
    /// The smallest piece a parallel iterator is split into: everything at once on one thread.
    fn min_len(self) -> usize {
        match self {
            Spread::AllThreads => 1,
            Spread::OneThread => usize::MAX,
        }
    }
}

/// The row ranges `[r0, r1)` an image of `rows` x `columns` is resized in, on the pool.
fn stripes(
    rows: usize,
    columns: usize,
    spread: Spread,
) -> impl IndexedParallelIterator<Item = (usize, usize)> {
    let per_stripe = (STRIPE_PIXELS / columns.max(1)).max(1);
    (0..rows.div_ceil(per_stripe))
        .into_par_iter()
        .with_min_len(spread.min_len())
        .map(move |i| (i * per_stripe, ((i + 1) * per_stripe).min(rows)))
}

/// The image that stripes write: each writes its own rows only.
#[derive(Clone, Copy)]
struct StripeTarget(*mut c_void);

// SAFETY: the pointer is only used by resize_rows calls on disjoint row ranges of one image,
// sized before the stripes start and not otherwise touched until they all returned (rayon's
// for_each returns after every stripe ran).
unsafe impl Send for StripeTarget {}
// SAFETY: as above.
unsafe impl Sync for StripeTarget {}

impl StripeTarget {
    fn ptr(self) -> *mut c_void {
        self.0
    }
}

/// `image` upsampled `upsample` (>= 1) times with `pyramid_up`, as the Python binding does
/// (each time made in row stripes on the pool).
fn upsample_image(image: &ImageMatrix, upsample: u32, spread: Spread) -> ImageMatrix {
    let mut out = upsample_once(image, spread);
    for _ in 1..upsample {
        out = upsample_once(&out, spread);
    }
    out
}

/// `pyramid_up(image, out, pyramid_down<2>)`, the resize in row stripes on the pool.
fn upsample_once(image: &ImageMatrix, spread: Spread) -> ImageMatrix {
    let mut out = ImageMatrix::default();
    let target = StripeTarget(&mut out as *mut ImageMatrix as *mut c_void);
    let t = target.ptr();
    // SAFETY: `image` is only read; `t` points at `out`, live and not otherwise used here.
    let ok = unsafe {
        cpp!([image as "const face_hog::base_image*", t as "face_hog::base_image*"] -> bool as "bool" {
            return face_hog::size_upsampled(*image, *t);
        })
    };
    assert!(ok, "{OUT_OF_MEMORY}");
    // SAFETY: `t` points at the live matrix `out`, only read.
    let (rows, columns) = unsafe {
        (
            cpp!([t as "const face_hog::base_image*"] -> usize as "size_t" { return t->nr(); }),
            cpp!([t as "const face_hog::base_image*"] -> usize as "size_t" { return t->nc(); }),
        )
    };
    stripes(rows, columns, spread).for_each(|(r0, r1)| {
        let t = target.ptr();
        // SAFETY: `image` is live and only read; `t` points at `out`, sized above and alive
        // until every stripe returned; this call writes rows [r0, r1) only, which no other
        // stripe writes (StripeTarget), and allocates nothing.
        unsafe {
            cpp!([image as "const face_hog::base_image*", t as "face_hog::base_image*",
                  r0 as "size_t", r1 as "size_t"] {
                face_hog::resize_rows(*image, *t, r0, r1);
            })
        }
    });
    out
}

/// One level of the image pyramid, owned by the task that scans it.
enum LevelImage<'a> {
    /// Level 0 without upsampling: the frame itself.
    Frame(&'a ImageMatrix),
    /// Level 0 with upsampling: the upsampled frame.
    Upsampled(ImageMatrix),
    /// A `pyramid_down<6>` level.
    Down(Level),
}

/// A level's pixels in the type dlib's pyramid code has there: a matrix at level 0 (as the
/// detector was called), an array2d below.
enum Pixels<'b> {
    Matrix(&'b ImageMatrix),
    Array(&'b Level),
}

impl LevelImage<'_> {
    fn pixels(&self) -> Pixels<'_> {
        match self {
            LevelImage::Frame(m) => Pixels::Matrix(m),
            LevelImage::Upsampled(m) => Pixels::Matrix(m),
            LevelImage::Down(l) => Pixels::Array(l),
        }
    }

    /// The next, smaller level: `pyramid_down<6>` of this one, made in row stripes on the pool.
    fn next_level(&self, spread: Spread) -> Level {
        // SAFETY: each arm passes a pointer to a live image of the type named, only read.
        let level = unsafe {
            match self.pixels() {
                Pixels::Matrix(m) => {
                    cpp!([m as "const face_hog::base_image*"] -> *mut c_void as "face_hog::level_image*" {
                        return face_hog::new_level(*m);
                    })
                }
                Pixels::Array(l) => {
                    let l = l.0.as_ptr();
                    cpp!([l as "const face_hog::level_image*"] -> *mut c_void as "face_hog::level_image*" {
                        return face_hog::new_level(*l);
                    })
                }
            }
        };
        let level = Level(NonNull::new(level).expect(OUT_OF_MEMORY));
        let target = StripeTarget(level.0.as_ptr());
        let t = target.ptr();
        // SAFETY: `t` points at the live level image just made, only read.
        let (rows, columns) = unsafe {
            (
                cpp!([t as "const face_hog::level_image*"] -> usize as "size_t" { return t->nr(); }),
                cpp!([t as "const face_hog::level_image*"] -> usize as "size_t" { return t->nc(); }),
            )
        };
        stripes(rows, columns, spread).for_each(|(r0, r1)| {
            let t = target.ptr();
            // SAFETY: each arm's source image is live and only read; `t` points at `level`,
            // sized above and alive until every stripe returned; this call writes rows
            // [r0, r1) only, which no other stripe writes (StripeTarget), and allocates nothing.
            unsafe {
                match self.pixels() {
                    Pixels::Matrix(m) => {
                        cpp!([m as "const face_hog::base_image*", t as "face_hog::level_image*",
                              r0 as "size_t", r1 as "size_t"] {
                            face_hog::resize_rows(*m, *t, r0, r1);
                        })
                    }
                    Pixels::Array(l) => {
                        let l = l.0.as_ptr();
                        cpp!([l as "const face_hog::level_image*", t as "face_hog::level_image*",
                              r0 as "size_t", r1 as "size_t"] {
                            face_hog::resize_rows(*l, *t, r0, r1);
                        })
                    }
                }
            }
        });
        level
    }

    /// The fHOG planes of this level.
    fn features(&self, model: &HogModel) -> Features {
        let m = model.raw();
        // SAFETY: the model and each arm's image are live and only read.
        let planes = unsafe {
            match self.pixels() {
                Pixels::Matrix(img) => {
                    cpp!([m as "const face_hog::model*", img as "const face_hog::base_image*"]
                         -> *mut c_void as "face_hog::fhog_image*" {
                        return face_hog::features(*m, *img);
                    })
                }
                Pixels::Array(l) => {
                    let l = l.0.as_ptr();
                    cpp!([m as "const face_hog::model*", l as "const face_hog::level_image*"]
                         -> *mut c_void as "face_hog::fhog_image*" {
                        return face_hog::features(*m, *l);
                    })
                }
            }
        };
        Features(NonNull::new(planes).expect(OUT_OF_MEMORY))
    }
}

/// An owned `dlib::array2d<rgb_pixel>` (a pyramid level image).
struct Level(NonNull<c_void>);

// SAFETY: an array2d is plain owned pixel memory: after it is made, it is only read (const
// access through image views, which keep no cursor), so it may be shared and dropped anywhere.
unsafe impl Send for Level {}
// SAFETY: as above.
unsafe impl Sync for Level {}

impl Drop for Level {
    fn drop(&mut self) {
        let p = self.0.as_ptr();
        // SAFETY: made by `new level_image` in next_level, deleted once, here.
        unsafe { cpp!([p as "face_hog::level_image*"] { delete p; }) }
    }
}

/// An owned `dlib::array<array2d<float>>`: the 31 fHOG planes of one level.
struct Features(NonNull<c_void>);

// SAFETY: plain owned float planes, only read (by apply_filters_to_fhog, through const
// references) once extracted.
unsafe impl Send for Features {}
// SAFETY: as above.
unsafe impl Sync for Features {}

impl Drop for Features {
    fn drop(&mut self) {
        let p = self.0.as_ptr();
        // SAFETY: made by `new fhog_image` in features, deleted once, here.
        unsafe { cpp!([p as "face_hog::fhog_image*"] { delete p; }) }
    }
}

impl Features {
    /// Filter `filter` applied to these planes (of pyramid level `level`): the detections
    /// dlib's loop appends there, in its order.
    fn scan(&self, model: &HogModel, filter: usize, level: usize) -> Detections {
        let (m, f) = (model.raw(), self.0.as_ptr());
        assert!(filter < model.filter_count(), "no filter {filter}");
        // SAFETY: the model and the planes are live and only read; `filter` is in range
        // (checked above); the scratch is the call's own.
        let list = unsafe {
            cpp!([m as "const face_hog::model*", f as "const face_hog::fhog_image*",
                  filter as "size_t", level as "size_t"]
                 -> *mut c_void as "face_hog::det_list*" {
                return face_hog::scan(*m, *f, filter, level);
            })
        };
        Detections {
            list: NonNull::new(list).expect(OUT_OF_MEMORY),
        }
    }
}

/// An owned `std::vector<std::pair<double, dlib::rectangle>>`: one filter's detections at one
/// level.
struct Detections {
    list: NonNull<c_void>,
}

// SAFETY: an owned std::vector, handed from the task that filled it to the merging thread and
// only read there.
unsafe impl Send for Detections {}

impl Drop for Detections {
    fn drop(&mut self) {
        let p = self.list.as_ptr();
        // SAFETY: made by `new det_list` in scan, deleted once, here.
        unsafe { cpp!([p as "face_hog::det_list*"] { delete p; }) }
    }
}

cpp_class!(
    /// dlib's frontal HOG face detector, scanning on the calling thread alone: the reference
    /// [`HogModel`] is tested against. Not `Sync` (scanning rewrites its feature pyramid).
    // SAFETY: cpp_class! moves the C++ object by memcpy; dlib's object_detector holds only heap
    // pointers (std::vector, dlib::array) and no pointer into itself, so it survives the move.
    unsafe struct DlibInner as "dlib::frontal_face_detector"
);

/// dlib's `frontal_face_detector` called as-is, single-threaded (tests and benchmarks only).
#[doc(hidden)]
pub struct DlibDetector {
    inner: DlibInner,
    // The C++ detector keeps its last feature pyramid; keep it to one thread at a time.
    _not_sync: std::marker::PhantomData<std::cell::Cell<()>>,
}

impl DlibDetector {
    pub fn new() -> Self {
        // SAFETY: takes no pointers; the returned C++ object is moved into the Rust-owned
        // DlibInner, whose Drop runs its destructor. get_frontal_face_detector only throws on
        // allocation failure, where Rust would abort too.
        let inner = unsafe {
            cpp!([] -> DlibInner as "dlib::frontal_face_detector" {
                return dlib::get_frontal_face_detector();
            })
        };
        Self {
            inner,
            _not_sync: std::marker::PhantomData,
        }
    }

    /// What dlib's detector finds in `frame` upsampled `upsample` times, mapped back to
    /// `frame` (not clipped): the contract of [`HogModel::detect`].
    pub fn detect(&mut self, frame: &Frame, upsample: u32) -> Vec<Rectangle> {
        let detector = &mut self.inner;
        let image = &frame.matrix;
        let mut out = FaceLocations::default();
        let out_ref = &mut out;
        // SAFETY: the detector (rewritten by scanning) and `out` come from exclusive
        // references, the image from a shared one (only read), all live for the call.
        let ok = unsafe {
            cpp!([detector as "face_hog::detector_type*",
                  image as "const face_hog::base_image*",
                  upsample as "uint32_t",
                  out_ref as "std::vector<dlib::rectangle>*"] -> bool as "bool" {
                return face_hog::reference_detect(*detector, *image, upsample, *out_ref);
            })
        };
        assert!(ok, "{OUT_OF_MEMORY}");
        out.to_vec()
    }
}

impl Default for DlibDetector {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_io::RgbImage;

    fn text_of(s: *mut c_void) -> String {
        // SAFETY: `s` is a heap std::string made by the caller's cpp! block; read, then deleted.
        let (ptr, len) = unsafe {
            (
                cpp!([s as "std::string*"] -> *const u8 as "const char*" { return s->data(); }),
                cpp!([s as "std::string*"] -> usize as "size_t" { return s->size(); }),
            )
        };
        // SAFETY: data() points at size() bytes, alive until the delete below.
        let text =
            String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(ptr, len) }).into_owned();
        // SAFETY: made with `new std::string` by the caller's cpp! block, deleted once.
        unsafe { cpp!([s as "std::string*"] { delete s; }) };
        text
    }

    /// A synthetic picture with edges at every scale (gradients, stripes, noise), `w`x`h`.
    fn pattern(w: usize, h: usize) -> Frame {
        let mut pixels = Vec::with_capacity(w * h * 3);
        let mut seed = 0x2545_f491_u32;
        for y in 0..h {
            for x in 0..w {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let stripe = if (x / 7 + y / 11) % 2 == 0 { 60 } else { 0 };
                let ring = ((x * x + y * y) / 97 % 64) as u32;
                let v = |k: u32| {
                    ((x as u32 * k + y as u32 * 3 + ring + stripe + (seed >> 28)) % 256) as u8
                };
                pixels.extend_from_slice(&[v(1), v(2), v(3)]);
            }
        }
        Frame::new(&RgbImage::from_raw(w, h, pixels).expect("consistent pattern"))
    }

    #[test]
    fn the_private_scanner_configuration_is_what_the_model_assumes() {
        let model = HogModel::frontal_face();
        let m = model.raw();
        // SAFETY: `m` is the live model, only read; the string is handed to text_of.
        let err = text_of(unsafe {
            cpp!([m as "const face_hog::model*"] -> *mut c_void as "std::string*" {
                return new std::string(face_hog::check_configuration(*m));
            })
        });
        assert_eq!(err, "");
        assert_eq!(model.filter_count(), 5);
    }

    #[test]
    fn striped_resizes_are_dlibs_pyramid_up_and_pyramid_down() {
        // Widths around every multiple of 4 and 8 (the SIMD groups of dlib's loop and of the
        // AVX2 one, and where each stops before the last pixel), then larger odd shapes.
        let narrow = (1..=40).flat_map(|w| [(w, 3), (w, 10)]);
        let wide = [
            (1, 7),
            (2, 2),
            (40, 30),
            (97, 131),
            (255, 17),
            (257, 18),
            (640, 480),
            (1001, 33),
            (33, 1001),
            (1280, 9),
        ];
        for (w, h) in narrow.chain(wide) {
            let frame = pattern(w, h);
            let image: &ImageMatrix = &frame.matrix;
            for spread in [Spread::AllThreads, Spread::OneThread] {
                let up = upsample_once(image, spread);
                let up_ref = &up;
                let level1 = LevelImage::Down(LevelImage::Frame(image).next_level(spread));
                let level2 = level1.next_level(spread);
                let Pixels::Array(l1) = level1.pixels() else {
                    unreachable!("made as an array2d level above")
                };
                let (l1, l2) = (l1.0.as_ptr(), level2.0.as_ptr());
                // SAFETY: the four images are live and only read; the string is handed to text_of.
                let err = text_of(unsafe {
                    cpp!([image as "const face_hog::base_image*", up_ref as "const face_hog::base_image*",
                          l1 as "const face_hog::level_image*", l2 as "const face_hog::level_image*"]
                         -> *mut c_void as "std::string*" {
                        return new std::string(face_hog::compare_resizes(*image, *up_ref, *l1, *l2));
                    })
                });
                assert_eq!(err, "", "{w}x{h} {spread:?}");
            }
        }
    }

    #[test]
    fn the_feature_pyramid_is_the_one_dlib_builds() {
        let model = HogModel::frontal_face();
        // Below the window, one level, several levels, odd sizes, one pixel wide; 77, 92 and
        // 111 px shrink to exactly the smallest level size (64 px) after 1 to 3 levels, which
        // still counts as a level.
        let sizes = [
            (40, 30),
            (80, 80),
            (97, 131),
            (333, 250),
            (640, 480),
            (1, 300),
            (300, 1),
            (77, 200),
            (200, 92),
            (111, 111),
        ];
        for (w, h) in sizes {
            let frame = pattern(w, h);
            let base: &ImageMatrix = &frame.matrix;
            let levels = model.level_count(base);
            let mut images = vec![LevelImage::Frame(base)];
            while images.len() < levels {
                let next = images
                    .last()
                    .map(|i| i.next_level(Spread::AllThreads))
                    .expect("level 0");
                images.push(LevelImage::Down(next));
            }
            let planes: Vec<Features> = images.iter().map(|i| i.features(&model)).collect();
            let ptrs: Vec<*const c_void> = planes
                .iter()
                .map(|f| f.0.as_ptr() as *const c_void)
                .collect();
            let (m, ptrs_ptr, n) = (model.raw(), ptrs.as_ptr(), ptrs.len());
            // SAFETY: the model, the image and the `n` planes behind `ptrs_ptr` are live for the
            // call and only read; the string is handed to text_of.
            let err = text_of(unsafe {
                cpp!([m as "const face_hog::model*", base as "const face_hog::base_image*",
                      ptrs_ptr as "const face_hog::fhog_image* const*", n as "size_t"]
                     -> *mut c_void as "std::string*" {
                    std::vector<const face_hog::fhog_image*> ours(ptrs_ptr, ptrs_ptr + n);
                    return new std::string(face_hog::compare_pyramids(*m, *base, ours));
                })
            });
            assert_eq!(err, "", "{w}x{h}: {levels} levels");
        }
    }

    /// A smoke test on odd sizes (one pixel wide, below the window); the real comparison, on
    /// photos with faces, is tests/hog_parity.rs.
    #[test]
    fn detections_match_dlib_on_synthetic_images() {
        let model = HogModel::frontal_face();
        let mut dlib = DlibDetector::new();
        for (w, h) in [(40, 30), (97, 131), (640, 480), (1, 50)] {
            let frame = pattern(w, h);
            for upsample in [0, 1] {
                let want = dlib.detect(&frame, upsample);
                for spread in [Spread::AllThreads, Spread::OneThread] {
                    assert_eq!(
                        model.detect_with(&frame, upsample, spread),
                        want,
                        "{w}x{h} upsample {upsample} {spread:?}"
                    );
                }
            }
        }
    }
}
