//! `COPY table [(columns)] FROM STDIN` in the text and CSV formats. The data is collected,
//! then parsed whole: a malformed line fails the COPY with its line number and nothing is
//! stored; otherwise the rows are written in batches, to the row store and then the
//! index, like INSERT.

use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Ident, ObjectName,
};

use super::Session;
use super::defaults::Defaults;
use super::statements::{check_row, ident_name, table_name, write_rows};
use crate::error::{Error, Result};
use crate::store::{Row, TableDef, WriteMode};
use crate::types::Value;

/// Rows written per batch.
const BATCH: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
enum Format {
    Text,
    Csv,
}

/// A COPY FROM STDIN in progress on a session.
#[derive(Debug)]
pub struct CopyIn {
    def: std::sync::Arc<TableDef>,
    targets: Vec<usize>,
    format: Format,
    delimiter: char,
    null: String,
    header: bool,
    quote: char,
    data: Vec<u8>,
    /// More data came than the limit allows: what came is dropped, the COPY fails at its end.
    overflowed: Option<usize>,
}

impl CopyIn {
    pub fn columns(&self) -> usize {
        self.targets.len()
    }

    /// Buffer the next CopyData; past `limit` bytes in all, the COPY is doomed and its
    /// data is released at once (a client cannot make the proxy hold more).
    pub fn push(&mut self, bytes: &[u8], limit: usize) {
        if self.overflowed.is_some() {
            return;
        }
        if self.data.len() + bytes.len() > limit {
            self.overflowed = Some(limit);
            self.data = Vec::new();
            return;
        }
        self.data.extend_from_slice(bytes);
    }
}

/// Start a COPY: check the table, columns and options.
pub fn start(
    session: &Session,
    source: &CopySource,
    to: bool,
    target: &CopyTarget,
    options: &[CopyOption],
    legacy: &[CopyLegacyOption],
) -> Result<CopyIn> {
    if to || !matches!(target, CopyTarget::Stdin) {
        return Err(Error::FeatureNotSupported(
            "only COPY ... FROM STDIN is supported".into(),
        ));
    }
    let CopySource::Table {
        table_name: name,
        columns,
    } = source
    else {
        return Err(Error::FeatureNotSupported(
            "COPY (query) is not supported".into(),
        ));
    };
    let def = session
        .engine
        .core
        .table(&table_name(name as &ObjectName)?)?;
    let targets: Vec<usize> = if columns.is_empty() {
        def.visible()
    } else {
        columns
            .iter()
            .map(|c: &Ident| {
                let n = ident_name(c);
                def.column_index(&n).ok_or(Error::UndefinedColumn(n))
            })
            .collect::<Result<_>>()?
    };
    let mut copy = CopyIn {
        def,
        targets,
        format: Format::Text,
        delimiter: '\t',
        null: "\\N".into(),
        header: false,
        quote: '"',
        data: Vec::new(),
        overflowed: None,
    };
    let mut delimiter = None;
    let mut null = None;
    for o in options {
        match o {
            CopyOption::Format(f) => {
                copy.format = match f.value.to_ascii_lowercase().as_str() {
                    "text" => Format::Text,
                    "csv" => Format::Csv,
                    other => {
                        return Err(Error::FeatureNotSupported(format!(
                            "COPY format {other} is not supported"
                        )));
                    }
                }
            }
            CopyOption::Delimiter(c) => delimiter = Some(*c),
            CopyOption::Null(s) => null = Some(s.clone()),
            CopyOption::Header(h) => copy.header = *h,
            CopyOption::Quote(c) => copy.quote = *c,
            CopyOption::Encoding(e)
                if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
            other => {
                return Err(Error::FeatureNotSupported(format!(
                    "COPY option {other} is not supported"
                )));
            }
        }
    }
    for o in legacy {
        match o {
            CopyLegacyOption::Csv(opts) => {
                copy.format = Format::Csv;
                for c in opts {
                    match c {
                        CopyLegacyCsvOption::Header => copy.header = true,
                        CopyLegacyCsvOption::Quote(q) => copy.quote = *q,
                        other => {
                            return Err(Error::FeatureNotSupported(format!(
                                "COPY option {other} is not supported"
                            )));
                        }
                    }
                }
            }
            CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
            CopyLegacyOption::Null(s) => null = Some(s.clone()),
            CopyLegacyOption::Header => copy.header = true,
            other => {
                return Err(Error::FeatureNotSupported(format!(
                    "COPY option {other} is not supported"
                )));
            }
        }
    }
    if copy.format == Format::Csv {
        copy.delimiter = ',';
        copy.null = String::new();
    }
    if let Some(d) = delimiter {
        copy.delimiter = d;
    }
    if let Some(n) = null {
        copy.null = n;
    }
    Ok(copy)
}

