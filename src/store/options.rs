//! Index options of a table, from `CREATE TABLE ... WITH (...)` and
//! `ALTER TABLE ... SET (...)`: parsed and checked once here, then translated by each
//! vector index into its own configuration.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// How stored vectors are compressed for search (the originals are kept for rescoring).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quantization {
    #[default]
    None,
    /// One byte per dimension: about 4x less vector memory.
    Int8,
    /// One bit per dimension: about 32x less vector memory.
    Binary,
    /// Product quantization with this compression ratio (4, 8, 16, 32 or 64).
    Product(u8),
}

impl Quantization {
    fn parse(s: &str) -> Result<Quantization> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "none" | "off" => Quantization::None,
            "int8" | "scalar" => Quantization::Int8,
            "binary" => Quantization::Binary,
            "product" | "pq" => Quantization::Product(16),
            other => {
                return Err(Error::InvalidParameter(format!(
                    "unknown quantization \"{other}\": use none, int8, binary or product"
                )));
            }
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Quantization::None => "none",
            Quantization::Int8 => "int8",
            Quantization::Binary => "binary",
            Quantization::Product(_) => "product",
        }
    }
}

/// The options a vector index acts on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IndexOptions {
    pub m: Option<usize>,
    pub ef_construct: Option<usize>,
    pub quantization: Quantization,
    /// Keep quantized vectors in RAM (Qdrant's `always_ram`).
    pub always_ram: Option<bool>,
    /// The column whose values partition the table into tenants.
    pub tenant_key: Option<String>,
    /// Vectors (in KiB) a segment may hold before an HNSW graph is built for it.
    pub indexing_threshold_kb: Option<usize>,
    /// The Qdrant collection name, when not derived from the table name.
    pub collection: Option<String>,
    /// Rows expire this many seconds after they are written.
    pub ttl: Option<u64>,
}

/// A TTL: whole seconds (`86400`), or a number and a unit (`'7 days'`, `'12h'`,
/// `'30 minutes'`).
pub fn parse_ttl(s: &str) -> Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad_ttl(s))?;
    let factor = match unit.trim() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 604_800,
        _ => return Err(bad_ttl(s)),
    };
    // CQL's limit for a TTL is 20 years.
    match n.checked_mul(factor) {
        Some(secs) if (1..=630_720_000).contains(&secs) => Ok(secs),
        _ => Err(bad_ttl(s)),
    }
}

fn bad_ttl(s: &str) -> Error {
    Error::InvalidParameter(format!(
        "invalid ttl \"{s}\": use seconds or a number with a unit (seconds, minutes, hours, days, weeks), at most 20 years"
    ))
}

/// Every option name a table accepts; anything else is refused with 22023.
pub const TABLE_OPTIONS: &[&str] = &[
    "distance",
    "m",
    "ef_construct",
    "quantization",
    "always_ram",
    "compression",
    "tenant_key",
    "indexing_threshold_kb",
    "collection",
    "ttl",
    "partition_key",
    "cql_table",
    "cql_vector",
    "payload_exclude",
];

/// The options `ALTER TABLE ... SET` may change (the rest fix the table's layout).
pub const ALTERABLE_OPTIONS: &[&str] = &[
    "m",
    "ef_construct",
    "quantization",
    "always_ram",
    "compression",
    "indexing_threshold_kb",
];

fn positive(options: &BTreeMap<String, String>, key: &str, max: usize) -> Result<Option<usize>> {
    match options.get(key) {
        None => Ok(None),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 && n <= max => Ok(Some(n)),
            _ => Err(Error::InvalidParameter(format!(
                "option {key} must be an integer between 1 and {max}, got \"{v}\""
            ))),
        },
    }
}

fn boolean(options: &BTreeMap<String, String>, key: &str) -> Result<Option<bool>> {
    match options.get(key).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(None),
        Some(v) => match v.as_str() {
            "true" | "on" | "yes" | "1" => Ok(Some(true)),
            "false" | "off" | "no" | "0" => Ok(Some(false)),
            _ => Err(Error::InvalidParameter(format!(
                "option {key} must be a boolean, got \"{v}\""
            ))),
        },
    }
}

