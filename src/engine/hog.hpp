// dlib's HOG face detector taken apart so that Rust can run its pyramid levels and filters on
// every core (src/engine/hog.rs, whose module docs state the contract). Each function below is
// a copy of one step of dlib 19.24's single-threaded code, with the same types and the same
// arithmetic, named after it:
//   object_detector<scan_fhog_pyramid<pyramid_down<6>>>::operator()   (object_detector.h)
//   scan_fhog_pyramid::load / detect, impl::create_fhog_pyramid,
//   impl::detect_from_fhog_pyramid                                   (scan_fhog_pyramid.h)
// Included by hog.rs's cpp! block (build.rs puts src/engine on the include path).
//
// Every function that Rust calls catches what dlib may throw (std::bad_alloc on a huge image):
// an exception must not unwind into Rust frames. nullptr / false tell Rust it failed.

#ifndef FACE_ATTENDANCE_HOG_HPP
#define FACE_ATTENDANCE_HOG_HPP

#include <dlib/image_processing/frontal_face_detector.h>
#include <dlib/image_transforms.h>
#include <dlib/matrix.h>
#include <dlib/pixel.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace face_hog {

typedef dlib::frontal_face_detector detector_type;
typedef detector_type::image_scanner_type scanner_type;
typedef scanner_type::pyramid_type pyramid_type;
typedef scanner_type::feature_extractor_type feature_extractor_type;
typedef scanner_type::fhog_filterbank filterbank;
// The image types create_fhog_pyramid works on: the image it is given (a matrix here, as the
// detector was always called), then array2d levels.
typedef dlib::matrix<dlib::rgb_pixel> base_image;
typedef dlib::array2d<dlib::rgb_pixel> level_image;
// scan_fhog_pyramid::fhog_image: one level's 31 planes.
typedef dlib::array<dlib::array2d<float> > fhog_image;
// What detect_from_fhog_pyramid collects: (score, rectangle in the scanned image).
typedef std::vector<std::pair<double, dlib::rectangle> > det_list;

// What object_detector::operator() reads from itself and from its scanner, copied once.
struct model {
    feature_extractor_type fe;
    int cell_size;
    // compute_fhog_window_size() (private in scan_fhog_pyramid), through the public
    // get_fhog_window_width/height(); a unit test checks them against its formula.
    unsigned long fhog_width;
    unsigned long fhog_height;
    unsigned long padding;
    unsigned long min_layer_width;
    unsigned long min_layer_height;
    unsigned long max_levels;
    // Per weight vector, in order: its processed filterbank and its threshold.
    std::vector<filterbank> filterbanks;
    std::vector<double> thresholds;
    dlib::test_box_overlap overlap;
};

inline model* new_frontal_face_model() noexcept {
    try {
        const detector_type detector = dlib::get_frontal_face_detector();
        const scanner_type& scanner = detector.get_scanner();
        std::unique_ptr<model> m(new model);
        m->fe = scanner.get_feature_extractor();
        m->cell_size = scanner.get_cell_size();
        m->fhog_width = scanner.get_fhog_window_width();
        m->fhog_height = scanner.get_fhog_window_height();
        m->padding = scanner.get_padding();
        m->min_layer_width = scanner.get_min_pyramid_layer_width();
        m->min_layer_height = scanner.get_min_pyramid_layer_height();
        m->max_levels = scanner.get_max_pyramid_levels();
        const long dims = scanner.get_num_dimensions();
        for (unsigned long i = 0; i < detector.num_detectors(); ++i) {
            // The threshold is the weight vector's last element, which object_detector reads
            // unchecked: refuse a model where it is missing.
            if (detector.get_w(i).size() != dims + 1)
                return nullptr;
            // The very filterbank object_detector uses: the one it built when it was
            // deserialized, scanner.build_fhog_filterbank(get_w(i)).
            m->filterbanks.push_back(detector.get_processed_w(i).get_detect_argument());
            m->thresholds.push_back(detector.get_w(i)(dims));
        }
        m->overlap = detector.get_overlap_tester();
        return m.release();
    } catch (...) {
        return nullptr;
    }
}

// create_fhog_pyramid: how many levels an image of nc x nr pixels gets.
inline unsigned long level_count(const model& m, long nc, long nr) {
    unsigned long levels = 0;
    dlib::rectangle rect(0, 0, nc - 1, nr - 1);  // get_rect(img)
    pyramid_type pyr;
    do {
        rect = pyr.rect_down(rect);
        ++levels;
    } while (rect.width() >= m.min_layer_width && rect.height() >= m.min_layer_height &&
             levels < m.max_levels);
    return levels;
}

// ---- Resizing in row stripes ----
//
// Both resizes of a detection, pyramid_up (the Python binding's upsampling) and pyramid_down<6>
// (each pyramid level from the previous one), come down to resize_image(in, out,
// interpolate_bilinear()) for RGB images once `out` is sized. Each output row of that
// function depends only on the input and on its `y`, accumulated row by row, so any range of
// rows can be made apart: resize_rows() is dlib's function with the row loop limited to
// [r0, r1), after the same additions to `y` as the rows before r0 get. Rust runs the stripes
// in parallel (disjoint rows of one image); a unit test checks the result against dlib's
// pyramid_up and pyramid_down<6>, byte for byte.

