//! `face-attendance recognize FILE...`: the `/recognize` answer for each file.

use std::path::PathBuf;

use serde_json::json;

use crate::recognizer::{MatchOptions, Photo, Recognizer};

pub fn files(recognizer: &Recognizer, files: &[PathBuf]) -> i32 {
    let mut status = 0;
    for path in files {
        let outcome = std::fs::read(path)
            .map_err(|e| format!("{}: {e}", path.display()))
            .and_then(|bytes| {
                recognizer
                    .recognize(Photo::Bytes(&bytes), MatchOptions::default())
                    .map(|r| r.faces)
                    .map_err(|e| format!("{}: {e}", path.display()))
            });
        let mut answer = match outcome {
            Ok(results) => json!({"ok": true, "results": results}),
            Err(error) => {
                status = super::EXIT_INPUT;
                json!({"ok": false, "error": error})
            }
        };
        // With several files, say which answer is which; one file prints exactly the API's JSON.
        if files.len() > 1 {
            answer["file"] = json!(path.display().to_string());
        }
        println!("{answer}");
    }
    status
}
