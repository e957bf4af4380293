//! Per-person `.npy` files: numpy's format, `float64`, shape `(n, 128)`, as the original
//! service wrote them with `np.save`. Files written by numpy in other layouts also load.

use npyz::{DType, NpyFile, Order, TypeChar, WriterBuilder};

use crate::engine::{Encoding, ENCODING_LEN};

/// Reads the encodings of one `.npy` file: float64 or float32, either byte order, C or
/// Fortran order, shape `(n, 128)` or a single `(128,)` row. The error says what is wrong.
pub fn read_encodings(bytes: &[u8]) -> Result<Vec<Encoding>, String> {
    check_header(bytes)?;
    let file = NpyFile::new(bytes).map_err(|e| format!("not a .npy file: {e}"))?;
    let shape = file.shape().to_vec();
    let rows = match shape.as_slice() {
        [n, d] if *d == ENCODING_LEN as u64 => *n,
        [d] if *d == ENCODING_LEN as u64 => 1,
        other => return Err(format!("shape {other:?}, expected (n, {ENCODING_LEN})")),
    };
    // Refused before npyz sizes anything by the declared shape: the values cannot take more
    // bytes than the file has (4 per value at the least).
    if rows.saturating_mul(ENCODING_LEN as u64 * 4) > bytes.len() as u64 {
        return Err(format!(
            "shape {shape:?} needs more bytes than the file's {}: the file is truncated",
            bytes.len()
        ));
    }
    let rows = rows as usize;
    let fortran = file.order() == Order::Fortran && shape.len() == 2;
    let values: Vec<f64> = match file.dtype() {
        DType::Plain(ts) if ts.type_char() == TypeChar::Float && ts.size_field() == 8 => {
            file.into_vec::<f64>().map_err(|e| e.to_string())?
        }
        DType::Plain(ts) if ts.type_char() == TypeChar::Float && ts.size_field() == 4 => file
            .into_vec::<f32>()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(f64::from)
            .collect(),
        other => {
            return Err(format!(
                "dtype {}, expected float64 or float32",
                other.descr()
            ))
        }
    };
    if values.len() != rows * ENCODING_LEN {
        return Err(format!(
            "{} values for shape {shape:?}: the file is truncated",
            values.len()
        ));
    }
    if values.iter().any(|v| !v.is_finite()) {
        return Err("contains NaN or infinite values".into());
    }
    let mut out = vec![[0.0; ENCODING_LEN]; rows];
    for (i, v) in values.into_iter().enumerate() {
        let (row, col) = if fortran {
            (i % rows, i / rows)
        } else {
            (i / ENCODING_LEN, i % ENCODING_LEN)
        };
        out[row][col] = v;
    }
    Ok(out)
}

/// Deepest bracket nesting a header may have: ours is a dict holding a shape tuple (2).
const MAX_HEADER_NESTING: usize = 4;

