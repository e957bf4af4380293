//! `face-attendance rt-client`: the original realtime client. Posts images to a server's
//! `/recognize/realtime` and prints the WebSocket stream as it arrives.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::server_args::ServerArgs;
use crate::bulk_enroll::is_photo;
use crate::client::{image_form, Server};

#[derive(Debug, Clone, Args)]
pub struct RtClientArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Tolerance for these calls (0 = the server's)
    #[arg(long, default_value_t = 0.0)]
    pub min_conf: f64,
    /// Also send events for unknown faces
    #[arg(long)]
    pub send_unknown: bool,
    /// Images posted per second
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Post the images again and again until interrupted
    #[arg(long = "loop")]
    pub repeat: bool,
    /// Image files, or folders of them
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut photos: Vec<PathBuf> = std::fs::read_dir(p)
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|f| is_photo(f))
                        .collect()
                })
                .unwrap_or_default();
            photos.sort();
            out.extend(photos);
        } else {
            out.push(p.clone());
        }
    }
    out
}

pub fn run(args: &RtClientArgs) -> i32 {
    if !(args.rate.is_finite() && args.rate > 0.0) {
        eprintln!("error: --rate must be above 0");
        return super::EXIT_SETUP;
    }
    let server = Server::from(&args.server);
    let agent = match server.agent(Duration::from_secs(60)) {
        Ok(agent) => agent,
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_SETUP;
        }
    };
    let mut socket = match server.websocket("/ws/recognitions") {
        Ok(socket) => socket,
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_SETUP;
        }
    };
    std::thread::spawn(move || {
        while let Ok(message) = socket.read() {
            if let Ok(text) = message.to_text() {
                if !text.is_empty() {
                    println!("ws   {text}");
                }
            }
        }
    });
    let images = expand(&args.paths);
    if images.is_empty() {
        eprintln!("error: no images in {:?}", args.paths);
        return super::EXIT_SETUP;
    }
    let path = format!(
        "/recognize/realtime?min_conf={}&send_unknown={}",
        args.min_conf, args.send_unknown
    );
    let pause = Duration::from_secs_f64(1.0 / args.rate);
    let mut status = 0;
    loop {
        for image in &images {
            if let Err(e) = post(&server, &agent, &path, image) {
                eprintln!("{}: {e}", image.display());
                status = super::EXIT_INPUT;
            }
            std::thread::sleep(pause);
        }
        if !args.repeat {
            break;
        }
    }
    // Let the last broadcasts arrive before exiting.
    std::thread::sleep(Duration::from_millis(500));
    status
}

fn post(server: &Server, agent: &ureq::Agent, path: &str, image: &Path) -> Result<(), String> {
    let data = std::fs::read(image).map_err(|e| e.to_string())?;
    let (content_type, body) = image_form(image, &data);
    let mut response = server
        .post(agent, path)
        .header("Content-Type", &content_type)
        .send(body)
        .map_err(|e| e.to_string())?;
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    println!("http {} {text}", image.display());
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", response.status()))
    }
}
