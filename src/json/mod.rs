//! `json` and `jsonb` values as Postgres has them.
//!
//! A `jsonb` value travels through the engine as its text in Postgres' output form
//! (keys sorted as Postgres stores them: shorter first, then bytewise; the last of
//! duplicate keys kept; numbers in `numeric`'s form; `", "` and `": "` between items), so
//! that equal values have equal text and the wire, the row stores and the vector
//! index's payload all see what `jsonb_out` would print. A `json` value is its text as
//! written, checked on the way in. [`Json`] is the parsed tree the operators and
//! functions work on.

pub mod path;

use std::cmp::Ordering;
use std::collections::HashMap;

use datafusion::arrow::datatypes::{DataType, Field};
use std::fmt::Write as _;

use crate::error::{Error, Result};

/// Which of the two JSON types a value has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Json,
    Jsonb,
}

/// The JSON type a field carries, if any.
pub fn kind_of(field: &Field) -> Option<Kind> {
    if !matches!(
        field.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) {
        return None;
    }
    match field.metadata().get(JSON_MARK).map(String::as_str) {
        Some(JSONB_NAME) => Some(Kind::Jsonb),
        Some(JSON_NAME) => Some(Kind::Json),
        _ => None,
    }
}

/// The mark is an Arrow extension type name: the query engine drops those in a cast to
/// another type (`meta::text` is text), and keeps other field metadata.
const JSON_MARK: &str = "ARROW:extension:name";
const JSONB_NAME: &str = "vectorgate.jsonb";
const JSON_NAME: &str = "vectorgate.json";

/// The field metadata that marks a column as json or jsonb.
pub fn mark(kind: Kind) -> HashMap<String, String> {
    HashMap::from([(
        JSON_MARK.to_string(),
        match kind {
            Kind::Json => JSON_NAME,
            Kind::Jsonb => JSONB_NAME,
        }
        .to_string(),
    )])
}

/// A Utf8 field marked as `json` or `jsonb`.
pub fn marked(name: &str, kind: Kind, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable).with_metadata(mark(kind))
}

/// Nesting deeper than this is refused (Postgres' stack depth check does the same).
const MAX_DEPTH: usize = 2000;

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// A number as `numeric` prints it: no exponent, the scale it was written with.
    Number(String),
    String(String),
    Array(Vec<Json>),
    /// In a jsonb value: sorted as Postgres stores keys, each key once.
    Object(Vec<(String, Json)>),
}

fn syntax(detail: impl Into<String>) -> Error {
    Error::Detailed {
        code: "22P02",
        message: "invalid input syntax for type json".into(),
        detail: detail.into(),
    }
}