// pyramid_up(in, out, pyramid_down<2>) before its resize_image: out sized (or 0x0).
inline bool size_upsampled(const base_image& in_img, base_image& out_img) noexcept {
    try {
        dlib::pyramid_down<2> pyr;
        if (dlib::image_size(in_img) == 0) {
            dlib::set_image_size(out_img, 0, 0);
            return true;
        }
        dlib::rectangle rect = dlib::get_rect(in_img);
        dlib::rectangle uprect = pyr.rect_up(rect);
        if (uprect.is_empty()) {
            dlib::set_image_size(out_img, 0, 0);
            return true;
        }
        dlib::set_image_size(out_img, uprect.bottom() + 1, uprect.right() + 1);
        return true;
    } catch (...) {
        return false;
    }
}

// pyramid_down<N>::operator()(original, down) before its resize_image: a new level, sized.
template <unsigned int N, typename image_type>
level_image* sized_level(const image_type& original) noexcept {
    try {
        std::unique_ptr<level_image> down(new level_image);
        dlib::set_image_size(*down, ((N - 1) * dlib::num_rows(original)) / N + 0.5,
                             ((N - 1) * dlib::num_columns(original)) / N + 0.5);
        return down.release();
    } catch (...) {
        return nullptr;
    }
}

template <typename image_type>
level_image* new_level(const image_type& original) noexcept {
    return sized_level<6>(original);
}

// dlib's resize_image, RGB: the columns of row r from c on, past its SIMD loop (in double).
template <typename in_view, typename out_view>
void resize_row_tail(const in_view& in_img, out_view& out_img, long r, long top, long bottom,
                     double tb_frac, long c, double x_scale) {
    using namespace dlib;
    typedef typename in_view::pixel_type T;
    double x = -x_scale + c*x_scale;
    for (; c < out_img.nc(); ++c)
    {
        x += x_scale;
        const long left   = static_cast<long>(std::floor(x));
        const long right  = std::min(left+1, in_img.nc()-1);
        const double lr_frac = x - left;

        const T tl = in_img[top][left];
        const T tr = in_img[top][right];
        const T bl = in_img[bottom][left];
        const T br = in_img[bottom][right];

        T temp;
        assign_pixel(temp, 0);
        vector_to_pixel(temp,
            (1-tb_frac)*((1-lr_frac)*pixel_to_vector<double>(tl) + lr_frac*pixel_to_vector<double>(tr)) +
            tb_frac*((1-lr_frac)*pixel_to_vector<double>(bl) + lr_frac*pixel_to_vector<double>(br)));
        assign_pixel(out_img[r][c], temp);
    }
}

