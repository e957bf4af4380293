//! `DEFAULT_CAMERA_TOLERANCE` is what the open-set benchmark chooses: the real
//! `face-attendance-bench open-set` on the real photos (`../shared/faces`), with the camera's
//! default settings, through the camera's own decisions. Fails when the benchmark would choose
//! another tolerance (the photos, the models, the pipeline or the decision rule changed): run it
//! and set the constant, the settings' help and the figures in docs/src/camera-pipeline.md to
//! what it prints.

mod common;

use std::process::Command;

use face_attendance::camera::DEFAULT_CAMERA_TOLERANCE;
use serde_json::Value;

fn hundredths(t: f64) -> i64 {
    (t * 100.0).round() as i64
}

#[test]
fn the_camera_default_tolerance_is_the_open_set_benchmarks_choice() {
    // Only the models and the photos: every camera setting at its default.
    let out = Command::new(env!("CARGO_BIN_EXE_face-attendance-bench"))
        .args(["open-set", "--json", "--faces"])
        .arg(common::faces_dir())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("FACE_MODELS_DIR", common::models_dir())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let rows = doc["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 31, "0.40 to 0.70 by 0.01: {doc:#}");
    let row = |t: f64| {
        rows.iter()
            .find(|r| hundredths(r["tolerance"].as_f64().unwrap()) == hundredths(t))
            .unwrap_or_else(|| panic!("no row for {t}: {doc:#}"))
    };
    // Every probe is a genuine trial; every stranger, and every photo of each enrolled person
    // left out, an impostor trial, at every tolerance.
    let walks = &doc["walk_bys"];
    let n = |v: &Value| v.as_u64().unwrap();
    for r in rows {
        assert_eq!(r["genuine_trials"], walks["probe"], "{r}");
        assert_eq!(
            n(&r["impostor_trials"]),
            n(&walks["stranger"]) + n(&walks["probe"]) + n(&walks["known"]),
            "{r}"
        );
    }

    let chosen = doc["chosen"]
        .as_f64()
        .unwrap_or_else(|| panic!("no tolerance chosen: {doc:#}"));
    assert_eq!(
        hundredths(chosen),
        hundredths(DEFAULT_CAMERA_TOLERANCE),
        "the open-set benchmark chooses {chosen}, DEFAULT_CAMERA_TOLERANCE is \
         {DEFAULT_CAMERA_TOLERANCE}: {doc:#}"
    );
    // What the choice means, read back from the rows: nobody named wrongly at it, and no
    // tolerance names more probes without naming somebody wrongly.
    let at = row(chosen);
    assert_eq!((n(&at["false_accepts"]), n(&at["wrong"])), (0, 0), "{at}");
    for r in rows {
        let clean = n(&r["false_accepts"]) == 0 && n(&r["wrong"]) == 0;
        let t = hundredths(r["tolerance"].as_f64().unwrap());
        if clean {
            assert!(
                n(&r["genuine_accepts"]) < n(&at["genuine_accepts"])
                    || (n(&r["genuine_accepts"]) == n(&at["genuine_accepts"])
                        && t >= hundredths(chosen)),
                "{r} beats the choice {at}"
            );
        }
    }
    // The camera's default recognizes more than HTTP's 0.45 on these photos or as many.
    assert!(n(&row(0.45)["genuine_accepts"]) <= n(&at["genuine_accepts"]));
}