fn unescape_text(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

/// Split one CSV record starting at `text`; returns the fields and the rest. Quoted fields
/// may hold delimiters and newlines; `None` marks an unquoted empty field (NULL).
fn csv_record<'a>(
    text: &'a str,
    delim: char,
    quote: char,
    null: &str,
) -> Result<(Vec<Option<String>>, &'a str)> {
    let mut fields = Vec::new();
    let mut chars = text.char_indices().peekable();
    let mut field = String::new();
    let mut quoted = false;
    let mut in_quotes = false;
    while let Some((i, c)) = chars.next() {
        if in_quotes {
            if c == quote {
                if chars.peek().map(|(_, n)| *n) == Some(quote) {
                    field.push(quote);
                    chars.next();
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        if c == quote {
            in_quotes = true;
            quoted = true;
        } else if c == delim {
            fields.push(if !quoted && field == null {
                None
            } else {
                Some(std::mem::take(&mut field))
            });
            field.clear();
            quoted = false;
        } else if c == '\n' {
            let f = if !quoted && field.strip_suffix('\r').unwrap_or(&field) == null {
                None
            } else {
                Some(
                    field
                        .strip_suffix('\r')
                        .map(str::to_string)
                        .unwrap_or(field),
                )
            };
            fields.push(f);
            return Ok((fields, &text[i + 1..]));
        } else {
            field.push(c);
        }
    }
    if in_quotes {
        return Err(Error::DataException("unterminated CSV quoted field".into()));
    }
    fields.push(if !quoted && field == null {
        None
    } else {
        Some(field)
    });
    Ok((fields, ""))
}

/// Parse everything received and store it; returns the row count.
pub async fn finish(session: &Session, copy: CopyIn) -> Result<usize> {
    if let Some(limit) = copy.overflowed {
        return Err(Error::ProgramLimit(format!(
            "COPY data is larger than the limit of {limit} bytes (max_copy_bytes); nothing was written, send it in parts"
        )));
    }
    let text = String::from_utf8(copy.data)
        .map_err(|_| Error::InvalidText("invalid byte sequence for encoding \"UTF8\"".into()))?;
    let def = copy.def.clone();
    let mut records: Vec<Vec<Option<String>>> = Vec::new();
    match copy.format {
        Format::Text => {
            for line in text.split('\n') {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if line == "\\." {
                    break;
                }
                if line.is_empty() && records.len() + 1 >= text.split('\n').count() {
                    continue;
                }
                records.push(
                    line.split(copy.delimiter)
                        .map(|f| {
                            if f == copy.null {
                                None
                            } else {
                                Some(unescape_text(f))
                            }
                        })
                        .collect(),
                );
            }
        }
        Format::Csv => {
            let mut rest = text.as_str();
            while !rest.is_empty() {
                if rest.starts_with("\\.") {
                    break;
                }
                let (fields, r) = csv_record(rest, copy.delimiter, copy.quote, &copy.null)
                    .map_err(|e| at_line(e, &def, records.len() + 1))?;
                records.push(fields);
                rest = r;
            }
        }
    }
    if copy.header && !records.is_empty() {
        records.remove(0);
    }
    let first_line = if copy.header { 2 } else { 1 };
    let defaults = Defaults::prepare(
        session,
        &def,
        (0..def.columns.len()).filter(|c| !copy.targets.contains(c)),
        records.len(),
    )
    .await?;
    let mut rows: Vec<Row> = Vec::with_capacity(records.len());
    for (n, fields) in records.into_iter().enumerate() {
        let line = n + first_line;
        if fields.len() != copy.targets.len() {
            return Err(at_line(
                Error::DataException(format!(
                    "{} data for {} columns",
                    if fields.len() < copy.targets.len() {
                        "missing"
                    } else {
                        "extra"
                    },
                    copy.targets.len()
                )),
                &def,
                line,
            ));
        }
        let values = fields
            .into_iter()
            .map(|f| f.map(Value::Text).unwrap_or(Value::Null))
            .collect();
        rows.push(
            check_row(&def, &copy.targets, values, &defaults)
                .map_err(|e| at_line(e, &def, line))?,
        );
    }
    let n = rows.len();
    // Every line parsed: store them, batch by batch.
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let batch: Vec<Row> = rows.by_ref().take(BATCH).collect();
        write_rows(session, &def, batch, WriteMode::InsertNew).await?;
    }
    Ok(n)
}

fn at_line(e: Error, def: &TableDef, line: usize) -> Error {
    let with = |m: String| format!("{m} (COPY {}, line {line})", def.name);
    match e {
        Error::InvalidText(m) => Error::InvalidText(with(m)),
        Error::DataException(m) => Error::DataException(with(m)),
        Error::NumericOutOfRange(m) => Error::NumericOutOfRange(with(m)),
        Error::NotNullViolation(m) => Error::NotNullViolation(with(m)),
        Error::DatatypeMismatch(m) => Error::DatatypeMismatch(with(m)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_records() {
        let (f, rest) = csv_record("1,\"a,b\",,\"\"\n2", ',', '"', "").expect("csv");
        assert_eq!(
            f,
            vec![Some("1".into()), Some("a,b".into()), None, Some("".into())]
        );
        assert_eq!(rest, "2");
        let (f, _) = csv_record("\"multi\nline\",x", ',', '"', "").expect("csv");
        assert_eq!(f, vec![Some("multi\nline".into()), Some("x".into())]);
        assert!(csv_record("\"open", ',', '"', "").is_err());
        assert_eq!(unescape_text("a\\tb\\\\c"), "a\tb\\c");
    }
}