// dlib 19.24's resize_image(in, out, interpolate_bilinear) for RGB images (interpolation.h),
// rows [r0, r1) of `out` only; the body of the row loop is dlib's, unchanged.
template <typename image_type1, typename image_type2>
void resize_rows_dlib(const image_type1& in_img_, image_type2& out_img_, long r0, long r1) noexcept {
    using namespace dlib;
    const_image_view<image_type1> in_img(in_img_);
    image_view<image_type2> out_img(out_img_);

    if (out_img.size() == 0 || in_img.size() == 0)
        return;

    const double x_scale = (in_img.nc()-1)/(double)std::max<long>((out_img.nc()-1),1);
    const double y_scale = (in_img.nr()-1)/(double)std::max<long>((out_img.nr()-1),1);
    double y = -y_scale;
    // The additions dlib makes for the rows before r0, one by one: the same rounding.
    for (long r = 0; r < r0; ++r)
        y += y_scale;
    for (long r = r0; r < r1 && r < out_img.nr(); ++r)
    {
        y += y_scale;
        const long top    = static_cast<long>(std::floor(y));
        const long bottom = std::min(top+1, in_img.nr()-1);
        const double tb_frac = y - top;
        double x = -4*x_scale;

        const simd4f _tb_frac = tb_frac;
        const simd4f _inv_tb_frac = 1-tb_frac;
        const simd4f _x_scale = 4*x_scale;
        simd4f _x(x, x+x_scale, x+2*x_scale, x+3*x_scale);
        long c = 0;
        for (;; c+=4)
        {
            _x += _x_scale;
            simd4i left = simd4i(_x);
            simd4f lr_frac = _x-left;
            simd4f _inv_lr_frac = 1-lr_frac;
            simd4i right = left+1;

            simd4f tlf = _inv_tb_frac*_inv_lr_frac;
            simd4f trf = _inv_tb_frac*lr_frac;
            simd4f blf = _tb_frac*_inv_lr_frac;
            simd4f brf = _tb_frac*lr_frac;

            int32 fleft[4];
            int32 fright[4];
            left.store(fleft);
            right.store(fright);

            if (fright[3] >= in_img.nc())
                break;
            simd4f tl(in_img[top][fleft[0]].red,     in_img[top][fleft[1]].red,     in_img[top][fleft[2]].red,     in_img[top][fleft[3]].red);
            simd4f tr(in_img[top][fright[0]].red,    in_img[top][fright[1]].red,    in_img[top][fright[2]].red,    in_img[top][fright[3]].red);
            simd4f bl(in_img[bottom][fleft[0]].red,  in_img[bottom][fleft[1]].red,  in_img[bottom][fleft[2]].red,  in_img[bottom][fleft[3]].red);
            simd4f br(in_img[bottom][fright[0]].red, in_img[bottom][fright[1]].red, in_img[bottom][fright[2]].red, in_img[bottom][fright[3]].red);

            simd4i out = simd4i(tlf*tl + trf*tr + blf*bl + brf*br);
            int32 fout[4];
            out.store(fout);

            out_img[r][c].red   = static_cast<unsigned char>(fout[0]);
            out_img[r][c+1].red = static_cast<unsigned char>(fout[1]);
            out_img[r][c+2].red = static_cast<unsigned char>(fout[2]);
            out_img[r][c+3].red = static_cast<unsigned char>(fout[3]);


            tl = simd4f(in_img[top][fleft[0]].green,    in_img[top][fleft[1]].green,    in_img[top][fleft[2]].green,    in_img[top][fleft[3]].green);
            tr = simd4f(in_img[top][fright[0]].green,   in_img[top][fright[1]].green,   in_img[top][fright[2]].green,   in_img[top][fright[3]].green);
            bl = simd4f(in_img[bottom][fleft[0]].green, in_img[bottom][fleft[1]].green, in_img[bottom][fleft[2]].green, in_img[bottom][fleft[3]].green);
            br = simd4f(in_img[bottom][fright[0]].green, in_img[bottom][fright[1]].green, in_img[bottom][fright[2]].green, in_img[bottom][fright[3]].green);
            out = simd4i(tlf*tl + trf*tr + blf*bl + brf*br);
            out.store(fout);
            out_img[r][c].green   = static_cast<unsigned char>(fout[0]);
            out_img[r][c+1].green = static_cast<unsigned char>(fout[1]);
            out_img[r][c+2].green = static_cast<unsigned char>(fout[2]);
            out_img[r][c+3].green = static_cast<unsigned char>(fout[3]);


            tl = simd4f(in_img[top][fleft[0]].blue,     in_img[top][fleft[1]].blue,     in_img[top][fleft[2]].blue,     in_img[top][fleft[3]].blue);
            tr = simd4f(in_img[top][fright[0]].blue,    in_img[top][fright[1]].blue,    in_img[top][fright[2]].blue,    in_img[top][fright[3]].blue);
            bl = simd4f(in_img[bottom][fleft[0]].blue,  in_img[bottom][fleft[1]].blue,  in_img[bottom][fleft[2]].blue,  in_img[bottom][fleft[3]].blue);
            br = simd4f(in_img[bottom][fright[0]].blue, in_img[bottom][fright[1]].blue, in_img[bottom][fright[2]].blue, in_img[bottom][fright[3]].blue);
            out = simd4i(tlf*tl + trf*tr + blf*bl + brf*br);
            out.store(fout);
            out_img[r][c].blue   = static_cast<unsigned char>(fout[0]);
            out_img[r][c+1].blue = static_cast<unsigned char>(fout[1]);
            out_img[r][c+2].blue = static_cast<unsigned char>(fout[2]);
            out_img[r][c+3].blue = static_cast<unsigned char>(fout[3]);
        }
        resize_row_tail(in_img, out_img, r, top, bottom, tb_frac, c, x_scale);
    }
}

#if defined(__AVX2__)
// The same resize, faster and byte for byte the same (a unit test compares them on many sizes).
// dlib's loop spends its time loading each byte of 4 pixels x 4 neighbours x 3 channels one by
// one. Here:
// - The columns' positions (left/right neighbour, horizontal fraction) do not depend on the row:
//   they are computed once per call, with dlib's own simd4f arithmetic, in dlib's order.
// - A row then takes 8 pixels at a time: one AVX2 gather per neighbour fetches the 4 bytes at
//   each of 8 pixels (all 3 channels at once), and the weights and sums are dlib's float
//   operations in dlib's order (elementwise, so 8 lanes give what its 4 lanes give; FMA
//   contraction is off in every build, see .cargo/config.toml), truncated as dlib truncates.
// - A gather reads one byte past its pixel, so columns whose right neighbour is the row's last
//   pixel take the same arithmetic one pixel at a time, and the columns past dlib's SIMD loop
//   take dlib's own tail code (in double).
struct resize_columns {
    long simd_end = 0;         // dlib's SIMD loop covers columns [0, simd_end)
    long gather_end = 0;       // of those, [0, gather_end) may be gathered (right < nc - 1)
    std::vector<int32_t> left; // byte offsets of the left and right neighbours in a row
    std::vector<int32_t> right;
    std::vector<float> lr_frac, inv_lr_frac;
};

