//! Per-person `.npy` files: numpy's format, `float64`, shape `(n, 128)`, as the original
//! service wrote them with `np.save`. Files written by numpy in other layouts also load.

use npyz::{DType, NpyFile, Order, TypeChar, WriterBuilder};

use crate::engine::{Encoding, ENCODING_LEN};

/// Reads the encodings of one `.npy` file: float64 or float32, either byte order, C or
/// Fortran order, shape `(n, 128)` or a single `(128,)` row. The error says what is wrong.
pub fn read_encodings(bytes: &[u8]) -> Result<Vec<Encoding>, String> {
    let file = NpyFile::new(bytes).map_err(|e| format!("not a .npy file: {e}"))?;
    let shape = file.shape().to_vec();
    let rows = match shape.as_slice() {
        [n, d] if *d == ENCODING_LEN as u64 => *n as usize,
        [d] if *d == ENCODING_LEN as u64 => 1,
        other => return Err(format!("shape {other:?}, expected (n, {ENCODING_LEN})")),
    };
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
}
