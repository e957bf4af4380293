//! Unknown faces kept for review, end to end: the store filled through the library with real
//! encodings of real photos (as the camera would record them: the whole frame, the face's box),
//! then a real server over that data folder: `/unknowns` lists the clusters, serves the crops,
//! enrolls a cluster under a name (then `/recognize` knows them) and forgets another.

mod common;

use std::path::{Path, PathBuf};

use common::http as h;
use face_attendance::bulk_enroll;
use face_attendance::image_io;
use face_attendance::pipeline::{self, Purpose};
use face_attendance::quality::sharpness;
use face_attendance::service::Service;
use face_attendance::settings::{FaceCrops, Settings};
use face_attendance::unknowns::{UnknownSettings, Unknowns, DEFAULT_CLUSTER_DISTANCE};
use serde_json::{json, Value};

const KEY: &str = "unknowns-test-key-0123456789";

fn stranger(name: &str) -> PathBuf {
    common::faces_dir().join("strangers").join(name)
}

/// stuart_1..5, then stuart_1 again: six faces of one person.
fn stuart() -> Vec<PathBuf> {
    let mut photos: Vec<PathBuf> = (1..=5)
        .map(|i| stranger(&format!("stuart_{i}.jpg")))
        .collect();
    photos.push(stranger("stuart_1.jpg"));
    photos
}

/// Two strangers who are neither stuart nor each other.
fn others() -> Vec<PathBuf> {
    vec![
        stranger("lin_manuel_miranda.jpg"),
        stranger("stranger_angry.jpg"),
    ]
}

/// Records the largest face of each photo as the camera would: the photo is the frame.
fn record(store: &Unknowns, photos: &[PathBuf]) -> Vec<u64> {
    let engine = common::engine();
    photos
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).unwrap();
            let image = image_io::decode(&bytes, image_io::DEFAULT_MAX_PIXELS).unwrap();
            let face = pipeline::analyze_image(&engine, &image, Purpose::Enroll { jitters: 1 })
                .faces
                .pop();
            let face = face.unwrap_or_else(|| panic!("no face in {}", path.display()));
            let b = face.bbox;
            let face_px = (b.right - b.left).min(b.bottom - b.top) as u32;
            store
                .record(&image, b, &face.encoding, face_px, sharpness(&image, &b))
                .unwrap()
        })
        .collect()
}

/// The gallery of `data` with every `known/` photo enrolled (as bulk enroll does).
fn enroll_known(data: &Path) {
    let recognizer = common::recognizer_in(data);
    let (people, _) = bulk_enroll::scan(&common::faces_dir().join("known")).unwrap();
    bulk_enroll::enroll_all(&recognizer, &people, Default::default(), &|_| {});
}

fn url(server: &Service, path: &str) -> String {
    format!("http://{}{path}", server.addr())
}

fn clusters(server: &Service) -> Vec<Value> {
    let (status, body) = h::get(&url(server, "/unknowns"));
    assert_eq!(status, 200, "{body}");
    body["clusters"].as_array().unwrap().clone()
}

fn cluster_with(clusters: &[Value], count: u64) -> Value {
    clusters
        .iter()
        .find(|c| c["count"] == count)
        .unwrap_or_else(|| panic!("no cluster of {count}: {clusters:?}"))
        .clone()
}

fn post_json(server: &Service, path: &str, body: Value) -> (u16, Value) {
    h::post(
        &url(server, path),
        "application/json",
        body.to_string().into_bytes(),
    )
}

