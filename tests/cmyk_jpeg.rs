//! CMYK and YCCK JPEGs decode to the RGB bytes Pillow gives (`Image.open(f).convert("RGB")`,
//! the original service's decoder), and a photo stored as CMYK is still recognized.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use face_attendance::image_io::{self, RgbImage};
use face_attendance::recognizer::{EnrollRequest, MatchOptions, Photo};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jpeg")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn cmyk_and_ycck_fixtures_decode_to_pillows_bytes() {
    // Made by tests/fixtures/jpeg/make_fixtures.py: cmyk.jpg written by Pillow (Adobe,
    // inverted), cmyk_420.jpg too with C subsampled alone (TurboJPEG 2.x cannot name that
    // layout), ycck.jpg by libjpeg-turbo from CMYK pixels; *.rgb is what Pillow 9.4 reads.
    for name in ["cmyk", "cmyk_420", "ycck"] {
        let jpeg = fixture(&format!("{name}.jpg"));
        let want = fixture(&format!("{name}.rgb"));
        let got = image_io::decode(&jpeg, image_io::DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!((got.width, got.height), (61, 47), "{name}");
        assert!(got.pixels == want, "{name}: RGB bytes differ from Pillow's");
        // The downscaled path takes CMYK too.
        let probe = image_io::probe(&jpeg, image_io::DEFAULT_MAX_PIXELS).unwrap();
        let small = image_io::decode_downscaled(&jpeg, &probe, 500).unwrap();
        assert!(
            small.width * small.height <= 500 && small.width > 10,
            "{name}"
        );
    }
}