inline void columns_of(long in_nc, long out_nc, double x_scale, resize_columns& cols) {
    using namespace dlib;
    double x = -4*x_scale;
    const simd4f _x_scale = 4*x_scale;
    simd4f _x(x, x+x_scale, x+2*x_scale, x+3*x_scale);
    long c = 0;
    for (;; c+=4)
    {
        _x += _x_scale;
        simd4i left = simd4i(_x);
        simd4f lr_frac = _x-left;
        simd4f _inv_lr_frac = 1-lr_frac;
        simd4i right = left+1;
        int32 fleft[4];
        int32 fright[4];
        float flr[4];
        float finv[4];
        left.store(fleft);
        right.store(fright);
        lr_frac.store(flr);
        _inv_lr_frac.store(finv);
        if (fright[3] >= in_nc)
            break;
        for (int k = 0; k < 4; ++k) {
            cols.left.push_back(3 * fleft[k]);
            cols.right.push_back(3 * fright[k]);
            cols.lr_frac.push_back(flr[k]);
            cols.inv_lr_frac.push_back(finv[k]);
            if (fright[k] < in_nc - 1)
                cols.gather_end = c + k + 1;
        }
    }
    cols.simd_end = std::min(c, out_nc);
    cols.gather_end = std::min(cols.gather_end, cols.simd_end);
}

template <typename image_type1, typename image_type2>
void resize_rows_avx2(const image_type1& in_img_, image_type2& out_img_, long r0, long r1,
                      const resize_columns& cols) noexcept {
    using namespace dlib;
    const_image_view<image_type1> in_img(in_img_);
    image_view<image_type2> out_img(out_img_);
    const unsigned char* in_data = static_cast<const unsigned char*>(image_data(in_img_));
    unsigned char* out_data = static_cast<unsigned char*>(image_data(out_img_));
    const long in_step = width_step(in_img_);
    const long out_step = width_step(out_img_);
    const double x_scale = (in_img.nc()-1)/(double)std::max<long>((out_img.nc()-1),1);
    const double y_scale = (in_img.nr()-1)/(double)std::max<long>((out_img.nr()-1),1);
    double y = -y_scale;
    for (long r = 0; r < r0; ++r)
        y += y_scale;
    const __m256i low_byte = _mm256_set1_epi32(0xff);
    for (long r = r0; r < r1 && r < out_img.nr(); ++r)
    {
        y += y_scale;
        const long top    = static_cast<long>(std::floor(y));
        const long bottom = std::min(top+1, in_img.nr()-1);
        const double tb_frac = y - top;
        // dlib's simd4f _tb_frac = tb_frac and _inv_tb_frac = 1-tb_frac: doubles made floats.
        const float tb = static_cast<float>(tb_frac);
        const float inv_tb = static_cast<float>(1-tb_frac);
        const unsigned char* top_row = in_data + top * in_step;
        const unsigned char* bottom_row = in_data + bottom * in_step;
        unsigned char* out_row = out_data + r * out_step;

        const __m256 _tb = _mm256_set1_ps(tb);
        const __m256 _inv_tb = _mm256_set1_ps(inv_tb);
        long c = 0;
        for (; c + 8 <= cols.gather_end; c += 8)
        {
            const __m256i left = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(&cols.left[c]));
            const __m256i right = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(&cols.right[c]));
            const __m256 lr = _mm256_loadu_ps(&cols.lr_frac[c]);
            const __m256 inv_lr = _mm256_loadu_ps(&cols.inv_lr_frac[c]);
            const __m256 tlf = _mm256_mul_ps(_inv_tb, inv_lr);
            const __m256 trf = _mm256_mul_ps(_inv_tb, lr);
            const __m256 blf = _mm256_mul_ps(_tb, inv_lr);
            const __m256 brf = _mm256_mul_ps(_tb, lr);
            const __m256i tl = _mm256_i32gather_epi32(reinterpret_cast<const int*>(top_row), left, 1);
            const __m256i tr = _mm256_i32gather_epi32(reinterpret_cast<const int*>(top_row), right, 1);
            const __m256i bl = _mm256_i32gather_epi32(reinterpret_cast<const int*>(bottom_row), left, 1);
            const __m256i br = _mm256_i32gather_epi32(reinterpret_cast<const int*>(bottom_row), right, 1);
            alignas(32) int32_t out[3][8];
            for (int ch = 0; ch < 3; ++ch) {
                const __m256i shift = _mm256_set1_epi32(8 * ch);
                const auto channel = [&](__m256i v) {
                    return _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(v, shift), low_byte));
                };
                // tlf*tl + trf*tr + blf*bl + brf*br, left to right as C++ evaluates dlib's.
                __m256 sum = _mm256_add_ps(_mm256_mul_ps(tlf, channel(tl)), _mm256_mul_ps(trf, channel(tr)));
                sum = _mm256_add_ps(sum, _mm256_mul_ps(blf, channel(bl)));
                sum = _mm256_add_ps(sum, _mm256_mul_ps(brf, channel(br)));
                _mm256_store_si256(reinterpret_cast<__m256i*>(out[ch]), _mm256_cvttps_epi32(sum));
            }
            for (int k = 0; k < 8; ++k) {
                unsigned char* px = out_row + 3 * (c + k);
                px[0] = static_cast<unsigned char>(out[0][k]);
                px[1] = static_cast<unsigned char>(out[1][k]);
                px[2] = static_cast<unsigned char>(out[2][k]);
            }
        }
        for (; c < cols.simd_end; ++c)
        {
            const float lr = cols.lr_frac[c];
            const float inv_lr = cols.inv_lr_frac[c];
            const float tlf = inv_tb*inv_lr;
            const float trf = inv_tb*lr;
            const float blf = tb*inv_lr;
            const float brf = tb*lr;
            const unsigned char* tl = top_row + cols.left[c];
            const unsigned char* tr = top_row + cols.right[c];
            const unsigned char* bl = bottom_row + cols.left[c];
            const unsigned char* br = bottom_row + cols.right[c];
            unsigned char* px = out_row + 3 * c;
            for (int ch = 0; ch < 3; ++ch) {
                const float sum = tlf*static_cast<float>(tl[ch]) + trf*static_cast<float>(tr[ch]) +
                                  blf*static_cast<float>(bl[ch]) + brf*static_cast<float>(br[ch]);
                px[ch] = static_cast<unsigned char>(static_cast<int32_t>(sum));
            }
        }
        resize_row_tail(in_img, out_img, r, top, bottom, tb_frac, c, x_scale);
    }
}
#endif