/// A value for an operator's or function's misuse (SQLSTATE 22023).
pub fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidParameter(message.into())
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
    depth: usize,
    /// jsonb refuses `\u0000`; json keeps its text as written and only checks it.
    jsonb: bool,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, jsonb: bool) -> Self {
        Parser {
            s: text.as_bytes(),
            text,
            pos: 0,
            depth: 0,
            jsonb,
        }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }

    fn token_error(&self) -> Error {
        if self.pos >= self.s.len() {
            return syntax("The input string ended unexpectedly.");
        }
        let rest = &self.text[self.pos..];
        let end = rest
            .char_indices()
            .find(|&(i, c)| {
                i > 0 && !(c.is_alphanumeric() || c == '_' || c == '.' || c == '-' || c == '+')
            })
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let end = if end == 0 {
            rest.chars().next().map(char::len_utf8).unwrap_or(0)
        } else {
            end
        };
        syntax(format!("Token \"{}\" is invalid.", &rest[..end]))
    }

    /// Something other than a key where one belongs: a bad word is a bad token, as
    /// Postgres' lexer finds it first.
    fn key_error(&self, first: bool) -> Error {
        match self.s.get(self.pos) {
            None => syntax("The input string ended unexpectedly."),
            Some(c)
                if c.is_ascii_alphabetic()
                    && !["true", "false", "null"]
                        .iter()
                        .any(|w| self.s[self.pos..].starts_with(w.as_bytes())) =>
            {
                self.token_error()
            }
            Some(_) => syntax(format!(
                "Expected string{}, but found \"{}\".",
                if first { " or \"}\"" } else { "" },
                self.found()
            )),
        }
    }

    fn expect(&mut self, b: u8, what: &str) -> Result<()> {
        self.ws();
        if self.s.get(self.pos) == Some(&b) {
            self.pos += 1;
            Ok(())
        } else if self.pos >= self.s.len() {
            Err(syntax("The input string ended unexpectedly."))
        } else {
            Err(syntax(format!(
                "Expected {what}, but found \"{}\".",
                self.found()
            )))
        }
    }

    fn found(&self) -> String {
        let rest = &self.text[self.pos..];
        rest.chars().next().map(String::from).unwrap_or_default()
    }

    fn value(&mut self) -> Result<Json> {
        self.ws();
        let Some(&b) = self.s.get(self.pos) else {
            return Err(syntax("The input string ended unexpectedly."));
        };
        match b {
            b'{' => {
                self.enter()?;
                self.pos += 1;
                let mut pairs = Vec::new();
                self.ws();
                if self.s.get(self.pos) == Some(&b'}') {
                    self.pos += 1;
                } else {
                    let mut first = true;
                    loop {
                        self.ws();
                        if self.s.get(self.pos) != Some(&b'"') {
                            return Err(self.key_error(first));
                        }
                        first = false;
                        let key = self.string()?;
                        self.expect(b':', "\":\"")?;
                        let v = self.value()?;
                        pairs.push((key, v));
                        self.ws();
                        match self.s.get(self.pos) {
                            Some(b',') => self.pos += 1,
                            Some(b'}') => {
                                self.pos += 1;
                                break;
                            }
                            None => return Err(syntax("The input string ended unexpectedly.")),
                            _ => {
                                return Err(syntax(format!(
                                    "Expected \",\" or \"}}\", but found \"{}\".",
                                    self.found()
                                )));
                            }
                        }
                    }
                }
                self.depth -= 1;
                Ok(Json::Object(pairs))
            }
            b'[' => {
                self.enter()?;
                self.pos += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.pos) == Some(&b']') {
                    self.pos += 1;
                } else {
                    loop {
                        items.push(self.value()?);
                        self.ws();
                        match self.s.get(self.pos) {
                            Some(b',') => self.pos += 1,
                            Some(b']') => {
                                self.pos += 1;
                                break;
                            }
                            None => return Err(syntax("The input string ended unexpectedly.")),
                            _ => {
                                return Err(syntax(format!(
                                    "Expected \",\" or \"]\", but found \"{}\".",
                                    self.found()
                                )));
                            }
                        }
                    }
                }
                self.depth -= 1;
                Ok(Json::Array(items))
            }
            b'"' => Ok(Json::String(self.string()?)),
            b'-' | b'0'..=b'9' => {
                let start = self.pos;
                if b == b'-' {
                    self.pos += 1;
                }
                let digits = |p: &mut Self| {
                    let s = p.pos;
                    while matches!(p.s.get(p.pos), Some(b'0'..=b'9')) {
                        p.pos += 1;
                    }
                    p.pos - s
                };
                let int_start = self.pos;
                let n = digits(self);
                let leading_zero = n > 1 && self.s[int_start] == b'0';
                let mut ok = n > 0 && !leading_zero;
                if ok && self.s.get(self.pos) == Some(&b'.') {
                    self.pos += 1;
                    ok = digits(self) > 0;
                }
                if ok && matches!(self.s.get(self.pos), Some(b'e' | b'E')) {
                    self.pos += 1;
                    if matches!(self.s.get(self.pos), Some(b'+' | b'-')) {
                        self.pos += 1;
                    }
                    ok = digits(self) > 0;
                }
                // A number runs into letters (`1x`): the whole word is the bad token.
                if ok
                    && matches!(self.s.get(self.pos), Some(c) if c.is_ascii_alphanumeric() || *c == b'_')
                {
                    ok = false;
                }
                if !ok {
                    self.pos = start;
                    return Err(self.token_error());
                }
                Ok(Json::Number(canonical_number(&self.text[start..self.pos])?))
            }
            _ => {
                for (word, v) in [
                    ("true", Json::Bool(true)),
                    ("false", Json::Bool(false)),
                    ("null", Json::Null),
                ] {
                    if self.s[self.pos..].starts_with(word.as_bytes())
                        && !matches!(self.s.get(self.pos + word.len()), Some(c) if c.is_ascii_alphanumeric() || *c == b'_')
                    {
                        self.pos += word.len();
                        return Ok(v);
                    }
                }
                Err(self.token_error())
            }
        }
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Error::Detailed {
                code: "54001",
                message: "stack depth limit exceeded".into(),
                detail: String::new(),
            });
        }
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32> {
        let h = self
            .s
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| syntax("\"\\u\" must be followed by four hexadecimal digits."))?;
        let h = std::str::from_utf8(h).unwrap_or("");
        let v = u32::from_str_radix(h, 16)
            .map_err(|_| syntax("\"\\u\" must be followed by four hexadecimal digits."))?;
        self.pos += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String> {
        self.pos += 1; // the opening quote
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(&c) = self.s.get(self.pos) {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.text[start..self.pos]);
            match self.s.get(self.pos) {
                None => return Err(syntax("The input string ended unexpectedly.")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let Some(&e) = self.s.get(self.pos) else {
                        return Err(syntax("The input string ended unexpectedly."));
                    };
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp) {
                                if self.s.get(self.pos..self.pos + 2) != Some(b"\\u") {
                                    return Err(syntax(
                                        "Unicode low surrogate must follow a high surrogate.",
                                    ));
                                }
                                self.pos += 2;
                                let low = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&low) {
                                    return Err(syntax(
                                        "Unicode low surrogate must follow a high surrogate.",
                                    ));
                                }
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                            } else if (0xDC00..0xE000).contains(&cp) {
                                return Err(syntax(
                                    "Unicode low surrogate must follow a high surrogate.",
                                ));
                            }
                            if cp == 0 && self.jsonb {
                                return Err(Error::Detailed {
                                    code: "22P05",
                                    message: "unsupported Unicode escape sequence".into(),
                                    detail: "\\u0000 cannot be converted to text.".into(),
                                });
                            }
                            out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                        }
                        _ => {
                            let c = self.text[self.pos - 1..].chars().next().unwrap_or('?');
                            return Err(syntax(format!("Escape sequence \"\\{c}\" is invalid.")));
                        }
                    }
                }
                Some(_) => {
                    return Err(syntax(format!(
                        "Character with value 0x{:02x} must be escaped.",
                        self.s[self.pos]
                    )));
                }
            }
        }
    }

    fn document(mut self) -> Result<Json> {
        let v = self.value()?;
        self.ws();
        if self.pos < self.s.len() {
            return Err(self.token_error());
        }
        Ok(v)
    }
}