/// A Python with Pillow: Debian's /usr/bin/python3 (python3-pil, installed by
/// scripts/install-test-deps) or whatever `python3` is on PATH.
fn python_with_pillow() -> Option<PathBuf> {
    ["/usr/bin/python3", "python3"]
        .into_iter()
        .map(PathBuf::from)
        .find(|py| {
            Command::new(py)
                .args(["-c", "import PIL.Image"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Runs a Python snippet with Pillow; panics with its error output when it fails.
fn pillow(python: &Path, script: &str, args: &[&Path]) {
    let out = Command::new(python)
        .args(["-c", script])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "Pillow failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What Pillow decodes each JPEG to (`convert("RGB")`), written beside it as `<file>.rgb`.
const PILLOW_DECODE: &str = r"
import sys
from PIL import Image
for p in sys.argv[1:]:
    im = Image.open(p)
    assert im.mode == 'CMYK', im.mode
    open(p + '.rgb', 'wb').write(im.convert('RGB').tobytes())
";

/// Pillow writes raw CMYK bytes (argv: raw file, width, height, output, subsampling) as a JPEG.
const PILLOW_ENCODE_CMYK: &str = r"
import sys
from PIL import Image
raw, w, h, out, sub = sys.argv[1:6]
im = Image.frombytes('CMYK', (int(w), int(h)), open(raw, 'rb').read())
im.save(out, quality=85, subsampling=int(sub))
";

/// Pseudo-random CMYK samples with some structure (the encoder smooths pure noise away).
fn cmyk_samples(w: usize, h: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u8
    };
    let mut out = Vec::with_capacity(w * h * 4);
    for y in 0..h {
        for x in 0..w {
            let noise = next();
            out.extend_from_slice(&[
                (x * 255 / w) as u8 ^ (noise & 0x1F),
                (y * 255 / h) as u8,
                noise,
                if (x / 8 + y / 8) % 3 == 0 {
                    255
                } else {
                    (x * y) as u8
                },
            ]);
        }
    }
    out
}

fn ycck_jpeg(cmyk: &[u8], w: usize, h: usize, subsamp: turbojpeg::Subsamp) -> Vec<u8> {
    turbojpeg::compress(
        turbojpeg::Image {
            pixels: cmyk,
            width: w,
            pitch: w * 4,
            height: h,
            format: turbojpeg::PixelFormat::CMYK,
        },
        88,
        subsamp,
    )
    .unwrap()
    .to_vec()
}

#[test]
fn cmyk_and_ycck_jpegs_decode_exactly_as_pillow_decodes_them() {
    let Some(python) = python_with_pillow() else {
        common::skip_unless_required("no python3 with Pillow here (Debian package python3-pil)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = Vec::new();
    for (i, (w, h)) in [(64, 48), (37, 91), (203, 17)].into_iter().enumerate() {
        let cmyk = cmyk_samples(w, h, i as u64 + 1);
        // YCCK (libjpeg-turbo makes YCCK from CMYK pixels), with each chroma subsampling.
        for (j, sub) in [
            turbojpeg::Subsamp::None,
            turbojpeg::Subsamp::Sub2x2,
            turbojpeg::Subsamp::Sub2x1,
        ]
        .into_iter()
        .enumerate()
        {
            let path = dir.path().join(format!("ycck_{i}_{j}.jpg"));
            std::fs::write(&path, ycck_jpeg(&cmyk, w, h, sub)).unwrap();
            files.push(path);
        }
        // Plain CMYK (Adobe transform 0) as Pillow writes it, 4:4:4 and 4:2:0.
        let raw = dir.path().join(format!("cmyk_{i}.raw"));
        std::fs::write(&raw, &cmyk).unwrap();
        for sub in [0, 2] {
            let path = dir.path().join(format!("cmyk_{i}_{sub}.jpg"));
            let (ws, hs, ss) = (w.to_string(), h.to_string(), sub.to_string());
            pillow(
                &python,
                PILLOW_ENCODE_CMYK,
                &[&raw, Path::new(&ws), Path::new(&hs), &path, Path::new(&ss)],
            );
            files.push(path);
        }
    }
    let args: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    pillow(&python, PILLOW_DECODE, &args);
    for path in &files {
        let ours = image_io::decode(&std::fs::read(path).unwrap(), u64::MAX).unwrap();
        let theirs = std::fs::read(path.with_extension("jpg.rgb")).unwrap();
        let differing = ours
            .pixels
            .iter()
            .zip(&theirs)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(ours.pixels.len(), theirs.len(), "{}", path.display());
        assert_eq!(
            differing,
            0,
            "{}: {differing} bytes differ from Pillow's",
            path.display()
        );
    }
}

/// `rgb` as the CMYK a prepress tool would store: black generated from the darkest channel
/// (full under-colour removal), inks rescaled, saved inverted (the Adobe convention Pillow
/// reads with rawmode `CMYK;I`), so that decoding gives the RGB back up to rounding.
fn to_adobe_cmyk(rgb: &RgbImage) -> Vec<u8> {
    let mut out = Vec::with_capacity(rgb.width * rgb.height * 4);
    for p in rgb.pixels.chunks_exact(3) {
        let k = 255 - *p.iter().max().unwrap_or(&0) as u32;
        let nk = 255 - k;
        let ink = |v: u8| {
            ((nk - v as u32) * 255 + nk / 2)
                .checked_div(nk)
                .map_or(0, |i| i.min(255))
        };
        out.extend_from_slice(&[
            (255 - ink(p[0])) as u8,
            (255 - ink(p[1])) as u8,
            (255 - ink(p[2])) as u8,
            (255 - k) as u8,
        ]);
    }
    out
}

fn read_photo(rel: &str) -> Vec<u8> {
    std::fs::read(common::faces_dir().join(rel)).unwrap()
}

#[test]
fn a_photo_stored_as_cmyk_is_still_recognized() {
    let dir = tempfile::tempdir().unwrap();
    let r = common::recognizer_in(dir.path());
    for (id, rel) in [
        ("obama", "known/obama/obama_1.jpg"),
        ("obama", "known/obama/obama_2.jpg"),
        ("biden", "known/biden/biden_1.jpg"),
        ("alex", "known/alex_lacamoire/alex_lacamoire_1.jpg"),
    ] {
        assert_eq!(
            r.enroll(
                id,
                Photo::Bytes(&read_photo(rel)),
                &EnrollRequest::default()
            )
            .unwrap()
            .saved,
            1
        );
    }
    let jpeg = read_photo("probe/obama/obama_4.jpg");
    let rgb = image_io::decode(&jpeg, u64::MAX).unwrap();
    let want = r
        .recognize(Photo::Bytes(&jpeg), MatchOptions::default())
        .map(|r| r.faces)
        .unwrap();
    assert_eq!(want.len(), 1);
    assert_eq!(want[0].label, "obama");

    let cmyk = to_adobe_cmyk(&rgb);
    let ycck = ycck_jpeg(&cmyk, rgb.width, rgb.height, turbojpeg::Subsamp::Sub2x2);
    let got = r
        .recognize(Photo::Bytes(&ycck), MatchOptions::default())
        .map(|r| r.faces)
        .unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].label, "obama", "{got:?}");
    let (a, b) = (got[0].distance.unwrap(), want[0].distance.unwrap());
    eprintln!("CMYK photo: distance {a:.3} (the RGB photo: {b:.3})");
    assert!((a - b).abs() < 0.05, "{a} vs {b}");

    // Pillow's own CMYK JPEG of the photo (its RGB -> CMYK), when Pillow is here.
    let Some(python) = python_with_pillow() else {
        common::skip_unless_required("no python3 with Pillow here (Debian package python3-pil)");
        return;
    };
    let photo = dir.path().join("photo.jpg");
    let out = dir.path().join("photo_cmyk.jpg");
    std::fs::write(&photo, &jpeg).unwrap();
    pillow(
        &python,
        "import sys\nfrom PIL import Image\n\
         Image.open(sys.argv[1]).convert('CMYK').save(sys.argv[2], quality=92)\n",
        &[&photo, &out],
    );
    let got = r
        .recognize(
            Photo::Bytes(&std::fs::read(&out).unwrap()),
            MatchOptions::default(),
        )
        .map(|r| r.faces)
        .unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].label, "obama", "{got:?}");
}
