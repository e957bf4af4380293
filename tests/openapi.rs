//! `/openapi.json` against the routing table, on a real server on 127.0.0.1: every route of
//! [`ROUTES`] is in the document with its method and nothing else is, and every 405 answer's
//! `Allow` lists exactly the methods the table has for that path. (What each route accepts and
//! answers is checked by Schemathesis over the same document: `scripts/schemathesis`.)

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::http as h;
use face_attendance::http::ROUTES;

/// The methods of an OpenAPI path item.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// A path of the pattern, each `{name}` given a value of the kind it takes.
fn concrete(pattern: &str) -> String {
    pattern
        .replace("{id}", "alip")
        .replace("{n}", "0")
        .replace("{cluster}", "1")
        .replace("{entry}", "1")
        .replace("{seq}", "1")
        .replace("{file}", "app.js")
}

/// The routing table as pattern -> methods, in the table's order.
fn table() -> BTreeMap<&'static str, Vec<&'static str>> {
    let mut table: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for route in ROUTES {
        table.entry(route.path).or_default().push(route.method);
    }
    table
}

#[test]
fn openapi_json_has_every_route_and_nothing_else() {
    let data = tempfile::tempdir().unwrap();
    let server = h::start(data.path(), h::serve_settings());
    let (status, spec) = h::get(&format!("http://{}/openapi.json", server.addr()));
    assert_eq!(status, 200);
    let documented: BTreeSet<(String, String)> = spec["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            let item = item.as_object().expect("a path item");
            METHODS
                .iter()
                .filter(|m| item.contains_key(**m))
                .map(move |m| (path.clone(), m.to_ascii_uppercase()))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.path.to_string(), r.method.to_string()))
        .collect();
    let missing: Vec<_> = routed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(
        missing.is_empty(),
        "routes missing from openapi.json: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "openapi.json documents no such route: {extra:?}"
    );
    // Each path's parameters are declared, in the path and with the same names.
    for route in ROUTES {
        let op = &spec["paths"][route.path][route.method.to_ascii_lowercase()];
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "path")
                    .filter_map(|p| p["name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        let named: BTreeSet<&str> = route
            .path
            .split('{')
            .skip(1)
            .filter_map(|p| p.split_once('}').map(|(name, _)| name))
            .collect();
        assert_eq!(declared, named, "{} {}", route.method, route.path);
    }
    server.shutdown();
}

#[test]
fn every_405_allows_exactly_the_methods_of_its_path() {
    let data = tempfile::tempdir().unwrap();
    let server = h::start(data.path(), h::serve_settings());
    let mut checked = 0;
    for (pattern, methods) in table() {
        let path = concrete(pattern);
        let allowed = |m: &str| methods.contains(&m) || (m == "HEAD" && methods.contains(&"GET"));
        for method in [
            "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
        ] {
            if allowed(method) {
                continue;
            }
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n"
            );
            let (_stream, answer) = h::raw_request(server.addr(), &head);
            let status = answer.split(' ').nth(1).unwrap_or_default();
            assert_eq!(status, "405", "{method} {path}: {answer}");
            let allow = answer
                .lines()
                .find_map(|l| l.strip_prefix("Allow: "))
                .unwrap_or_else(|| panic!("{method} {path}: no Allow: {answer}"));
            assert_eq!(allow, methods.join(", "), "{method} {path} ({pattern})");
            checked += 1;
        }
    }
    // The crop of a sample is GET only, though `/people/{id}/samples/{n}` (DELETE) also
    // matches its path: the more specific pattern owns it.
    let (_stream, answer) = h::raw_request(
        server.addr(),
        "DELETE /people/alip/samples/0.jpg HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert!(answer.contains("\r\nAllow: GET\r\n"), "{answer}");
    assert!(checked > 150, "{checked}");
    server.shutdown();
}