/// A JSON number (already checked against JSON's grammar) as `numeric` prints it:
/// `1e3` is `1000`, `1.50` stays `1.50`, `1.5e-3` is `0.0015`, `-0` is `0`.
pub fn canonical_number(lit: &str) -> Result<String> {
    let (neg, rest) = match lit.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, lit),
    };
    let (mant, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().unwrap_or(i64::MAX)),
        None => (rest, 0),
    };
    if exp.abs() > 100_000 {
        return Err(Error::NumericOutOfRange(
            "value overflows numeric format".into(),
        ));
    }
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    let digits: String = format!("{int}{frac}");
    let scale = frac.len() as i64 - exp;
    let mut body = if scale <= 0 {
        let mut d = digits;
        d.extend(std::iter::repeat_n('0', (-scale) as usize));
        d
    } else {
        let scale = scale as usize;
        let padded = if digits.len() <= scale {
            format!("{}{}", "0".repeat(scale + 1 - digits.len()), digits)
        } else {
            digits
        };
        let point = padded.len() - scale;
        format!("{}.{}", &padded[..point], &padded[point..])
    };
    // Leading zeros of the integer part go (one stays before the point).
    let int_end = body.find('.').unwrap_or(body.len());
    let zeros = body[..int_end]
        .bytes()
        .take_while(|&b| b == b'0')
        .count()
        .min(int_end - 1);
    body.drain(..zeros);
    let zero = body.bytes().all(|b| b == b'0' || b == b'.');
    Ok(if neg && !zero {
        format!("-{body}")
    } else {
        body
    })
}