// Rows [r0, r1) of dlib's resize_image(in, out, interpolate_bilinear) of RGB images: the AVX2
// path where the build has it, else dlib's code.
template <typename image_type1, typename image_type2>
void resize_rows(const image_type1& in_img, image_type2& out_img, long r0, long r1) noexcept {
#if defined(__AVX2__)
    static_assert(sizeof(typename dlib::image_traits<image_type1>::pixel_type) == 3 &&
                      sizeof(typename dlib::image_traits<image_type2>::pixel_type) == 3,
                  "packed RGB pixels");
    if (dlib::num_columns(out_img) > 0 && dlib::num_rows(out_img) > 0 &&
        dlib::num_columns(in_img) > 0 && dlib::num_rows(in_img) > 0) {
        try {
            resize_columns cols;
            const double x_scale = (dlib::num_columns(in_img)-1)/(double)std::max<long>((dlib::num_columns(out_img)-1),1);
            columns_of(dlib::num_columns(in_img), dlib::num_columns(out_img), x_scale, cols);
            resize_rows_avx2(in_img, out_img, r0, r1, cols);
            return;
        } catch (...) {
            // Out of memory for the column tables: dlib's loop needs none.
        }
    }
#endif
    resize_rows_dlib(in_img, out_img, r0, r1);
}

#if defined(__AVX2__)
// ---- fHOG with the pixels loaded 8 at a time ----
//
// dlib's fHOG extraction (impl_fhog::impl_extract_fhog_features) spends much of its time in
// get_gradient, which builds each of its 12 vectors (4 neighbours x 3 channels of 8 pixels)
// from 8 separate byte loads. rgb_view is the same pixels as a generic image type of this file's
// own: dlib's extraction, instantiated for it, finds the get_gradient below by argument-
// dependent lookup (a non-template, preferred over dlib's template) and is otherwise dlib's own
// code. That get_gradient loads each neighbour with one gather of 8 dwords (3 channels each) and
// then does dlib's integer arithmetic, so the gradients are exactly dlib's. dlib's own
// detector, instantiated for dlib's image types, is untouched (the tests compare against it).
struct rgb_view {
    const dlib::rgb_pixel* pixels;
    long nr;
    long nc;
};

template <typename image_type>
rgb_view view_of(const image_type& img) {
    return rgb_view{static_cast<const dlib::rgb_pixel*>(dlib::image_data(img)), dlib::num_rows(img),
                    dlib::num_columns(img)};
}

inline long num_rows(const rgb_view& v) { return v.nr; }
inline long num_columns(const rgb_view& v) { return v.nc; }
inline const void* image_data(const rgb_view& v) { return v.pixels; }
inline long width_step(const rgb_view& v) { return v.nc * static_cast<long>(sizeof(dlib::rgb_pixel)); }

}  // namespace face_hog

namespace dlib {
template <>
struct image_traits<face_hog::rgb_view> {
    typedef rgb_pixel pixel_type;
};
}  // namespace dlib

