//! Primary keys as bytes: an order-preserving encoding used as the embedded row store's
//! key, carried in the index payload (hex) to map hits back to rows, and hashed into
//! the deterministic point id.

use crate::error::{Error, Result};
use crate::types::Value;

/// Payload field holding the hex-encoded primary key of a point.
pub const KEY_FIELD: &str = "_vg_key";

const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x7665_6374_6f72_6761_7465_0000_0000_0001);

/// The point id of a row: a name-based UUID of table and key, so every proxy derives
/// the same id for the same row.
pub fn point_id(table: &str, key: &[Value]) -> uuid::Uuid {
    let mut bytes = table.as_bytes().to_vec();
    bytes.push(0);
    bytes.extend(encode(key));
    uuid::Uuid::new_v5(&NAMESPACE, &bytes)
}

pub fn encode(key: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    for v in key {
        match v {
            Value::Null => out.push(0x00),
            Value::Bool(b) => {
                out.push(0x01);
                out.push(*b as u8);
            }
            Value::Int(i) => {
                out.push(0x02);
                out.extend(((*i as u64) ^ (1 << 63)).to_be_bytes());
            }
            Value::Float(f) => {
                out.push(0x03);
                let bits = f.to_bits();
                let ordered = if bits >> 63 == 1 {
                    !bits
                } else {
                    bits | (1 << 63)
                };
                out.extend(ordered.to_be_bytes());
            }
            Value::Text(s) => {
                out.push(0x04);
                for b in s.as_bytes() {
                    if *b == 0 {
                        out.extend([0, 0xff]);
                    } else {
                        out.push(*b);
                    }
                }
                out.extend([0, 0]);
            }
            Value::Uuid(u) => {
                out.push(0x05);
                out.extend(u.as_bytes());
            }
            Value::Timestamp(t) => {
                out.push(0x06);
                out.extend(((*t as u64) ^ (1 << 63)).to_be_bytes());
            }
            Value::Date(d) => {
                out.push(0x07);
                out.extend(((*d as u32) ^ (1 << 31)).to_be_bytes());
            }
            // Arrays and vectors are never key columns.
            Value::TextArray(_)
            | Value::IntArray(_)
            | Value::Array(_)
            | Value::Vector(_)
            | Value::Bytes(_)
            | Value::Decimal(..) => out.push(0xfe),
        }
    }
    out
}

pub fn decode(mut b: &[u8]) -> Result<Vec<Value>> {
    let bad = || Error::internal("corrupt key encoding");
    let mut out = Vec::new();
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (h, t) = b.split_at(n);
        *b = t;
        Some(h)
    }
    while let Some((&tag, rest)) = b.split_first() {
        b = rest;
        out.push(match tag {
            0x00 => Value::Null,
            0x01 => Value::Bool(take(&mut b, 1).ok_or_else(bad)?[0] != 0),
            0x02 | 0x06 => {
                let raw = u64::from_be_bytes(
                    take(&mut b, 8)
                        .ok_or_else(bad)?
                        .try_into()
                        .map_err(|_| bad())?,
                );
                let i = (raw ^ (1 << 63)) as i64;
                if tag == 0x02 {
                    Value::Int(i)
                } else {
                    Value::Timestamp(i)
                }
            }
            0x03 => {
                let raw = u64::from_be_bytes(
                    take(&mut b, 8)
                        .ok_or_else(bad)?
                        .try_into()
                        .map_err(|_| bad())?,
                );
                let bits = if raw >> 63 == 1 {
                    raw & !(1 << 63)
                } else {
                    !raw
                };
                Value::Float(f64::from_bits(bits))
            }
            0x04 => {
                let mut s = Vec::new();
                loop {
                    let c = *take(&mut b, 1).ok_or_else(bad)?.first().ok_or_else(bad)?;
                    if c == 0 {
                        let n = *take(&mut b, 1).ok_or_else(bad)?.first().ok_or_else(bad)?;
                        if n == 0 {
                            break;
                        }
                        s.push(0);
                    } else {
                        s.push(c);
                    }
                }
                Value::Text(String::from_utf8(s).map_err(|_| bad())?)
            }
            0x05 => Value::Uuid(
                uuid::Uuid::from_slice(take(&mut b, 16).ok_or_else(bad)?).map_err(|_| bad())?,
            ),
            0x07 => {
                let raw = u32::from_be_bytes(
                    take(&mut b, 4)
                        .ok_or_else(bad)?
                        .try_into()
                        .map_err(|_| bad())?,
                );
                Value::Date((raw ^ (1 << 31)) as i32)
            }
            _ => return Err(bad()),
        });
    }
    Ok(out)
}

pub fn encode_hex(key: &[Value]) -> String {
    encode(key).iter().map(|b| format!("{b:02x}")).collect()
}

pub fn decode_hex(s: &str) -> Result<Vec<Value>> {
    if !s.len().is_multiple_of(2) {
        return Err(Error::internal("corrupt key encoding"));
    }
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16))
        .collect::<std::result::Result<Vec<u8>, _>>()
        .map_err(|_| Error::internal("corrupt key encoding"))?;
    decode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_keep_order() {
        let keys = vec![
            vec![Value::Int(-5)],
            vec![Value::Int(0)],
            vec![Value::Int(7), Value::Text("a\0b".into())],
            vec![
                Value::Text("zz".into()),
                Value::Uuid(uuid::Uuid::from_u128(9)),
            ],
            vec![Value::Date(-3), Value::Timestamp(12345)],
        ];
        for k in &keys {
            assert_eq!(&decode(&encode(k)).expect("decode"), k);
            assert_eq!(&decode_hex(&encode_hex(k)).expect("decode"), k);
        }
        assert!(encode(&[Value::Int(-5)]) < encode(&[Value::Int(3)]));
        assert!(encode(&[Value::Text("a".into())]) < encode(&[Value::Text("ab".into())]));
        assert_eq!(point_id("t", &keys[0]), point_id("t", &keys[0]));
        assert_ne!(point_id("t", &keys[0]), point_id("u", &keys[0]));
    }
}
