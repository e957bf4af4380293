//! `GET /metrics`: the Prometheus text exposition (format 0.0.4, written by the `prometheus`
//! crate's encoder).
//!
//! One source of truth: what `/health` shows (camera, outbox, gallery, connections and budgets)
//! is not counted twice. Those structs keep their counters and give them to both, as a table
//! of name, help and value ([`Family`]), read at scrape time. What `/health` does not show is
//! recorded here as it happens: HTTP requests by route, method and status with their latency,
//! and the per-stage latency of face work ([`stages`]).
//!
//! Label values are bounded: a route is its pattern from the route table (`/people/:id`, never
//! the path asked for), a method outside the usual few is `other`, a status is a number.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric name starts with this.
pub const PREFIX: &str = "face_";

/// Request latencies, in seconds: from a `/health` (a millisecond) to a phone photo on a Pi.
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Stage latencies, in seconds: a match in microseconds, a detection at upsample 1 on a Pi 3
/// in about a second.
const STAGE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// What one server records as it works; one per [`crate::http::App`].
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_seconds: HistogramVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A metric with a fixed, valid name and labels: its construction cannot fail.
fn fixed<T>(made: prometheus::Result<T>) -> T {
    match made {
        Ok(metric) => metric,
        Err(e) => unreachable!("a metric of fixed name and labels: {e}"),
    }
}

impl Metrics {
    /// Empty counters and histograms, registered.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let http_requests = fixed(IntCounterVec::new(
            Opts::new(
                "face_http_requests_total",
                "HTTP requests answered, by route pattern, method and status.",
            ),
            &["route", "method", "status"],
        ));
        let http_seconds = fixed(HistogramVec::new(
            HistogramOpts::new(
                "face_http_request_duration_seconds",
                "From routing a request to its answer handed to the socket, by route pattern.",
            )
            .buckets(HTTP_BUCKETS.to_vec()),
            &["route"],
        ));
        for metric in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_seconds.clone()),
            Box::new(stages().seconds.clone()),
        ] {
            fixed(registry.register(metric));
        }
        Metrics {
            registry,
            http_requests,
            http_seconds,
        }
    }

    /// One request answered: `route` is its pattern (or `unmatched`), written with `:name`
    /// for `{name}` (`/people/:id`): braces inside a label value trip some parsers.
    pub fn http(&self, route: &str, method: &str, status: u16, took: Duration) {
        let route = route.replace('{', ":").replace('}', "");
        let route = route.as_str();
        let method = match method {
            "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" => method,
            _ => "other",
        };
        self.http_requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.http_seconds
            .with_label_values(&[route])
            .observe(took.as_secs_f64());
    }

    /// The exposition: what was recorded, then `live` (read at this scrape).
    pub fn render(&self, live: Vec<Family>) -> Result<String, prometheus::Error> {
        let mut families = self.registry.gather();
        families.extend(live.into_iter().filter_map(Family::into_proto));
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        prometheus::TextEncoder::new().encode(&families, &mut out)?;
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// The per-stage latency of face work, for the whole process (the engine is shared by every
/// server in it).
pub struct Stages {
    seconds: HistogramVec,
}

/// Where a stage ran: a camera frame or an uploaded image.
#[derive(Debug, Clone, Copy)]
pub enum Path {
    /// A frame of the box's camera.
    Camera,
    /// An image uploaded to the API.
    Request,
}

/// The stages the issue names: `decode` (or the camera frame's conversion), `detect`,
/// `landmarks`, `encode`, `match`.
#[derive(Debug, Clone, Copy)]
pub enum Stage {
    /// Decoding the image (or converting the camera frame).
    Decode,
    /// Face detection.
    Detect,
    /// The five landmarks.
    Landmarks,
    /// The encoding.
    Encode,
    /// Matching against the gallery.
    Match,
}

impl Stages {
    /// Records that `stage` took `took` on `path`.
    pub fn observe(&self, path: Path, stage: Stage, took: Duration) {
        let path = match path {
            Path::Camera => "camera",
            Path::Request => "request",
        };
        let stage = match stage {
            Stage::Decode => "decode",
            Stage::Detect => "detect",
            Stage::Landmarks => "landmarks",
            Stage::Encode => "encode",
            Stage::Match => "match",
        };
        self.seconds
            .with_label_values(&[path, stage])
            .observe(took.as_secs_f64());
    }
}

/// The process's stage histograms.
pub fn stages() -> &'static Stages {
    static STAGES: OnceLock<Stages> = OnceLock::new();
    STAGES.get_or_init(|| Stages {
        seconds: fixed(HistogramVec::new(
            HistogramOpts::new(
                "face_stage_duration_seconds",
                "Face work by stage: decode (or camera frame conversion), detect, landmarks, \
                 encode, match; for camera frames or uploaded images.",
            )
            .buckets(STAGE_BUCKETS.to_vec()),
            &["path", "stage"],
        )),
    })
}

