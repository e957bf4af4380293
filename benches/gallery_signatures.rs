//! The cost of signed gallery sync, per message: for a person of 1, 5 and 256 samples (the most a
//! message may carry, [`wire::MAX_SAMPLES`]), the time to seal (sign) their message, to verify it
//! against a site trust list of 50 boxes ([`envelope::verify`]: what a box does before anything
//! else with a message from the broker) and to parse it ([`wire::parse_message`]: what every box
//! did already before signatures). Medians (and p10/p90) of many runs of one message each.
//!
//! The messages are built as a box writes them: JSON format 1 (serde_json), encodings of 128
//! `f32` in their shortest form, a quality object per sample, then sealed by one of the 50 boxes.
//! Only the crate's public API is used.
//!
//! `cargo bench --bench gallery_signatures` (no models or photos needed). `GALLERY_BENCH_SECONDS`
//! (default 1) bounds the time spent on each measurement.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use face_attendance::replication::keys::BoxKey;
use face_attendance::replication::trust::{Role, TrustList, Trusted};
use face_attendance::replication::{envelope, wire, Incoming, Kind};
use serde::Serialize;

/// Boxes in the site's trust list.
const BOXES: usize = 50;

/// The person's samples, one message each.
const SIZES: [usize; 3] = [1, 5, 256];

#[derive(Serialize)]
struct Version<'a> {
    updated_ms: u64,
    box_id: &'a str,
}

#[derive(Serialize)]
struct Quality {
    face_px: u32,
    sharpness: f32,
    yaw: f32,
}

#[derive(Serialize)]
struct Sample {
    encoding: Vec<f32>,
    enrolled_at: u64,
    quality: Quality,
}

#[derive(Serialize)]
struct Message<'a> {
    format: u32,
    student_id: &'a str,
    version: Version<'a>,
    samples: Vec<Sample>,
}

/// A small deterministic generator (xorshift64*): encodings look like a ResNet's, values within
/// about ±0.25 with every digit of an `f32` used.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn unsigned(person: &str, box_id: &str, samples: usize, now_ms: u64, rng: &mut Rng) -> Vec<u8> {
    let samples = (0..samples)
        .map(|i| Sample {
            encoding: (0..128).map(|_| (rng.unit() - 0.5) * 0.5).collect(),
            enrolled_at: now_ms / 1000 - 60 * i as u64,
            quality: Quality {
                face_px: 120 + (rng.next() % 200) as u32,
                sharpness: rng.unit() * 400.0,
                yaw: (rng.unit() - 0.5) * 0.6,
            },
        })
        .collect();
    serde_json::to_vec(&Message {
        format: 1,
        student_id: person,
        version: Version {
            updated_ms: now_ms,
            box_id,
        },
        samples,
    })
    .expect("a message serializes")
}

/// Runs `f` at least 21 times and until `budget` is spent (at most 20,001 times): the sorted
/// durations.
fn measure(budget: Duration, mut f: impl FnMut()) -> Vec<Duration> {
    f(); // warm-up: caches, lazy statics
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 21 || (start.elapsed() < budget && times.len() < 20_001) {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    times.sort();
    times
}

fn at(times: &[Duration], q: f64) -> Duration {
    times[((times.len() - 1) as f64 * q).round() as usize]
}

fn show(times: &[Duration]) -> String {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    format!(
        "{:>9.1} µs  (p10 {:.1}, p90 {:.1}; n={})",
        us(at(times, 0.5)),
        us(at(times, 0.1)),
        us(at(times, 0.9)),
        times.len()
    )
}

fn main() {
    let budget = Duration::from_secs_f64(
        std::env::var("GALLERY_BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1.0),
    );
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as u64;

    // The site: 50 boxes, each its key; the signer is one in the middle of the list.
    let keys: Vec<(String, BoxKey)> = (0..BOXES)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            (format!("gate-{i:02}"), BoxKey::from_seed(seed))
        })
        .collect();
    let mut trust = TrustList::empty();
    for (box_id, key) in &keys {
        trust.add(Trusted {
            box_id: box_id.clone(),
            key: key.public_key(),
            role: Role::Admin,
        });
    }
    assert_eq!(trust.len(), BOXES);
    let (signer, key) = &keys[BOXES / 2];

    println!(
        "gallery_signatures: per message, Ed25519 (ed25519-dalek), trust list of {BOXES} boxes, \
         {} ({} cores)",
        std::env::consts::ARCH,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for samples in SIZES {
        let person = format!("person_{samples}");
        let plain = unsigned(&person, signer, samples, now_ms, &mut rng);
        let sealed = envelope::seal(Kind::Person, &plain, signer, key);

        // What is timed must work: the sealed message verifies (by its signer), is refused as a
        // tombstone, and parses to the person with all their samples.
        let who = envelope::verify(Kind::Person, &sealed, &trust).expect("the message verifies");
        assert_eq!(&who.box_id, signer);
        assert!(envelope::verify(Kind::Deleted, &sealed, &trust).is_err());
        match wire::parse_message(&person, &sealed, now_ms).expect("the message parses") {
            Incoming::Person { rows, .. } => assert_eq!(rows.len(), samples),
            _ => panic!("not a person"),
        }

        let seal = measure(budget, || {
            black_box(envelope::seal(Kind::Person, black_box(&plain), signer, key));
        });
        let verify = measure(budget, || {
            black_box(envelope::verify(Kind::Person, black_box(&sealed), &trust).is_ok());
        });
        let parse = measure(budget, || {
            black_box(wire::parse_message(&person, black_box(&sealed), now_ms).is_ok());
        });
        let ratio = at(&verify, 0.5).as_secs_f64() / at(&parse, 0.5).as_secs_f64();
        println!(
            "  {samples} sample(s), {} bytes signed ({} unsigned):",
            sealed.len(),
            plain.len()
        );
        println!("    seal (sign)          {}", show(&seal));
        println!("    verify ({BOXES} trusted)  {}", show(&verify));
        println!("    parse_message        {}", show(&parse));
        println!(
            "    verify / parse       {ratio:.2} (verify + parse = {:.1} µs per message received)",
            (at(&verify, 0.5) + at(&parse, 0.5)).as_secs_f64() * 1e6
        );
    }
}
