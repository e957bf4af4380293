//! What is known of each enrolled face besides its encoding: when it was enrolled, its crop and
//! its measured quality, in `data/people/<id>.json` beside `data/embeddings/<id>.npy` (with the
//! person's name and group, [`super::label`]).
//!
//! Contract: the `.npy` file is the truth (the original service's format, read by its tools);
//! the metadata file only describes its rows. Each entry names its row by a fingerprint of the
//! encoding, not by position, so the two files never need to change together: whatever a crash
//! leaves ([`reconcile`]), each row of the `.npy` gets the entry written for it when there is
//! one, a plain entry (enrolled when the file was, no crop) when there is none, and an entry
//! whose row is gone is dropped. A crop named by an entry but missing on disk counts as none.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::engine::Encoding;

/// One enrolled face's description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Fingerprint of the encoding this entry describes ([`fingerprint`]).
    pub row: String,
    /// Unix seconds.
    pub enrolled_at: u64,
    /// File name of the face crop in `data/faces/<id>/`, when one is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop: Option<String>,
    /// What enrollment measured of the face (`face_px`, `sharpness`, `yaw`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Value>,
}

impl Sample {
    /// The entry of a row that has no written description.
    pub fn plain(encoding: &Encoding, enrolled_at: u64) -> Sample {
        Sample {
            row: fingerprint(encoding),
            enrolled_at,
            crop: None,
            quality: None,
        }
    }
}

/// The metadata file's content: the samples' descriptions, and the person's name and group
/// (`"name"`, `"group"` beside `"samples"`, absent when none: files of earlier releases read
/// as they are).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SamplesFile {
    /// One entry per row (matched by fingerprint, see the module docs).
    pub samples: Vec<Sample>,
    /// The person's name and group ([`super::label`]).
    #[serde(flatten)]
    pub label: super::Label,
}

/// 16 hex digits of the SHA-256 of the encoding's little-endian bytes: enough to tell a
/// person's rows apart, and stable across platforms.
pub fn fingerprint(encoding: &Encoding) -> String {
    let mut hasher = Sha256::new();
    for v in encoding {
        hasher.update(v.to_le_bytes());
    }
    hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `name` is a crop name this program writes (`<unix-ms>-<n>.jpg`): a metadata file or
/// an archive naming anything else (`../x`) is not followed.
pub fn is_crop_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".jpg") else {
        return false;
    };
    let Some((ms, n)) = stem.split_once('-') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    digits(ms) && digits(n)
}

/// The Unix seconds in a crop's name, if it is one.
pub fn crop_time(name: &str) -> Option<u64> {
    is_crop_name(name)
        .then(|| name.split_once('-')?.0.parse::<u64>().ok())
        .flatten()
        .map(|ms| ms / 1000)
}

/// One entry per row of `rows`, in their order (see the module docs). `written` is the
/// metadata file's entries (`None`: there is none, a gallery of the first release), `file_time`
/// the `.npy` file's time, `crops` the crop files present in the person's folder and
/// `crop_exists` whether one of them is there.
pub fn reconcile(
    rows: &[Encoding],
    written: Option<Vec<Sample>>,
    file_time: u64,
    crops: &[String],
) -> Vec<Sample> {
    let Some(mut written) = written else {
        return first_release(rows, file_time, crops);
    };
    rows.iter()
        .map(|row| {
            let fp = fingerprint(row);
            match written.iter().position(|s| s.row == fp) {
                Some(i) => {
                    let mut sample = written.remove(i);
                    if !sample
                        .crop
                        .as_ref()
                        .is_some_and(|c| is_crop_name(c) && crops.contains(c))
                    {
                        sample.crop = None;
                    }
                    sample
                }
                None => Sample::plain(row, file_time),
            }
        })
        .collect()
}

/// The first release wrote no metadata, but one crop per row in the rows' order, named by time:
/// when the counts agree they are paired; otherwise the rows get no crop (the files stay).
fn first_release(rows: &[Encoding], file_time: u64, crops: &[String]) -> Vec<Sample> {
    let mut named: Vec<&String> = crops.iter().filter(|c| is_crop_name(c)).collect();
    named.sort_by_key(|c| {
        let (ms, n) = c
            .trim_end_matches(".jpg")
            .split_once('-')
            .unwrap_or(("", ""));
        (
            ms.parse::<u64>().unwrap_or(0),
            n.parse::<u64>().unwrap_or(0),
        )
    });
    let paired = named.len() == rows.len();
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let mut sample = Sample::plain(row, file_time);
            if paired {
                sample.crop = Some(named[i].clone());
                sample.enrolled_at = crop_time(named[i]).unwrap_or(file_time);
            }
            sample
        })
        .collect()
}

/// The crop files (by name) in `dir`; none when it does not exist.
pub fn crop_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| is_crop_name(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gallery::tests::enc;

    #[test]
    fn entries_follow_their_rows_whatever_a_crash_left() {
        let rows = [enc(1.0), enc(2.0), enc(3.0)];
        let described = |v: f64, crop: &str| Sample {
            row: fingerprint(&enc(v)),
            enrolled_at: 100,
            crop: Some(crop.into()),
            quality: None,
        };
        // Row 2 has no entry (killed before the metadata was written); the entry of a deleted
        // row (4.0) is dropped; the entries come back in the rows' order.
        let written = vec![
            described(3.0, "3-0.jpg"),
            described(4.0, "4-0.jpg"),
            described(1.0, "1-0.jpg"),
        ];
        let crops = vec!["1-0.jpg".to_string(), "4-0.jpg".to_string()];
        let got = reconcile(&rows, Some(written), 50, &crops);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].crop.as_deref(), Some("1-0.jpg"));
        assert_eq!((got[1].enrolled_at, got[1].crop.as_deref()), (50, None));
        // 3-0.jpg is named but not on disk.
        assert_eq!((got[2].enrolled_at, got[2].crop.as_deref()), (100, None));
    }

    #[test]
    fn first_release_crops_pair_with_rows_only_when_the_counts_agree() {
        let rows = [enc(1.0), enc(2.0)];
        let crops = vec!["1700000005000-0.jpg".into(), "1700000001000-1.jpg".into()];
        let got = reconcile(&rows, None, 9, &crops);
        assert_eq!(got[0].crop.as_deref(), Some("1700000001000-1.jpg"));
        assert_eq!(got[0].enrolled_at, 1_700_000_001);
        assert_eq!(got[1].crop.as_deref(), Some("1700000005000-0.jpg"));
        let got = reconcile(&rows, None, 9, &crops[..1]);
        assert!(got.iter().all(|s| s.crop.is_none() && s.enrolled_at == 9));
    }

    #[test]
    fn only_crop_names_this_program_writes_are_followed() {
        for ok in ["1700000000000-0.jpg", "1-12.jpg"] {
            assert!(is_crop_name(ok), "{ok}");
        }
        for bad in [
            "../x.jpg",
            "a-1.jpg",
            "1-1.png",
            "1.jpg",
            "-1.jpg",
            "1-.jpg",
            "1-1.jpg/x",
        ] {
            assert!(!is_crop_name(bad), "{bad}");
        }
        assert_eq!(crop_time("1700000001999-0.jpg"), Some(1_700_000_001));
    }

    #[test]
    fn fingerprints_tell_rows_apart() {
        assert_eq!(fingerprint(&enc(1.0)).len(), 16);
        assert_eq!(fingerprint(&enc(1.0)), fingerprint(&enc(1.0)));
        assert_ne!(fingerprint(&enc(1.0)), fingerprint(&enc(-1.0)));
    }
}
