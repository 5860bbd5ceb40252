//! pgvector's `sparsevec`: a dimension and its non-zero elements. Its text form is
//! `{1:1.5,3:3.5}/5` (1-based indexes, ascending); its binary form is an i32 dimension,
//! an i32 count of elements, an unused i32, then the 0-based indexes (i32s) and the
//! values (f32s), all big-endian. A value is kept as its text, canonical: what pgvector
//! prints (zeros left out, each value as Postgres prints a float4).

use crate::error::{Error, Result};

/// pgvector's limits: dimensions and non-zero elements.
pub const MAX_DIM: usize = 1_000_000_000;
pub const MAX_NNZ: usize = 16_000;

#[derive(Debug, Clone, PartialEq)]
pub struct SparseVector {
    pub dim: usize,
    /// 0-based, ascending, each once.
    pub indices: Vec<u32>,
    /// Non-zero, finite.
    pub values: Vec<f32>,
}

/// The most dimensions a sparse vector may have to be compared with a vector (a query
/// vector, an operand of a distance function) as the dense vector it equals.
pub const MAX_DENSE: usize = 1_000_000;

/// A vector's or a sparse vector's text as the dense vector it equals.
pub fn dense_of_text(text: &str) -> Result<Vec<f32>> {
    if !looks_sparse(text) {
        return super::parse_vector_text(text);
    }
    let s = SparseVector::parse(text)?;
    if s.dim > MAX_DENSE {
        return Err(Error::ProgramLimit(format!(
            "a sparsevec of {} dimensions cannot be compared here (at most {MAX_DENSE})",
            s.dim
        )));
    }
    Ok(s.to_dense())
}

/// Whether a text looks like a sparse vector (`{...}/n`), not a vector or an array.
pub fn looks_sparse(text: &str) -> bool {
    let t = text.trim();
    t.starts_with('{') && t.contains("}/")
}

impl SparseVector {
    /// Parse pgvector's text form, with its errors: 22P02 for bad syntax, 22000 for
    /// indexes out of order, 22003 for an index below 1.
    pub fn parse(text: &str) -> Result<SparseVector> {
        let bad = |detail: &str| {
            let mut m = format!("invalid input syntax for type sparsevec: \"{text}\"");
            if !detail.is_empty() {
                m.push_str(&format!(" ({detail})"));
            }
            Error::InvalidText(m)
        };
        let t = text.trim();
        let body = t
            .strip_prefix('{')
            .ok_or_else(|| bad("Vector contents must start with \"{\"."))?;
        let (elements, dim) = body
            .split_once('}')
            .ok_or_else(|| bad("Unexpected end of input."))?;
        let dim = dim
            .trim()
            .strip_prefix('/')
            .ok_or_else(|| bad("Unexpected end of input."))?
            .trim();
        let dim: i64 = dim.parse().map_err(|_| bad("Junk after closing."))?;
        if dim < 1 {
            return Err(Error::DataException(
                "sparsevec must have at least 1 dimension".into(),
            ));
        }
        if dim as usize > MAX_DIM {
            return Err(Error::ProgramLimit(format!(
                "sparsevec cannot have more than {MAX_DIM} dimensions"
            )));
        }
        let dim = dim as usize;
        let mut indices = Vec::new();
        let mut values = Vec::new();
        if !elements.trim().is_empty() {
            for element in elements.split(',') {
                let (i, v) = element.split_once(':').ok_or_else(|| bad(""))?;
                let i: i64 = i.trim().parse().map_err(|_| bad(""))?;
                let v: f32 = v.trim().parse().map_err(|_| bad(""))?;
                if i < 1 || i > i32::MAX as i64 {
                    return Err(Error::NumericOutOfRange(format!(
                        "index \"{i}\" is out of range for type sparsevec"
                    )));
                }
                if i as usize > dim {
                    return Err(Error::DataException(
                        "index must be less than or equal to dimensions".into(),
                    ));
                }
                if !v.is_finite() {
                    return Err(Error::DataException(
                        "NaN and infinity are not allowed in sparsevec".into(),
                    ));
                }
                if let Some(&last) = indices.last()
                    && (i - 1) as u32 <= last
                {
                    return Err(Error::DataException(
                        "indexes must be in ascending order".into(),
                    ));
                }
                // pgvector keeps no zeros (but checks their order as the rest).
                indices.push((i - 1) as u32);
                values.push(v);
            }
        }
        let keep: Vec<usize> = (0..values.len()).filter(|&k| values[k] != 0.0).collect();
        let s = SparseVector {
            dim,
            indices: keep.iter().map(|&k| indices[k]).collect(),
            values: keep.iter().map(|&k| values[k]).collect(),
        };
        s.check_nnz()?;
        Ok(s)
    }

    fn check_nnz(&self) -> Result<()> {
        if self.values.len() > MAX_NNZ {
            return Err(Error::ProgramLimit(format!(
                "sparsevec cannot have more than {MAX_NNZ} non-zero elements"
            )));
        }
        Ok(())
    }

