//! `face-attendance-bench http`: load on a running server's `/recognize`, for the book's
//! throughput figures (requests/s, p50/p99 latency at 1, 2 and 4 concurrent clients).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use crate::cli::server_args::ServerArgs;
use crate::client::{image_form, Server};
use crate::image_io;

/// `face-attendance-bench http`: the server, the load and the photo.
#[derive(Debug, Clone, Args)]
pub struct BenchHttpArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Concurrent clients to measure, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub clients: Vec<usize>,
    /// Requests per measurement (split across the clients)
    #[arg(long, default_value_t = 40)]
    pub requests: usize,
    /// Post the photo letterboxed to this frame size, e.g. 640x480 (as a camera would send it)
    #[arg(long, value_parser = parse_size)]
    pub frame: Option<(u32, u32)>,
    /// The photo to post
    pub image: PathBuf,
}

/// `WIDTHxHEIGHT` (16 to 8192 each) as a pair.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once('x').ok_or("expected WIDTHxHEIGHT")?;
    let parse = |v: &str| {
        v.trim()
            .parse::<u32>()
            .ok()
            .filter(|v| (16..=8192).contains(v))
    };
    Ok((parse(w).ok_or("bad width")?, parse(h).ok_or("bad height")?))
}

/// The bytes to post: the file, or the file letterboxed to `frame` and re-encoded.
fn load(args: &BenchHttpArgs) -> Result<Vec<u8>, String> {
    let data = std::fs::read(&args.image).map_err(|e| format!("{}: {e}", args.image.display()))?;
    let Some((w, h)) = args.frame else {
        return Ok(data);
    };
    let image = image_io::decode(&data, u64::MAX).map_err(|e| e.to_string())?;
    image_io::encode_jpeg(&image_io::letterbox(&image, w, h)).map_err(|e| e.to_string())
}

pub fn run(args: &BenchHttpArgs) -> i32 {
    let data = match load(args) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return crate::cli::EXIT_SETUP;
        }
    };
    // One agent per client thread below; built once here to report a bad TLS setting.
    let server = Server::from(&args.server);
    if let Err(e) = server.agent(Duration::from_secs(120)) {
        eprintln!("error: {e}");
        return crate::cli::EXIT_SETUP;
    }
    let (content_type, body) = image_form(&args.image, &data);
    let url = server.url("/recognize");
    println!(
        "POST {url} with {} ({} bytes), {} requests per row",
        args.image.display(),
        data.len(),
        args.requests
    );
    println!(
        "{:>8} {:>10} {:>10} {:>10} {:>8}",
        "clients", "req/s", "p50 ms", "p99 ms", "errors"
    );
    for &clients in &args.clients {
        let clients = clients.max(1);
        let per_client = args.requests.div_ceil(clients);
        let started = Instant::now();
        let results: Vec<(Vec<Duration>, usize)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..clients)
                .map(|_| {
                    let (server, content_type, body) = (&server, &content_type, &body);
                    s.spawn(move || {
                        let Ok(agent) = server.agent(Duration::from_secs(120)) else {
                            return (Vec::new(), per_client);
                        };
                        let mut times = Vec::with_capacity(per_client);
                        let mut errors = 0;
                        for _ in 0..per_client {
                            let t = Instant::now();
                            let ok = server
                                .post(&agent, "/recognize")
                                .header("Content-Type", content_type)
                                .send(body.as_slice())
                                .map(|mut r| {
                                    r.status().is_success() && r.body_mut().read_to_vec().is_ok()
                                })
                                .unwrap_or(false);
                            times.push(t.elapsed());
                            errors += usize::from(!ok);
                        }
                        (times, errors)
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        let elapsed = started.elapsed().as_secs_f64();
        let mut times: Vec<Duration> = results
            .iter()
            .flat_map(|(t, _)| t.iter().copied())
            .collect();
        let errors: usize = results.iter().map(|(_, e)| e).sum();
        times.sort();
        let pct = |p: f64| {
            times
                .get(((times.len() as f64 * p).ceil() as usize).saturating_sub(1))
                .map(|d| d.as_secs_f64() * 1000.0)
                .unwrap_or(0.0)
        };
        println!(
            "{clients:>8} {:>10.2} {:>10.1} {:>10.1} {errors:>8}",
            times.len() as f64 / elapsed,
            pct(0.5),
            pct(0.99)
        );
    }
    0
}