impl IndexOptions {
    /// Parse and check a table's options.
    pub fn parse(options: &BTreeMap<String, String>) -> Result<IndexOptions> {
        for k in options.keys() {
            // Kept by the proxy itself in the catalog.
            if k.starts_with("_vg_") {
                continue;
            }
            if !TABLE_OPTIONS.contains(&k.as_str()) {
                return Err(Error::InvalidParameter(format!(
                    "unrecognized table option \"{k}\" (known: {})",
                    TABLE_OPTIONS.join(", ")
                )));
            }
        }
        let mut quantization = match options.get("quantization") {
            Some(q) => Quantization::parse(q)?,
            None => Quantization::None,
        };
        if let Some(c) = options.get("compression") {
            match (
                quantization,
                c.trim().trim_start_matches(['x', 'X']).parse::<u8>(),
            ) {
                (Quantization::Product(_), Ok(r @ (4 | 8 | 16 | 32 | 64))) => {
                    quantization = Quantization::Product(r)
                }
                (Quantization::Product(_), _) => {
                    return Err(Error::InvalidParameter(format!(
                        "option compression must be one of 4, 8, 16, 32, 64, got \"{c}\""
                    )));
                }
                _ => {
                    return Err(Error::InvalidParameter(
                        "option compression applies to quantization = 'product' only".into(),
                    ));
                }
            }
        }
        let collection = options.get("collection").cloned();
        if let Some(c) = &collection
            && (c.is_empty()
                || !c
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-'))
        {
            return Err(Error::InvalidParameter(format!(
                "collection name \"{c}\" may hold only letters, digits, '_' and '-'"
            )));
        }
        Ok(IndexOptions {
            m: positive(options, "m", 256)?,
            ef_construct: positive(options, "ef_construct", 4096)?,
            quantization,
            always_ram: boolean(options, "always_ram")?,
            tenant_key: options.get("tenant_key").cloned(),
            indexing_threshold_kb: positive(options, "indexing_threshold_kb", 1 << 30)?,
            collection,
            ttl: options.get("ttl").map(|t| parse_ttl(t)).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_option() {
        let o = IndexOptions::parse(&opts(&[
            ("m", "32"),
            ("ef_construct", "200"),
            ("quantization", "product"),
            ("compression", "x32"),
            ("always_ram", "on"),
            ("tenant_key", "org_id"),
        ]))
        .expect("valid");
        assert_eq!(o.m, Some(32));
        assert_eq!(o.ef_construct, Some(200));
        assert_eq!(o.quantization, Quantization::Product(32));
        assert_eq!(o.always_ram, Some(true));
        assert_eq!(o.tenant_key.as_deref(), Some("org_id"));
        assert_eq!(parse_ttl("7 days").expect("ttl"), 604_800);
        assert_eq!(parse_ttl("90").expect("ttl"), 90);
        assert_eq!(parse_ttl("12h").expect("ttl"), 43_200);
        assert_eq!(parse_ttl(" 2 Seconds ").expect("ttl"), 2);
    }

    #[test]
    fn refuses_bad_values_with_22023() {
        for bad in [
            opts(&[("m", "0")]),
            opts(&[("m", "many")]),
            opts(&[("quantization", "int4")]),
            opts(&[("quantization", "int8"), ("compression", "16")]),
            opts(&[("quantization", "product"), ("compression", "3")]),
            opts(&[("always_ram", "maybe")]),
            opts(&[("colour", "blue")]),
            opts(&[("collection", "a b")]),
            opts(&[("ttl", "0")]),
            opts(&[("ttl", "7 fortnights")]),
            opts(&[("ttl", "99999 weeks")]),
        ] {
            let e = IndexOptions::parse(&bad).expect_err("refused");
            assert_eq!(e.sqlstate(), "22023", "{bad:?}: {e}");
        }
    }
}