    /// A dense vector's non-zero elements (pgvector's `vector::sparsevec`).
    pub fn from_dense(v: &[f32]) -> Result<SparseVector> {
        let mut s = SparseVector {
            dim: v.len(),
            indices: Vec::new(),
            values: Vec::new(),
        };
        for (i, x) in v.iter().enumerate() {
            if *x != 0.0 {
                s.indices.push(i as u32);
                s.values.push(*x);
            }
        }
        s.check_nnz()?;
        Ok(s)
    }

    /// pgvector's text form.
    pub fn text(&self) -> String {
        let mut s = String::with_capacity(self.values.len() * 12 + 8);
        s.push('{');
        for (k, (i, v)) in self.indices.iter().zip(&self.values).enumerate() {
            if k > 0 {
                s.push(',');
            }
            s.push_str(&(i + 1).to_string());
            s.push(':');
            s.push_str(&super::pg_float(*v as f64, true));
        }
        s.push_str(&format!("}}/{}", self.dim));
        s
    }

    /// The dense vector of `dim` elements.
    pub fn to_dense(&self) -> Vec<f32> {
        let mut v = vec![0f32; self.dim];
        for (i, x) in self.indices.iter().zip(&self.values) {
            v[*i as usize] = *x;
        }
        v
    }

    /// pgvector's binary form.
    pub fn to_binary(&self) -> Vec<u8> {
        let n = self.values.len();
        let mut out = Vec::with_capacity(12 + 8 * n);
        out.extend_from_slice(&(self.dim as i32).to_be_bytes());
        out.extend_from_slice(&(n as i32).to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        for i in &self.indices {
            out.extend_from_slice(&(*i as i32).to_be_bytes());
        }
        for v in &self.values {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out
    }

    /// Read pgvector's binary form, checked as its text form is.
    pub fn from_binary(raw: &[u8]) -> Result<SparseVector> {
        let bad = || Error::ProtocolViolation("malformed binary sparsevec".into());
        let word = |k: usize| -> Result<[u8; 4]> {
            raw.get(4 * k..4 * k + 4)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(bad)
        };
        let dim = i32::from_be_bytes(word(0)?);
        let nnz = i32::from_be_bytes(word(1)?);
        if nnz < 0 || raw.len() != 12 + 8 * nnz as usize {
            return Err(bad());
        }
        let nnz = nnz as usize;
        let mut text = String::from("{");
        for k in 0..nnz {
            if k > 0 {
                text.push(',');
            }
            let i = i32::from_be_bytes(word(3 + k)?) as i64 + 1;
            let v = f32::from_be_bytes(word(3 + nnz + k)?);
            text.push_str(&format!("{i}:{v}"));
        }
        text.push_str(&format!("}}/{dim}"));
        SparseVector::parse(&text)
    }

    /// The squared norm.
    pub fn norm2(&self) -> f64 {
        self.values.iter().map(|x| (*x as f64) * (*x as f64)).sum()
    }

    /// The vector divided by its norm (the zero vector as it is): the inner products of
    /// two normalised vectors are their cosine similarity.
    pub fn normalized(self) -> SparseVector {
        let norm = self.norm2().sqrt();
        if norm == 0.0 {
            return self;
        }
        SparseVector {
            values: self
                .values
                .iter()
                .map(|x| (*x as f64 / norm) as f32)
                .collect(),
            ..self
        }
    }

    /// The inner product with a dense vector of the same dimension.
    pub fn dot_dense(&self, q: &[f32]) -> f64 {
        self.indices
            .iter()
            .zip(&self.values)
            .map(|(i, x)| *x as f64 * q[*i as usize] as f64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_as_pgvector_reads_and_prints_them() {
        let s = SparseVector::parse(" { 1 : 1.5 ,  3  :  3.5  } / 5 ").expect("parses");
        assert_eq!(s.text(), "{1:1.5,3:3.5}/5");
        assert_eq!(s.to_dense(), vec![1.5, 0.0, 3.5, 0.0, 0.0]);
        assert_eq!(
            SparseVector::parse("{1:0,2:1,3:0}/3")
                .expect("zeros")
                .text(),
            "{2:1}/3"
        );
        assert_eq!(SparseVector::parse("{}/5").expect("empty").text(), "{}/5");
        for (bad, code) in [
            ("", "22P02"),
            ("{", "22P02"),
            ("{}", "22P02"),
            ("{}/", "22P02"),
            ("{}/1a", "22P02"),
            ("{1:}/1", "22P02"),
            ("{1a:1}/1", "22P02"),
            ("{2:1,1:1}/2", "22000"),
            ("{1:1,1:2}/2", "22000"),
            ("{}/-1", "22000"),
            ("{0:1}/1", "22003"),
            ("{2:1}/1", "22000"),
            ("{}/1000000001", "54000"),
        ] {
            let e = SparseVector::parse(bad).expect_err(bad);
            assert_eq!(e.sqlstate(), code, "{bad}: {e}");
        }
        let s = SparseVector::parse("{2:1.5,4:-2}/6").expect("parses");
        assert_eq!(
            SparseVector::from_binary(&s.to_binary()).expect("binary"),
            s
        );
        assert_eq!(
            SparseVector::from_dense(&[0.0, 1.5, 0.0, -2.0, 0.0, 0.0]).expect("dense"),
            s
        );
        assert_eq!(s.dot_dense(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), 3.0 - 8.0);
    }
}