namespace face_hog {

// dlib's get_gradient(r, c, img, simd8f& grad_x, simd8f& grad_y, simd8f& len) for RGB images
// (fhog.h): the gradient of pixels c..c+7 of row r, of the channel with the largest one.
// dlib calls it for c + 8 <= visible_nc <= nc - 1 and 1 <= r <= nr - 2, so the right
// neighbours' dwords end inside row r (row r + 1 follows) and the others' before their pixel
// c + 8: every byte read is in the image.
inline void get_gradient(const int r, const int c, const dlib::const_image_view<rgb_view>& img,
                         dlib::simd8f& grad_x, dlib::simd8f& grad_y, dlib::simd8f& len) {
    using namespace dlib;
    const __m256i offsets = _mm256_setr_epi32(0, 3, 6, 9, 12, 15, 18, 21);
    const int* row = reinterpret_cast<const int*>(&img[r][c - 1]);
    const __m256i left = _mm256_i32gather_epi32(row, offsets, 1);
    const __m256i right = _mm256_i32gather_epi32(reinterpret_cast<const int*>(&img[r][c + 1]), offsets, 1);
    const __m256i top = _mm256_i32gather_epi32(reinterpret_cast<const int*>(&img[r - 1][c]), offsets, 1);
    const __m256i bottom = _mm256_i32gather_epi32(reinterpret_cast<const int*>(&img[r + 1][c]), offsets, 1);
    const __m256i low_byte = _mm256_set1_epi32(0xff);
    const auto channel = [&](__m256i v, int ch) {
        return simd8i(_mm256_and_si256(_mm256_srli_epi32(v, 8 * ch), low_byte));
    };
    // The pixel struct is red, green, blue in memory.
    static_assert(offsetof(rgb_pixel, red) == 0 && offsetof(rgb_pixel, green) == 1 &&
                      offsetof(rgb_pixel, blue) == 2 && sizeof(rgb_pixel) == 3,
                  "packed red, green, blue");
    const simd8i rleft = channel(left, 0), gleft = channel(left, 1), bleft = channel(left, 2);
    const simd8i rright = channel(right, 0), gright = channel(right, 1), bright = channel(right, 2);
    const simd8i rtop = channel(top, 0), gtop = channel(top, 1), btop = channel(top, 2);
    const simd8i rbottom = channel(bottom, 0), gbottom = channel(bottom, 1), bbottom = channel(bottom, 2);

    // From here on dlib's code.
    simd8i grad_x_red = rright - rleft;
    simd8i grad_y_red = rbottom - rtop;
    simd8i grad_x_green = gright - gleft;
    simd8i grad_y_green = gbottom - gtop;
    simd8i grad_x_blue = bright - bleft;
    simd8i grad_y_blue = bbottom - btop;

    simd8i rlen = grad_x_red*grad_x_red + grad_y_red*grad_y_red;
    simd8i glen = grad_x_green*grad_x_green + grad_y_green*grad_y_green;
    simd8i blen = grad_x_blue*grad_x_blue + grad_y_blue*grad_y_blue;

    simd8i cmp = rlen > glen;
    simd8i tgrad_x = select(cmp, grad_x_red, grad_x_green);
    simd8i tgrad_y = select(cmp, grad_y_red, grad_y_green);
    simd8i tlen = select(cmp, rlen, glen);

    cmp = tlen > blen;
    grad_x = select(cmp, tgrad_x, grad_x_blue);
    grad_y = select(cmp, tgrad_y, grad_y_blue);
    len = select(cmp, tlen, blen);
}

// The fHOG planes of `img`: dlib's extraction, its pixels read through rgb_view.
template <typename image_type>
void extract_features(const feature_extractor_type& fe, const image_type& img, fhog_image& out,
                      int cell_size, long rows_padding, long cols_padding) {
    fe(view_of(img), out, cell_size, rows_padding, cols_padding);
}
#else
template <typename image_type>
void extract_features(const feature_extractor_type& fe, const image_type& img, fhog_image& out,
                      int cell_size, long rows_padding, long cols_padding) {
    fe(img, out, cell_size, rows_padding, cols_padding);
}
#endif

// create_fhog_pyramid: fe(img, feats[l], cell_size, filter_rows_padding, filter_cols_padding),
// which scan_fhog_pyramid::load passes as (fhog window height, fhog window width).
template <typename image_type>
fhog_image* features(const model& m, const image_type& img) noexcept {
    try {
        std::unique_ptr<fhog_image> out(new fhog_image);
        extract_features(m.fe, img, *out, m.cell_size, m.fhog_height, m.fhog_width);
        return out.release();
    } catch (...) {
        return nullptr;
    }
}

// detect_from_fhog_pyramid's loop body for level l, with filterbank `filter`, as
// scan_fhog_pyramid::detect calls it; its own saliency image and scratch.
inline det_list* scan(const model& m, const fhog_image& feats, unsigned long filter,
                      unsigned long l) noexcept {
    try {
        std::unique_ptr<det_list> dets(new det_list);
        const filterbank& w = m.filterbanks[filter];
        // object_detector passes thresh + adjust_threshold, and adjust_threshold is 0.
        const double thresh = m.thresholds[filter] + 0.0;
        const unsigned long det_box_height = m.fhog_height - 2 * m.padding;
        const unsigned long det_box_width = m.fhog_width - 2 * m.padding;
        const int cell_size = m.cell_size;
        const int filter_rows_padding = m.fhog_height;
        const int filter_cols_padding = m.fhog_width;
        const feature_extractor_type& fe = m.fe;
        dlib::array2d<float> saliency_image;
        pyramid_type pyr;

        const dlib::rectangle area = dlib::impl::apply_filters_to_fhog(w, feats, saliency_image);
        for (long r = area.top(); r <= area.bottom(); ++r) {
            for (long c = area.left(); c <= area.right(); ++c) {
                if (saliency_image[r][c] >= thresh) {
                    dlib::rectangle rect = fe.feats_to_image(
                        dlib::centered_rect(dlib::point(c, r), det_box_width, det_box_height),
                        cell_size, filter_rows_padding, filter_cols_padding);
                    rect = pyr.rect_up(rect, l);
                    dets->push_back(std::make_pair(saliency_image[r][c], rect));
                }
            }
        }
        return dets.release();
    } catch (...) {
        return nullptr;
    }
}

// The rest of object_detector::operator(), then the Python binding's rect_down. `lists` holds
// what scan() made, filter-major: lists[filter * levels + level].
inline bool merge(const model& m, const det_list* const* lists, size_t levels, uint32_t upsample,
                  std::vector<dlib::rectangle>& out) noexcept {
    try {
        std::vector<dlib::rect_detection> dets_accum;
        det_list dets;
        for (unsigned long i = 0; i < m.filterbanks.size(); ++i) {
            const double thresh = m.thresholds[i];
            // detect_from_fhog_pyramid: the levels in order, then its sort.
            dets.clear();
            for (size_t l = 0; l < levels; ++l) {
                const det_list& part = *lists[i * levels + l];
                dets.insert(dets.end(), part.begin(), part.end());
            }
            std::sort(dets.rbegin(), dets.rend(), dlib::impl::compare_pair_rect);
            for (unsigned long j = 0; j < dets.size(); ++j) {
                dlib::rect_detection temp;
                temp.detection_confidence = dets[j].first - thresh;
                temp.weight_index = i;
                temp.rect = dets[j].second;
                dets_accum.push_back(temp);
            }
        }
        // Non-maximum suppression: object_detector's own overlaps_any_box, which compares
        // with every kept box whatever its filter.
        std::vector<dlib::rect_detection> final_dets;
        if (m.filterbanks.size() > 1)
            std::sort(dets_accum.rbegin(), dets_accum.rend());
        for (unsigned long i = 0; i < dets_accum.size(); ++i) {
            bool overlaps = false;
            for (unsigned long k = 0; k < final_dets.size() && !overlaps; ++k)
                overlaps = m.overlap(final_dets[k].rect, dets_accum[i].rect);
            if (overlaps)
                continue;
            final_dets.push_back(dets_accum[i]);
        }
        // The Python binding maps the boxes of an upsampled image back with rect_down.
        dlib::pyramid_down<2> pyr;
        out.clear();
        for (const auto& d : final_dets) {
            dlib::rectangle r = d.rect;
            if (upsample != 0)
                r = pyr.rect_down(r, upsample);
            out.push_back(r);
        }
        return true;
    } catch (...) {
        return false;
    }
}

// The reference for the tests: dlib's own detector, single-threaded, called as this project
// called it before the parallel scan (and as the Python binding does).
inline bool reference_detect(detector_type& detector, const base_image& image, uint32_t upsample,
                             std::vector<dlib::rectangle>& out) noexcept {
    try {
        if (upsample == 0) {
            out = detector(image);
            return true;
        }
        dlib::pyramid_down<2> pyr;
        base_image temp;
        dlib::pyramid_up(image, temp, pyr);
        for (uint32_t i = 1; i < upsample; ++i)
            dlib::pyramid_up(temp);
        out = detector(temp);
        for (auto& r : out)
            r = pyr.rect_down(r, upsample);
        return true;
    } catch (...) {
        return false;
    }
}

// ---- Checks for hog.rs's unit tests: "" when all is as assumed, else what differs. ----

// `a` and `b` are the same image, byte for byte.
template <typename image_type>
void compare_images(const char* what, const image_type& a, const image_type& b,
                    std::ostringstream& err) {
    if (dlib::num_rows(a) != dlib::num_rows(b) || dlib::num_columns(a) != dlib::num_columns(b)) {
        err << what << ": " << dlib::num_columns(a) << "x" << dlib::num_rows(a) << " vs "
            << dlib::num_columns(b) << "x" << dlib::num_rows(b) << "; ";
        return;
    }
    const dlib::const_image_view<image_type> va(a), vb(b);
    for (long r = 0; r < va.nr(); ++r)
        for (long c = 0; c < va.nc(); ++c)
            if (va[r][c] != vb[r][c]) {
                err << what << ": pixel (" << c << "," << r << ") differs; ";
                return;
            }
}

// `up` is dlib's pyramid_up of `image`, `level1` its pyramid_down<6> and `level2` that of
// `level1`, byte for byte.
inline std::string compare_resizes(const base_image& image, const base_image& up,
                                   const level_image& level1, const level_image& level2) {
    std::ostringstream err;
    base_image dlib_up;
    dlib::pyramid_down<2> pyr2;
    dlib::pyramid_up(image, dlib_up, pyr2);
    compare_images("pyramid_up", dlib_up, up, err);
    pyramid_type pyr6;
    level_image dlib_level1, dlib_level2;
    pyr6(image, dlib_level1);
    compare_images("pyramid_down<6> of the matrix", dlib_level1, level1, err);
    pyr6(level1, dlib_level2);
    compare_images("pyramid_down<6> of a level", dlib_level2, level2, err);
    return err.str();
}

// The private scanner configuration (compute_fhog_window_size) and the copied filterbanks.
inline std::string check_configuration(const model& m) {
    const detector_type detector = dlib::get_frontal_face_detector();
    const scanner_type& s = detector.get_scanner();
    std::ostringstream err;
    const dlib::rectangle rect = dlib::centered_rect(
        dlib::point(0, 0), s.get_detection_window_width(), s.get_detection_window_height());
    const dlib::rectangle temp = dlib::grow_rect(
        s.get_feature_extractor().image_to_feats(rect, s.get_cell_size(), 1, 1), s.get_padding());
    if (temp.width() != m.fhog_width || temp.height() != m.fhog_height)
        err << "fhog window " << temp.width() << "x" << temp.height() << " != " << m.fhog_width
            << "x" << m.fhog_height << "; ";
    const long planes = s.get_feature_extractor().get_num_planes();
    if ((long)(m.fhog_width * m.fhog_height) * planes != s.get_num_dimensions())
        err << "dimensions " << s.get_num_dimensions() << "; ";
    if (m.filterbanks.size() != detector.num_detectors())
        err << "filters " << m.filterbanks.size() << " of " << detector.num_detectors() << "; ";
    for (unsigned long i = 0; i < detector.num_detectors() && i < m.filterbanks.size(); ++i) {
        // Rebuilt from the weights, as the task describes them: the same as the copied ones.
        const filterbank fb = s.build_fhog_filterbank(detector.get_w(i));
        const filterbank& ours = m.filterbanks[i];
        bool same = fb.filters.size() == ours.filters.size() &&
                    fb.row_filters.size() == ours.row_filters.size();
        for (size_t k = 0; same && k < fb.filters.size(); ++k) {
            same = fb.filters[k] == ours.filters[k] &&
                   fb.row_filters[k].size() == ours.row_filters[k].size();
            for (size_t j = 0; same && j < fb.row_filters[k].size(); ++j)
                same = fb.row_filters[k][j] == ours.row_filters[k][j] &&
                       fb.col_filters[k][j] == ours.col_filters[k][j];
        }
        if (!same)
            err << "filterbank " << i << " differs; ";
    }
    return err.str();
}

// The feature pyramid scanner.load(image) builds (private: read back from the scanner's
// serialization, which holds it) against `ours`, plane by plane, value by value.
inline std::string compare_pyramids(const model& m, const base_image& image,
                                    const std::vector<const fhog_image*>& ours) {
    const detector_type detector = dlib::get_frontal_face_detector();
    scanner_type scanner;
    scanner.copy_configuration(detector.get_scanner());
    scanner.load(image);
    std::stringstream ss;
    dlib::serialize(scanner, ss);
    int version = 0;
    dlib::deserialize(version, ss);
    feature_extractor_type fe;
    dlib::deserialize(fe, ss);
    dlib::array<fhog_image> feats;
    dlib::deserialize(feats, ss);
    std::ostringstream err;
    if (version != 1)
        err << "scanner serialization version " << version << "; ";
    if (feats.size() != ours.size() || level_count(m, image.nc(), image.nr()) != ours.size())
        err << "levels: dlib " << feats.size() << ", here " << ours.size() << "; ";
    for (size_t l = 0; l < feats.size() && l < ours.size(); ++l) {
        const fhog_image& a = feats[l];
        const fhog_image& b = *ours[l];
        if (a.size() != b.size()) {
            err << "level " << l << ": " << a.size() << " planes vs " << b.size() << "; ";
            continue;
        }
        for (size_t p = 0; p < a.size(); ++p) {
            if (a[p].nr() != b[p].nr() || a[p].nc() != b[p].nc()) {
                err << "level " << l << " plane " << p << ": " << a[p].nc() << "x" << a[p].nr()
                    << " vs " << b[p].nc() << "x" << b[p].nr() << "; ";
                continue;
            }
            bool same = true;
            for (long r = 0; r < a[p].nr() && same; ++r)
                for (long c = 0; c < a[p].nc() && same; ++c)
                    same = a[p][r][c] == b[p][r][c];
            if (!same)
                err << "level " << l << " plane " << p << " differs; ";
        }
    }
    return err.str();
}

}  // namespace face_hog

#endif