/// Compare two numbers in [`canonical_number`]'s form by value.
pub fn cmp_numbers(a: &str, b: &str) -> Ordering {
    let (an, a) = a.strip_prefix('-').map(|r| (true, r)).unwrap_or((false, a));
    let (bn, b) = b.strip_prefix('-').map(|r| (true, r)).unwrap_or((false, b));
    let zero = |s: &str| s.bytes().all(|c| c == b'0' || c == b'.');
    let (an, bn) = (an && !zero(a), bn && !zero(b));
    let magnitude = || {
        let (ai, af) = a.split_once('.').unwrap_or((a, ""));
        let (bi, bf) = b.split_once('.').unwrap_or((b, ""));
        let ai = ai.trim_start_matches('0');
        let bi = bi.trim_start_matches('0');
        ai.len()
            .cmp(&bi.len())
            .then_with(|| ai.cmp(bi))
            .then_with(|| {
                let af = af.trim_end_matches('0');
                let bf = bf.trim_end_matches('0');
                af.cmp(bf)
            })
    };
    match (an, bn) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, false) => magnitude(),
        (true, true) => magnitude().reverse(),
    }
}

/// Postgres' order of jsonb keys: shorter first, then bytewise.
fn key_order(a: &str, b: &str) -> Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

impl Json {
    /// Parse `json` input: the text's own order and duplicate keys are kept.
    pub fn parse(text: &str) -> Result<Json> {
        Parser::new(text, false).document()
    }

    /// Parse `jsonb` input: keys sorted, the last of duplicates kept.
    pub fn parse_jsonb(text: &str) -> Result<Json> {
        Ok(Parser::new(text, true).document()?.normalized())
    }

    /// The jsonb form of a tree: objects sorted and without duplicate keys.
    pub fn normalized(self) -> Json {
        match self {
            Json::Array(items) => Json::Array(items.into_iter().map(Json::normalized).collect()),
            Json::Object(pairs) => {
                let mut pairs: Vec<(String, Json)> = pairs
                    .into_iter()
                    .map(|(k, v)| (k, v.normalized()))
                    .collect();
                // A stable sort keeps duplicates in input order; the last one wins.
                pairs.sort_by(|a, b| key_order(&a.0, &b.0));
                let mut out: Vec<(String, Json)> = Vec::with_capacity(pairs.len());
                for (k, v) in pairs {
                    match out.last_mut() {
                        Some(last) if last.0 == k => last.1 = v,
                        _ => out.push((k, v)),
                    }
                }
                Json::Object(out)
            }
            other => other,
        }
    }

