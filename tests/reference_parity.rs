//! The same boxes and encodings as Python's face_recognition on every reference photo.

mod common;

use face_attendance::engine::{distance, Encoding};
use face_attendance::image_io;
use face_attendance::pipeline;
use serde_json::Value;

fn check_upsample(upsample: u32) {
    let faces = common::faces_dir();
    let text = std::fs::read_to_string(faces.join("reference/face_recognition.json"))
        .expect("reference encodings");
    let reference: Value = serde_json::from_str(&text).expect("reference json");
    let engine = common::engine_with(upsample);
    let key = format!("upsample{upsample}");
    let mut worst = 0.0f64;
    let mut checked = 0;
    for entry in reference["images"].as_array().expect("images") {
        let file = entry["file"].as_str().expect("file");
        let bytes = std::fs::read(faces.join(file)).expect("photo");
        let image = image_io::decode(&bytes, image_io::DEFAULT_MAX_PIXELS).expect(file);
        assert_eq!(
            image.width as u64,
            entry["width"].as_u64().unwrap(),
            "{file}"
        );
        assert_eq!(
            image.height as u64,
            entry["height"].as_u64().unwrap(),
            "{file}"
        );
        let expected = entry[&key].as_array().expect("faces");
        let mut found = pipeline::analyze(&engine, &image);
        assert_eq!(found.len(), expected.len(), "{file} at {key}: face count");
        for exp in expected {
            let bx: Vec<i64> = exp["box"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            let pos = found
                .iter()
                .position(|f| f.bbox.as_css().as_slice() == bx.as_slice())
                .unwrap_or_else(|| {
                    panic!(
                        "{file} at {key}: no face at box {bx:?}, found {:?}",
                        found.iter().map(|f| f.bbox.as_css()).collect::<Vec<_>>()
                    )
                });
            let face = found.remove(pos);
            let mut enc: Encoding = [0.0; 128];
            for (slot, v) in enc.iter_mut().zip(exp["encoding"].as_array().unwrap()) {
                *slot = v.as_f64().unwrap();
            }
            let d = distance(&face.encoding, &enc);
            assert!(d < 0.01, "{file} at {key}: encoding off by {d}");
            worst = worst.max(d);
            checked += 1;
        }
    }
    eprintln!("{key}: {checked} faces match the reference; largest encoding distance {worst:.2e}");
    assert!(checked > 0);
}

#[test]
fn same_faces_as_face_recognition_without_upsampling() {
    check_upsample(0);
}

#[test]
fn same_faces_as_face_recognition_with_one_upsampling() {
    check_upsample(1);
}