/// Checks a `.npy` header before npyz parses it (both found by the `npy` fuzz target):
/// - npyz allocates the declared header length before reading it, so a damaged file declaring
///   a 4 GB header (formats 2 and 3 store it in 32 bits) aborted the process;
/// - its header parser backtracks exponentially on nested brackets: a 300-byte file with 90 `[`
///   took more than 12 s (a gallery that never loads). No header we can use nests that deep.
fn check_header(bytes: &[u8]) -> Result<(), String> {
    let (start, length): (u64, u64) = match bytes {
        [0x93, b'N', b'U', b'M', b'P', b'Y', 1, _, a, b, ..] => {
            (10, u16::from_le_bytes([*a, *b]) as u64)
        }
        [0x93, b'N', b'U', b'M', b'P', b'Y', 2 | 3, _, a, b, c, d, ..] => {
            (12, u32::from_le_bytes([*a, *b, *c, *d]) as u64)
        }
        // Anything else is for npyz to refuse with its own words.
        _ => return Ok(()),
    };
    let end = start + length;
    if end > bytes.len() as u64 {
        return Err(format!(
            "not a .npy file: its header claims {end} bytes, the file has {}",
            bytes.len()
        ));
    }
    let mut depth = 0usize;
    for &b in &bytes[start as usize..end as usize] {
        match b {
            b'[' | b'(' | b'{' => depth += 1,
            b']' | b')' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > MAX_HEADER_NESTING {
            return Err("not a .npy file of encodings: its header nests too deep".into());
        }
    }
    Ok(())
}

/// The bytes of a `.npy` file holding `encodings` as float64, shape `(n, 128)`, C order.
pub fn write_encodings(encodings: &[Encoding]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(128 + encodings.len() * ENCODING_LEN * 8);
    let result = (|| {
        let mut writer = npyz::WriteOptions::<f64>::new()
            .default_dtype()
            .shape(&[encodings.len() as u64, ENCODING_LEN as u64])
            .writer(&mut buf)
            .begin_nd()?;
        for row in encodings {
            writer.extend(row.iter().copied())?;
        }
        writer.finish()
    })();
    // Writing to a Vec cannot fail.
    debug_assert!(result.is_ok());
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rows: usize) -> Vec<Encoding> {
        (0..rows)
            .map(|r| std::array::from_fn(|c| r as f64 + c as f64 / 1000.0 - 0.05))
            .collect()
    }

    #[test]
    fn round_trip() {
        for n in [0, 1, 3] {
            let data = sample(n);
            assert_eq!(read_encodings(&write_encodings(&data)).unwrap(), data);
        }
    }

    #[test]
    fn header_is_what_numpy_writes() {
        let bytes = write_encodings(&sample(2));
        assert_eq!(&bytes[..6], b"\x93NUMPY");
        let header = String::from_utf8_lossy(&bytes[10..bytes.len() - 2 * 128 * 8]);
        assert!(header.contains("'descr': '<f8'"), "{header}");
        assert!(header.contains("'fortran_order': False"), "{header}");
        assert!(header.contains("'shape': (2, 128"), "{header}");
        assert_eq!(
            (bytes.len() - 2 * 128 * 8) % 64,
            0,
            "header padded to 64 bytes"
        );
    }

    #[test]
    fn bad_files_say_why() {
        assert!(read_encodings(b"").unwrap_err().contains("not a .npy"));
        assert!(read_encodings(b"hello world")
            .unwrap_err()
            .contains("not a .npy"));
        let good = write_encodings(&sample(2));
        let cut = &good[..good.len() - 100];
        assert!(read_encodings(cut).is_err());
    }

    /// Inputs found by the `npy` fuzz target (fuzz/): each once aborted the process with a
    /// multi-gigabyte allocation.
    #[test]
    fn huge_declared_sizes_are_refused_without_allocating() {
        // Format 3, header length 0xE57B0076 (3.8 GB) in a 79-byte file.
        let oom_header: &[u8] = b"\x93NUMPY\x03\x00v\x00{\xe5\xe5\xe5\x00{'desc 'for\x93NFalse\xe5\xe5\xe5\xe5\xe5\xe5\xe5\xe5\xe5\xe5\xe5\xe5\xe5\xe5\xe5\xe5\xe5\xe5\xe5\xe5\xe5\xe5\xe5\xe5\xe5x\xe5\xe5\xf2\xe5\xe5\xe5\xe5\xe5\xe5\xe5aUMPn_orY#";
        let err = read_encodings(oom_header).unwrap_err();
        assert!(err.contains("header claims"), "{err}");
        // A well-formed header declaring 10^12 rows over 128 bytes of data.
        let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000, 128), }";
        let mut file = b"\x93NUMPY\x01\x00".to_vec();
        let padded = format!("{header:<117}\n");
        file.extend_from_slice(&(padded.len() as u16).to_le_bytes());
        file.extend_from_slice(padded.as_bytes());
        file.extend_from_slice(&[0; 128]);
        let err = read_encodings(&file).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
    }

    /// Found by the `npy` fuzz target: 90 nested `[` in the header took npyz's parser > 12 s.
    #[test]
    fn deeply_nested_headers_are_refused_at_once() {
        let header = format!(
            "{{'descr': {}'<f4', 'fortran_order': False, 'shape': (2, 128), }}",
            "[".repeat(90)
        );
        let mut file = b"\x93NUMPY\x01\x00".to_vec();
        file.extend_from_slice(&(header.len() as u16 + 1).to_le_bytes());
        file.extend_from_slice(header.as_bytes());
        file.push(b'\n');
        file.extend_from_slice(&[0; 2 * 128 * 4]);
        let started = std::time::Instant::now();
        let err = read_encodings(&file).unwrap_err();
        assert!(err.contains("nests too deep"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