    /// `jsonb_out`'s text.
    pub fn to_jsonb_text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(n),
            Json::String(s) => write_string(out, s),
            Json::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Json::Object(pairs) => {
                out.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_string(out, k);
                    out.push_str(": ");
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    /// `jsonb_pretty`'s text: four spaces a level.
    pub fn to_pretty(&self) -> String {
        let mut out = String::new();
        self.write_pretty(&mut out, 0);
        out
    }

    fn write_pretty(&self, out: &mut String, level: usize) {
        let indent = |out: &mut String, level: usize| {
            out.push('\n');
            out.extend(std::iter::repeat_n("    ", level));
        };
        match self {
            Json::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    indent(out, level + 1);
                    v.write_pretty(out, level + 1);
                }
                indent(out, level);
                out.push(']');
            }
            Json::Object(pairs) => {
                out.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    indent(out, level + 1);
                    write_string(out, k);
                    out.push_str(": ");
                    v.write_pretty(out, level + 1);
                }
                indent(out, level);
                out.push('}');
            }
            scalar => scalar.write(out),
        }
    }

    /// `jsonb_typeof`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "boolean",
            Json::Number(_) => "number",
            Json::String(_) => "string",
            Json::Array(_) => "array",
            Json::Object(_) => "object",
        }
    }

    /// What `->>` gives: a string's text, null as SQL NULL, anything else as jsonb text.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Json::Null => None,
            Json::String(s) => Some(s.clone()),
            other => Some(other.to_jsonb_text()),
        }
    }

    fn is_scalar(&self) -> bool {
        !matches!(self, Json::Array(_) | Json::Object(_))
    }

    /// `->` with a key: the field of an object.
    pub fn field(&self, key: &str) -> Option<&Json> {
        match self {
            // The last of duplicate keys, for json; jsonb has one.
            Json::Object(pairs) => pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// `->` with an index: an array element; negative indexes count from the end.
    pub fn element(&self, index: i64) -> Option<&Json> {
        match self {
            Json::Array(items) => {
                let i = if index < 0 {
                    items.len() as i64 + index
                } else {
                    index
                };
                usize::try_from(i).ok().and_then(|i| items.get(i))
            }
            _ => None,
        }
    }

    /// `#>`: follow a path of keys and (for arrays) integer indexes.
    pub fn at_path<S: AsRef<str>>(&self, path: &[S]) -> Option<&Json> {
        let mut v = self;
        for step in path {
            let step = step.as_ref();
            v = match v {
                Json::Object(_) => v.field(step)?,
                Json::Array(_) => v.element(step.trim().parse().ok()?)?,
                _ => return None,
            };
        }
        Some(v)
    }

    /// `jsonb @> jsonb`.
    pub fn contains(&self, other: &Json) -> bool {
        match (self, other) {
            (Json::Object(a), Json::Object(b)) => b.iter().all(|(k, bv)| {
                a.iter().find(|(ak, _)| ak == k).is_some_and(|(_, av)| {
                    if bv.is_scalar() {
                        av == bv || scalar_eq(av, bv)
                    } else {
                        same_kind(av, bv) && av.contains(bv)
                    }
                })
            }),
            (Json::Array(a), Json::Array(b)) => b.iter().all(|bv| {
                if bv.is_scalar() {
                    a.iter().any(|av| av.is_scalar() && scalar_eq(av, bv))
                } else {
                    a.iter().any(|av| same_kind(av, bv) && av.contains(bv))
                }
            }),
            // An array contains a scalar it has as an element (at the top level only).
            (Json::Array(a), b) if b.is_scalar() => {
                a.iter().any(|av| av.is_scalar() && scalar_eq(av, b))
            }
            (a, b) if a.is_scalar() && b.is_scalar() => scalar_eq(a, b),
            _ => false,
        }
    }

    /// `jsonb ? text`: a key of an object, a string element of an array, or the string
    /// itself.
    pub fn has_key(&self, key: &str) -> bool {
        match self {
            Json::Object(pairs) => pairs.iter().any(|(k, _)| k == key),
            Json::Array(items) => items
                .iter()
                .any(|v| matches!(v, Json::String(s) if s == key)),
            Json::String(s) => s == key,
            _ => false,
        }
    }

    /// `jsonb || jsonb`.
    pub fn concat(self, other: Json) -> Json {
        match (self, other) {
            (Json::Object(mut a), Json::Object(b)) => {
                for (k, v) in b {
                    match a.iter_mut().find(|(ak, _)| *ak == k) {
                        Some(slot) => slot.1 = v,
                        None => a.push((k, v)),
                    }
                }
                Json::Object(a).normalized()
            }
            (Json::Array(mut a), Json::Array(b)) => {
                a.extend(b);
                Json::Array(a)
            }
            (Json::Array(mut a), b) => {
                a.push(b);
                Json::Array(a)
            }
            (a, Json::Array(b)) => {
                let mut items = vec![a];
                items.extend(b);
                Json::Array(items)
            }
            (a, b) => Json::Array(vec![a, b]),
        }
    }

    /// `jsonb - text`: without the key, or without the array's string elements equal to it.
    pub fn minus_key(self, key: &str) -> Result<Json> {
        self.minus_keys(&[key])
    }

    /// `jsonb - text[]`.
    pub fn minus_keys<S: AsRef<str>>(self, keys: &[S]) -> Result<Json> {
        let drop = |k: &str| keys.iter().any(|d| d.as_ref() == k);
        match self {
            Json::Object(pairs) => Ok(Json::Object(
                pairs.into_iter().filter(|(k, _)| !drop(k)).collect(),
            )),
            Json::Array(items) => Ok(Json::Array(
                items
                    .into_iter()
                    .filter(|v| !matches!(v, Json::String(s) if drop(s)))
                    .collect(),
            )),
            _ => Err(invalid("cannot delete from scalar")),
        }
    }

    /// `jsonb - integer`.
    pub fn minus_index(self, index: i64) -> Result<Json> {
        match self {
            Json::Array(mut items) => {
                let i = if index < 0 {
                    items.len() as i64 + index
                } else {
                    index
                };
                if let Ok(i) = usize::try_from(i)
                    && i < items.len()
                {
                    items.remove(i);
                }
                Ok(Json::Array(items))
            }
            Json::Object(_) => Err(invalid("cannot delete from object using integer index")),
            _ => Err(invalid("cannot delete from scalar")),
        }
    }

    /// `jsonb #- text[]`.
    pub fn minus_path<S: AsRef<str>>(self, path: &[S]) -> Result<Json> {
        if self.is_scalar() {
            return Err(invalid("cannot delete path in scalar"));
        }
        let Some((last, parents)) = path.split_last() else {
            return Ok(self);
        };
        let mut root = self;
        if let Some(parent) = root.at_path_mut(parents) {
            match parent {
                Json::Object(pairs) => pairs.retain(|(k, _)| k != last.as_ref()),
                Json::Array(items) => {
                    let Ok(i) = last.as_ref().trim().parse::<i64>() else {
                        return Err(path_not_integer(path.len(), last.as_ref()));
                    };
                    let i = if i < 0 { items.len() as i64 + i } else { i };
                    if let Ok(i) = usize::try_from(i)
                        && i < items.len()
                    {
                        items.remove(i);
                    }
                }
                _ => {}
            }
        }
        Ok(root)
    }

    fn at_path_mut<S: AsRef<str>>(&mut self, path: &[S]) -> Option<&mut Json> {
        let mut v = self;
        for step in path {
            let step = step.as_ref();
            v = match v {
                Json::Object(pairs) => pairs.iter_mut().find(|(k, _)| k == step).map(|(_, v)| v)?,
                Json::Array(items) => {
                    let i: i64 = step.trim().parse().ok()?;
                    let i = if i < 0 { items.len() as i64 + i } else { i };
                    items.get_mut(usize::try_from(i).ok()?)?
                }
                _ => return None,
            };
        }
        Some(v)
    }

    /// `jsonb_set(target, path, value, create_if_missing)` and (`insert`: Some(after))
    /// `jsonb_insert(target, path, value, insert_after)`.
    pub fn set_path<S: AsRef<str>>(
        self,
        path: &[S],
        value: Json,
        create: bool,
        insert: Option<bool>,
    ) -> Result<Json> {
        if self.is_scalar() {
            return Err(invalid("cannot set path in scalar"));
        }
        let Some((last, parents)) = path.split_last() else {
            return Ok(self);
        };
        let mut root = self;
        // Integer steps through arrays are checked as Postgres does.
        {
            let mut v = &root;
            for (i, step) in parents.iter().enumerate() {
                v = match v {
                    Json::Object(_) => match v.field(step.as_ref()) {
                        Some(n) => n,
                        None => break,
                    },
                    Json::Array(_) => {
                        let Ok(n) = step.as_ref().trim().parse::<i64>() else {
                            return Err(path_not_integer(i + 1, step.as_ref()));
                        };
                        match v.element(n) {
                            Some(n) => n,
                            None => break,
                        }
                    }
                    _ => break,
                };
            }
        }
        let Some(parent) = root.at_path_mut(parents) else {
            return Ok(root);
        };
        let last = last.as_ref();
        match parent {
            Json::Object(pairs) => match pairs.iter_mut().find(|(k, _)| k == last) {
                Some(_) if insert.is_some() => {
                    return Err(invalid("cannot replace existing key"));
                }
                Some(slot) => slot.1 = value,
                None if create || insert.is_some() => {
                    pairs.push((last.to_string(), value));
                    let sorted = std::mem::replace(parent, Json::Null).normalized();
                    *parent = sorted;
                }
                None => {}
            },
            Json::Array(items) => {
                let Ok(i) = last.trim().parse::<i64>() else {
                    return Err(path_not_integer(path.len(), last));
                };
                let len = items.len() as i64;
                let idx = if i < 0 { len + i } else { i };
                match insert {
                    Some(after) => {
                        let at = if idx < 0 {
                            0
                        } else if idx >= len {
                            len
                        } else {
                            idx + i64::from(after)
                        };
                        items.insert(at as usize, value);
                    }
                    None => {
                        if (0..len).contains(&idx) {
                            items[idx as usize] = value;
                        } else if create {
                            if idx < 0 {
                                items.insert(0, value);
                            } else {
                                items.push(value);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(root)
    }

    /// `jsonb_strip_nulls`: object fields whose value is null go, at every level.
    pub fn strip_nulls(self) -> Json {
        match self {
            Json::Object(pairs) => Json::Object(
                pairs
                    .into_iter()
                    .filter(|(_, v)| *v != Json::Null)
                    .map(|(k, v)| (k, v.strip_nulls()))
                    .collect(),
            ),
            Json::Array(items) => Json::Array(items.into_iter().map(Json::strip_nulls).collect()),
            other => other,
        }
    }

    /// The number, if this is one, as a float.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(n) => n.parse().ok(),
            _ => None,
        }
    }
}

fn path_not_integer(position: usize, step: &str) -> Error {
    Error::InvalidText(format!(
        "path element at position {position} is not an integer: \"{step}\""
    ))
}

fn same_kind(a: &Json, b: &Json) -> bool {
    matches!(
        (a, b),
        (Json::Array(_), Json::Array(_)) | (Json::Object(_), Json::Object(_))
    )
}

fn scalar_eq(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => cmp_numbers(x, y) == Ordering::Equal,
        _ => a == b,
    }
}

/// jsonb's order (`jsonb_cmp`): Object > Array > Boolean > Number > String > Null,
/// containers first by size, then item by item; a top-level empty array sorts below
/// everything.
pub fn compare(a: &Json, b: &Json) -> Ordering {
    let empty_top = |v: &Json| matches!(v, Json::Array(items) if items.is_empty());
    match (empty_top(a), empty_top(b)) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Less,
        (false, true) => return Ordering::Greater,
        _ => {}
    }
    compare_inner(a, b)
}

fn rank(v: &Json) -> u8 {
    match v {
        Json::Null => 0,
        Json::String(_) => 1,
        Json::Number(_) => 2,
        Json::Bool(_) => 3,
        Json::Array(_) => 4,
        Json::Object(_) => 5,
    }
}

fn compare_inner(a: &Json, b: &Json) -> Ordering {
    match (a, b) {
        (Json::Null, Json::Null) => Ordering::Equal,
        (Json::String(x), Json::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Json::Number(x), Json::Number(y)) => cmp_numbers(x, y),
        (Json::Bool(x), Json::Bool(y)) => x.cmp(y),
        (Json::Array(x), Json::Array(y)) => x.len().cmp(&y.len()).then_with(|| {
            x.iter()
                .zip(y)
                .map(|(p, q)| compare_inner(p, q))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        }),
        (Json::Object(x), Json::Object(y)) => x.len().cmp(&y.len()).then_with(|| {
            x.iter()
                .zip(y)
                .map(|((ka, va), (kb, vb))| {
                    ka.as_bytes()
                        .cmp(kb.as_bytes())
                        .then_with(|| compare_inner(va, vb))
                })
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        }),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// A JSON string literal as Postgres writes one (`escape_json`).
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Check `json` input, keeping the text as written.
pub fn check_json(text: &str) -> Result<()> {
    Json::parse(text).map(|_| ())
}

/// `jsonb` input: its text in jsonb's output form.
pub fn jsonb_text(text: &str) -> Result<String> {
    Ok(Json::parse_jsonb(text)?.to_jsonb_text())
}

/// In a `json` text: the text of the value at `path` (keys, or integer indexes for
/// arrays), as written, for json's `->` and `#>`.
pub fn json_locate<'t, S: AsRef<str>>(text: &'t str, path: &[S]) -> Option<&'t str> {
    let mut p = Parser::new(text, false);
    for step in path {
        p.ws();
        match p.s.get(p.pos)? {
            b'{' => {
                p.pos += 1;
                let mut found = None;
                p.ws();
                if p.s.get(p.pos) == Some(&b'}') {
                    return None;
                }
                loop {
                    p.ws();
                    let key = p.string().ok()?;
                    p.expect(b':', ":").ok()?;
                    p.ws();
                    let start = p.pos;
                    p.value().ok()?;
                    if key == step.as_ref() {
                        found = Some(start); // the last duplicate wins
                    }
                    p.ws();
                    match p.s.get(p.pos)? {
                        b',' => p.pos += 1,
                        _ => break,
                    }
                }
                p.pos = found?;
            }
            b'[' => {
                let want: i64 = step.as_ref().trim().parse().ok()?;
                p.pos += 1;
                let mut starts = Vec::new();
                p.ws();
                if p.s.get(p.pos) != Some(&b']') {
                    loop {
                        p.ws();
                        starts.push(p.pos);
                        p.value().ok()?;
                        p.ws();
                        match p.s.get(p.pos)? {
                            b',' => p.pos += 1,
                            _ => break,
                        }
                    }
                }
                let i = if want < 0 {
                    starts.len() as i64 + want
                } else {
                    want
                };
                p.pos = *starts.get(usize::try_from(i).ok()?)?;
            }
            _ => return None,
        }
    }
    p.ws();
    let start = p.pos;
    p.value().ok()?;
    Some(&text[start..p.pos])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonb_text_is_postgres_output_form() {
        assert_eq!(
            jsonb_text(r#"{"bb":1,"a":[1 , 2.50,1e2], "a":true, "c":null}"#)
                .expect("valid in the test"),
            r#"{"a": true, "c": null, "bb": 1}"#
        );
        assert_eq!(
            jsonb_text(r#""\u00e9\/\n""#).expect("valid in the test"),
            "\"é/\\n\""
        );
        assert_eq!(
            canonical_number("1.5e-3").expect("valid in the test"),
            "0.0015"
        );
        assert_eq!(canonical_number("-0.0").expect("valid in the test"), "0.0");
        assert_eq!(
            canonical_number("1.50E1").expect("valid in the test"),
            "15.0"
        );
        assert_eq!(canonical_number("000").expect("valid in the test"), "0");
        assert!(jsonb_text("{\"a\":1,}").is_err());
        assert!(jsonb_text("01").is_err());
        assert!(jsonb_text(r#""\u0000""#).is_err());
        assert!(check_json(r#""\u0000""#).is_ok());
    }

    #[test]
    fn numbers_compare_by_value() {
        assert_eq!(cmp_numbers("1.0", "1"), Ordering::Equal);
        assert_eq!(cmp_numbers("-2", "1"), Ordering::Less);
        assert_eq!(cmp_numbers("-2.5", "-2.25"), Ordering::Less);
        assert_eq!(cmp_numbers("10", "9.99"), Ordering::Greater);
        assert_eq!(cmp_numbers("0.0", "-0"), Ordering::Equal);
    }

    #[test]
    fn containment_follows_postgres() {
        let j = |s: &str| Json::parse_jsonb(s).expect("valid in the test");
        assert!(j(r#"{"a":1,"b":[1,2,{"c":3}]}"#).contains(&j(r#"{"b":[{"c":3},1]}"#)));
        assert!(!j(r#"{"a":1}"#).contains(&j(r#"{"a":[1]}"#)));
        assert!(j(r#"["a","b"]"#).contains(&j(r#""a""#)));
        assert!(!j(r#""a""#).contains(&j(r#"["a"]"#)));
        assert!(j(r#"[1,[2,3]]"#).contains(&j(r#"[[3]]"#)));
        assert!(!j(r#"[1,[2,3]]"#).contains(&j(r#"[3]"#)));
        assert!(j(r#"{"n":1.0}"#).contains(&j(r#"{"n":1}"#)));
    }

    #[test]
    fn json_locate_keeps_the_text_as_written() {
        let t = r#"{"a": {"c":1,  "b":2}, "l": [10, [20,  30]], "a2": 1}"#;
        assert_eq!(json_locate(t, &["a"]), Some(r#"{"c":1,  "b":2}"#));
        assert_eq!(json_locate(t, &["l", "-1", "1"]), Some("30"));
        assert_eq!(json_locate(t, &["zz"]), None);
    }
}