/// A metric family read at scrape time from the structs `/health` also reads: a name (without
/// [`PREFIX`]), its help, its type and one value per label set.
pub struct Family {
    name: String,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Family {
    /// A counter: `name` gets [`PREFIX`] and `_total`.
    pub fn counter(name: &str, help: &'static str) -> Family {
        Family::new(format!("{PREFIX}{name}_total"), help, MetricType::COUNTER)
    }

    /// A gauge: `name` gets [`PREFIX`].
    pub fn gauge(name: &str, help: &'static str) -> Family {
        Family::new(format!("{PREFIX}{name}"), help, MetricType::GAUGE)
    }

    fn new(name: String, help: &'static str, kind: MetricType) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    /// The value without labels.
    pub fn value(self, value: f64) -> Family {
        self.sample(&[], value)
    }

    /// One value for `labels`.
    pub fn sample(mut self, labels: &[(&'static str, &str)], value: f64) -> Family {
        let labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        self.samples.push((labels, value));
        self
    }

    /// The family's name, without the prefix.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The family for the encoder; `None` when it has no value (the encoder refuses those).
    fn into_proto(self) -> Option<MetricFamily> {
        if self.samples.is_empty() {
            return None;
        }
        let mut family = MetricFamily::default();
        family.set_name(self.name);
        family.set_help(self.help.to_string());
        family.set_field_type(self.kind);
        let metrics = self
            .samples
            .into_iter()
            .map(|(labels, value)| {
                let labels = labels
                    .into_iter()
                    .map(|(k, v)| {
                        let mut pair = proto::LabelPair::default();
                        pair.set_name(k.to_string());
                        pair.set_value(v);
                        pair
                    })
                    .collect();
                let mut metric = proto::Metric::from_label(labels);
                match self.kind {
                    MetricType::COUNTER => {
                        let mut counter = proto::Counter::default();
                        counter.set_value(value);
                        metric.set_counter(counter);
                    }
                    _ => {
                        let mut gauge = proto::Gauge::default();
                        gauge.set_value(value);
                        metric.set_gauge(gauge);
                    }
                }
                metric
            })
            .collect();
        family.set_metric(metrics);
        Some(family)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_and_live_families_are_one_exposition() {
        let metrics = Metrics::new();
        metrics.http("/people/{id}", "GET", 404, Duration::from_millis(3));
        metrics.http("unmatched", "BREW", 405, Duration::from_millis(1));
        let text = metrics
            .render(vec![
                Family::gauge("gallery_people", "People enrolled.").value(3.0),
                Family::counter("camera_frames_processed", "Frames.")
                    .sample(&[("source", "x\"y")], 7.0),
                Family::gauge("empty", "Nothing yet."),
            ])
            .unwrap();
        assert!(text.contains(
            "face_http_requests_total{method=\"GET\",route=\"/people/:id\",status=\"404\"} 1"
        ));
        assert!(text.contains("method=\"other\""), "{text}");
        assert!(text.contains("# TYPE face_gallery_people gauge\nface_gallery_people 3\n"));
        assert!(text.contains("face_camera_frames_processed_total{source=\"x\\\"y\"} 7"));
        assert!(!text.contains("face_empty"));
        assert!(text.contains("face_http_request_duration_seconds_bucket{route=\"unmatched\""));
    }
}