#[test]
fn unknown_faces_are_clustered_served_enrolled_and_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    enroll_known(data);
    let store = Unknowns::open(data, UnknownSettings::default()).unwrap();
    let stuart_ids = record(&store, &stuart());
    let other_ids = record(&store, &others());
    assert_eq!(store.cluster_count(), 3);
    drop(store);

    let server = h::start(data, h::serve_settings());
    let (_, health) = h::get(&url(&server, "/health"));
    assert_eq!(health["unknown_clusters"], 3, "{health}");
    let (_, config) = h::get(&url(&server, "/config"));
    assert_eq!(config["unknown_max"], 200);
    assert!(config["unknown_cluster_distance"].is_f64());

    let listed = clusters(&server);
    assert_eq!(listed.len(), 3, "{listed:?}");
    let stuart = cluster_with(&listed, 6);
    assert_eq!(stuart["cluster"], stuart_ids[0]);
    assert!(stuart["first_seen"].as_u64() <= stuart["last_seen"].as_u64());
    // Newest last_seen first: the others were recorded after stuart.
    assert_eq!(listed[2]["cluster"], stuart_ids[0]);
    let crops = stuart["crops"].as_array().unwrap();
    assert_eq!(crops.len(), 6);
    for crop in crops {
        let (status, ct, jpeg) = h::get_bytes(&url(&server, crop.as_str().unwrap()));
        assert_eq!((status, ct.as_str()), (200, "image/jpeg"));
        assert!(jpeg.starts_with(&[0xff, 0xd8]));
    }
    // A face asked for under another cluster is not there.
    let other = other_ids[0];
    let (status, _) = h::get(&url(
        &server,
        &format!("/unknowns/{other}/faces/{}.jpg", stuart_ids[1]),
    ));
    assert_eq!(status, 404);

    // Refusals: a bad id, an unknown cluster, a malformed one; nothing changes.
    let cluster = stuart_ids[0];
    let enroll_path = format!("/unknowns/{cluster}/enroll");
    for bad in ["../../etc", ".hidden", "a/b", ""] {
        let (status, body) = post_json(&server, &enroll_path, json!({"student_id": bad}));
        assert_eq!(status, 400, "{bad:?}: {body}");
    }
    let (status, _) = post_json(
        &server,
        "/unknowns/999999/enroll",
        json!({"student_id": "x"}),
    );
    assert_eq!(status, 404);
    let (status, _) = post_json(&server, "/unknowns/abc/enroll", json!({"student_id": "x"}));
    assert_eq!(status, 400);
    assert_eq!(h::delete(&url(&server, "/unknowns/999999")).0, 404);
    assert_eq!(clusters(&server).len(), 3);

    // Stuart enrolled from his cluster's best five crops, then recognized.
    let (status, _) = h::post_image(&url(&server, "/recognize"), &stranger("stuart_3.jpg"), &[]);
    assert_eq!(status, 200);
    let (status, body) = h::post(
        &url(&server, &enroll_path),
        "application/x-www-form-urlencoded",
        b"student_id=stuart".to_vec(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true);
    assert_eq!(body["cluster"], cluster);
    assert_eq!(body["samples"], 5);
    assert!(body["saved"].as_u64().unwrap() >= 3, "{body}");
    assert_eq!(body["msg"]["saved"], body["saved"]);
    assert_eq!(body["forgotten"], 6);
    let (_, person) = h::get(&url(&server, "/people/stuart"));
    assert_eq!(
        person["samples"].as_array().unwrap().len() as u64,
        body["saved"].as_u64().unwrap()
    );
    assert_eq!(person["history"][0]["by"], "anyone");
    let (_, recognized) =
        h::post_image(&url(&server, "/recognize"), &stranger("stuart_3.jpg"), &[]);
    assert_eq!(recognized["results"][0]["label"], "stuart", "{recognized}");
    let left = clusters(&server);
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().all(|c| c["cluster"] != cluster));
    let (status, _) = h::get(&url(&server, crops[0].as_str().unwrap()));
    assert_eq!(status, 404);

    // Forget one of the others: its faces and crops go.
    let (status, body) = h::delete(&url(&server, &format!("/unknowns/{other}")));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"ok": true, "deleted": other, "faces": 1}));
    let left = clusters(&server);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["cluster"], other_ids[1]);
    let (_, health) = h::get(&url(&server, "/health"));
    assert_eq!(health["unknown_clusters"], 1);
    let crops_left = std::fs::read_dir(data.join("unknowns/crops"))
        .unwrap()
        .count();
    assert_eq!(crops_left, 1);
    server.shutdown();
}

