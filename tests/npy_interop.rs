//! `.npy` files move both ways between numpy and this service.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use face_attendance::gallery::{npy, Gallery, StudentId};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/npy")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn expected(rows: usize) -> Vec<[f64; 128]> {
    (0..rows)
        .map(|r| std::array::from_fn(|c| (r * 128 + c) as f64 / 1000.0 - 0.5))
        .collect()
}

#[test]
fn files_written_by_numpy_load() {
    assert_eq!(
        npy::read_encodings(&fixture("f64_3x128.npy")).unwrap(),
        expected(3)
    );
    assert_eq!(
        npy::read_encodings(&fixture("f64_fortran_3x128.npy")).unwrap(),
        expected(3)
    );
    assert_eq!(
        npy::read_encodings(&fixture("f64_big_endian_3x128.npy")).unwrap(),
        expected(3)
    );
    assert_eq!(
        npy::read_encodings(&fixture("f64_single_128.npy")).unwrap(),
        expected(1)
    );
    let f32_rows = npy::read_encodings(&fixture("f32_2x128.npy")).unwrap();
    for (got, want) in f32_rows.iter().zip(expected(2)) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6);
        }
    }
    assert!(npy::read_encodings(&fixture("int_3x128.npy"))
        .unwrap_err()
        .contains("dtype"));
    assert!(npy::read_encodings(&fixture("f64_3x64.npy"))
        .unwrap_err()
        .contains("shape"));
}

#[test]
fn appending_to_a_numpy_file_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let emb = dir.path().join("embeddings");
    std::fs::create_dir_all(&emb).unwrap();
    std::fs::write(emb.join("alip.npy"), fixture("f64_3x128.npy")).unwrap();
    let (gallery, report) = Gallery::open(dir.path()).unwrap();
    assert_eq!((report.files, report.encodings), (1, 3));
    let extra = [0.25f64; 128];
    assert_eq!(
        gallery
            .append(&StudentId::parse("alip").unwrap(), &[extra], "test")
            .unwrap(),
        4
    );
    let rows = npy::read_encodings(&std::fs::read(emb.join("alip.npy")).unwrap()).unwrap();
    let mut want = expected(3);
    want.push(extra);
    assert_eq!(rows, want);
}

/// A Python with numpy: Debian's /usr/bin/python3 (python3-numpy, installed by
/// scripts/install-test-deps) or whatever `python3` is on PATH.
fn python_with_numpy() -> Option<PathBuf> {
    ["/usr/bin/python3", "python3"]
        .into_iter()
        .map(PathBuf::from)
        .find(|py| {
            Command::new(py)
                .args(["-c", "import numpy"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

#[test]
fn files_we_write_load_in_numpy() {
    let Some(python) = python_with_numpy() else {
        common::skip_unless_required("no python3 with numpy here (Debian package python3-numpy)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (gallery, _) = Gallery::open(dir.path()).unwrap();
    let rows = expected(3);
    let id = StudentId::parse("yoga").unwrap();
    gallery.append(&id, &rows[..2], "test").unwrap();
    gallery.append(&id, &rows[2..], "test").unwrap();
    let path = dir.path().join("embeddings/yoga.npy");
    let script = "import sys, numpy as np\n\
        a = np.load(sys.argv[1])\n\
        assert a.dtype == np.float64 and a.shape == (3, 128), (a.dtype, a.shape)\n\
        want = (np.arange(3 * 128).reshape(3, 128)) / 1000.0 - 0.5\n\
        assert np.array_equal(a, want)\n\
        print('ok', a.shape)";
    let out = Command::new(python)
        .args(["-c", script])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "numpy could not read our file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