#[test]
fn the_unknowns_routes_need_a_key_when_keys_are_set() {
    let dir = tempfile::tempdir().unwrap();
    let store = Unknowns::open(dir.path(), UnknownSettings::default()).unwrap();
    let ids = record(&store, &others()[..1]);
    drop(store);
    let mut serve = h::serve_settings();
    serve.api_key = Some(KEY.into());
    let server = h::start(dir.path(), serve);
    let id = ids[0];
    let paths = [
        ("GET", "/unknowns".to_string()),
        ("GET", format!("/unknowns/{id}/faces/{id}.jpg")),
        ("POST", format!("/unknowns/{id}/enroll")),
        ("DELETE", format!("/unknowns/{id}")),
    ];
    for (method, path) in &paths {
        let response = h::agent()
            .run(
                ureq::http::Request::builder()
                    .method(*method)
                    .uri(url(&server, path))
                    .body(())
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(response.status().as_u16(), 401, "{method} {path}");
    }
    let response = h::agent()
        .get(url(&server, "/unknowns"))
        .header("X-API-Key", KEY)
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // /health stays open; the count is for key holders.
    let (_, health) = h::get(&url(&server, "/health"));
    assert_eq!(health["ok"], true);
    assert!(health.get("unknown_clusters").is_none(), "{health}");
    let mut keyed = h::agent()
        .get(url(&server, "/health"))
        .header("X-API-Key", KEY)
        .call()
        .unwrap();
    let health: serde_json::Value =
        serde_json::from_str(&keyed.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(health["unknown_clusters"], 1);
    server.shutdown();
}

#[test]
fn the_store_is_bounded_by_unknown_max() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut photos = stuart();
    photos.truncate(3);
    photos.extend(others());
    let store = Unknowns::open(
        data,
        UnknownSettings::new(4, true, DEFAULT_CLUSTER_DISTANCE),
    )
    .unwrap();
    let ids = record(&store, &photos);
    // Five recorded, four kept: the oldest went with its crop.
    assert_eq!(store.ids(), ids[1..]);
    assert!(!data.join(format!("unknowns/crops/{}.jpg", ids[0])).exists());
    drop(store);
    // A server started with a smaller UNKNOWN_MAX drops the oldest at once.
    let settings = Settings {
        data_dir: data.to_path_buf(),
        unknown_max: 2,
        ..Settings::default()
    };
    let server = h::start_with(&settings, h::serve_settings());
    let listed = clusters(&server);
    let kept: u64 = listed.iter().map(|c| c["count"].as_u64().unwrap()).sum();
    assert_eq!(kept, 2, "{listed:?}");
    let mut named: Vec<u64> = listed
        .iter()
        .map(|c| c["cluster"].as_u64().unwrap())
        .collect();
    named.sort();
    assert_eq!(named, ids[3..]);
    server.shutdown();
    // `unknowns list` reads the same, without the models and without writing.
    let journal = std::fs::read(data.join("unknowns/faces.jsonl")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_face-attendance"))
        .args(["unknowns", "list", "--data"])
        .arg(data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["clusters"].as_array().unwrap().len(), listed.len());
    assert_eq!(
        std::fs::read(data.join("unknowns/faces.jsonl")).unwrap(),
        journal
    );
}

#[test]
fn without_crops_a_cluster_is_enrolled_from_its_encodings() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let settings = Settings {
        data_dir: data.to_path_buf(),
        face_crops: FaceCrops::None,
        ..Settings::default()
    };
    let store = Unknowns::open(data, settings.unknown_settings()).unwrap();
    let ids = record(&store, &stuart());
    drop(store);
    let server = h::start_with(&settings, h::serve_settings());
    let listed = clusters(&server);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["crops"], json!([]));
    let (status, body) = post_json(
        &server,
        &format!("/unknowns/{}/enroll", ids[0]),
        json!({"student_id": "stuart", "force": false}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["samples"], 5);
    assert!(body["saved"].as_u64().unwrap() >= 3, "{body}");
    let (_, recognized) =
        h::post_image(&url(&server, "/recognize"), &stranger("stuart_2.jpg"), &[]);
    assert_eq!(recognized["results"][0]["label"], "stuart", "{recognized}");
    assert!(clusters(&server).is_empty());
    server.shutdown();
}

#[test]
fn a_cluster_of_unknown_faces_can_be_rejected_for_the_person_it_is_mistaken_for() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    enroll_known(data);
    let store = Unknowns::open(data, UnknownSettings::default()).unwrap();
    record(&store, &stuart());
    drop(store);
    // A loose tolerance, where stuart passes for howard (tests/people_reject.rs).
    let settings = Settings {
        data_dir: data.to_path_buf(),
        tolerance: 0.7,
        ..Settings::default()
    };
    let server = h::start_with(&settings, h::serve_settings());
    let label = |server: &Service| {
        let (status, got) =
            h::post_image(&url(server, "/recognize"), &stranger("stuart_2.jpg"), &[]);
        assert_eq!(status, 200, "{got}");
        got["results"][0]["label"].as_str().unwrap().to_string()
    };
    let mistaken_for = label(&server);
    assert_ne!(
        mistaken_for, "Unknown",
        "the premise: stuart gets a name at 0.7"
    );
    let cluster = cluster_with(&clusters(&server), 6)["cluster"]
        .as_u64()
        .unwrap();

    let path = format!("/people/{mistaken_for}/reject");
    let (status, body) = post_json(&server, &path, json!({"unknown": "999999"}));
    assert_eq!(status, 404, "{body}");
    let (status, body) = post_json(&server, &path, json!({"unknown": "x"}));
    assert_eq!(status, 400, "{body}");
    let (status, body) = post_json(&server, &path, json!({"unknown": cluster.to_string()}));
    assert_eq!(status, 200, "{body}");
    assert!(body["rejected"].as_u64().unwrap() >= 1, "{body}");
    assert_ne!(label(&server), mistaken_for, "no longer {mistaken_for}");
    // The faces stay kept, for enrolling or forgetting.
    assert_eq!(cluster_with(&clusters(&server), 6)["cluster"], cluster);
    server.shutdown();
}
