//! COPY, both ways, in the text, CSV and binary formats.
//!
//! `COPY table [(columns)] FROM STDIN` is streamed: the data is parsed as it arrives and
//! written in batches sized for the stores, so the proxy's memory stays bounded whatever
//! the size of the COPY. A bad line stops it: outside a transaction block the rows before
//! that line stay written (the error's CONTEXT says so and how many); in a block the
//! block fails, and its ROLLBACK undoes them, as it undoes any write.
//!
//! `COPY table [(columns)] TO STDOUT` and `COPY (query) TO STDOUT` run the query and
//! stream its rows out; [`Options::head`] and [`Options::row`] give the bytes the wire
//! sends (and the binary trailer, `-1` as an int16, after them).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::JoinHandle;

use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Ident, ObjectName,
    Statement,
};

use super::Session;
use super::defaults::Defaults;
use super::statements::{check_row, ident_name, index_stored, store_rows, table_name};
use crate::engine::progress::CopyProgress;
use crate::error::{Error, Result};
use crate::store::{Row, TableDef, VectorIndex, WriteMode};
use crate::types::Value;

/// Rows written per batch, at most.
const BATCH_ROWS: usize = 1000;
/// Bytes of data per batch, at most (rows of long vectors or documents come in fewer).
const BATCH_BYTES: usize = 8 << 20;
/// Batches written at once: one whose rows the row store takes, one the index takes,
/// and one made ready meanwhile.
const BATCHES_IN_FLIGHT: usize = 3;
/// Data is parsed once this much has arrived (and at the end).
const PARSE_BYTES: usize = 256 << 10;
/// The binary format's signature, flags and header extension length.
const BINARY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Csv,
    Binary,
}

/// A COPY's format and its options, as Postgres defaults them.
#[derive(Debug, Clone)]
pub struct Options {
    pub format: Format,
    delimiter: u8,
    null: String,
    header: bool,
    quote: u8,
    escape: u8,
}

/// 22P04, Postgres' code for data that is not in the COPY's format.
fn bad_copy(message: impl Into<String>) -> Error {
    Error::Detailed {
        code: "22P04",
        message: message.into(),
        detail: String::new(),
    }
}

fn one_byte(what: &str, c: char) -> Result<u8> {
    u8::try_from(c).ok().filter(u8::is_ascii).ok_or_else(|| {
        Error::FeatureNotSupported(format!("COPY {what} must be a single one-byte character"))
    })
}

impl Options {
    fn parse(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<Options> {
        let unsupported = |o: &dyn std::fmt::Display| {
            Error::FeatureNotSupported(format!("COPY option {o} is not supported"))
        };
        let mut format = Format::Text;
        let (mut delimiter, mut null, mut quote, mut escape) = (None, None, None, None);
        let mut header = false;
        for o in options {
            match o {
                CopyOption::Format(f) => {
                    format = match f.value.to_ascii_lowercase().as_str() {
                        "text" => Format::Text,
                        "csv" => Format::Csv,
                        "binary" => Format::Binary,
                        other => {
                            return Err(Error::InvalidParameter(format!(
                                "COPY format \"{other}\" not recognized"
                            )));
                        }
                    }
                }
                CopyOption::Delimiter(c) => delimiter = Some(one_byte("delimiter", *c)?),
                CopyOption::Null(s) => null = Some(s.clone()),
                CopyOption::Header(h) => header = *h,
                CopyOption::Quote(c) => quote = Some(one_byte("quote", *c)?),
                CopyOption::Escape(c) => escape = Some(one_byte("escape", *c)?),
                CopyOption::Encoding(e)
                    if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
                // An optimisation hint for a table made in the same transaction.
                CopyOption::Freeze(_) => {}
                other => return Err(unsupported(other)),
            }
        }
        for o in legacy {
            match o {
                CopyLegacyOption::Binary => format = Format::Binary,
                CopyLegacyOption::Csv(opts) => {
                    format = Format::Csv;
                    for c in opts {
                        match c {
                            CopyLegacyCsvOption::Header => header = true,
                            CopyLegacyCsvOption::Quote(q) => quote = Some(one_byte("quote", *q)?),
                            CopyLegacyCsvOption::Escape(q) => {
                                escape = Some(one_byte("escape", *q)?)
                            }
                            other => return Err(unsupported(other)),
                        }
                    }
                }
                CopyLegacyOption::Delimiter(c) => delimiter = Some(one_byte("delimiter", *c)?),
                CopyLegacyOption::Null(s) => null = Some(s.clone()),
                CopyLegacyOption::Header => header = true,
                other => return Err(unsupported(other)),
            }
        }
        let csv = format == Format::Csv;
        if format == Format::Binary && (delimiter.is_some() || null.is_some() || header) {
            return Err(Error::Syntax(
                "cannot specify DELIMITER, NULL or HEADER in BINARY mode".into(),
            ));
        }
        if !csv && (quote.is_some() || escape.is_some()) {
            return Err(Error::FeatureNotSupported(
                "COPY quote and escape are available only in CSV mode".into(),
            ));
        }
        let quote = quote.unwrap_or(b'"');
        Ok(Options {
            format,
            delimiter: delimiter.unwrap_or(if csv { b',' } else { b'\t' }),
            null: null.unwrap_or_else(|| if csv { String::new() } else { "\\N".into() }),
            header,
            quote,
            escape: escape.unwrap_or(quote),
        })
    }

    /// What COPY TO sends before its first row: the binary signature, or the header line.
    pub fn head(&self, names: &[String]) -> Vec<u8> {
        let mut out = Vec::new();
        match self.format {
            Format::Binary => {
                out.extend_from_slice(BINARY_SIGNATURE);
                out.extend_from_slice(&0i32.to_be_bytes());
                out.extend_from_slice(&0i32.to_be_bytes());
            }
            _ if self.header => {
                let cells: Vec<Option<&[u8]>> = names.iter().map(|n| Some(n.as_bytes())).collect();
                self.text_row(&cells, &mut out);
            }
            _ => {}
        }
        out
    }

    /// One row of COPY TO, from the cells of a DataRow (`count` of them in `data`, each a
    /// length and its bytes: text for text and CSV, the binary form for binary).
    pub fn row(&self, count: i16, data: &[u8], out: &mut Vec<u8>) {
        if self.format == Format::Binary {
            // A binary COPY row is a DataRow's body.
            out.extend_from_slice(&count.to_be_bytes());
            out.extend_from_slice(data);
            return;
        }
        let mut cells = Vec::with_capacity(count.max(0) as usize);
        let mut rest = data;
        for _ in 0..count {
            let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                break;
            };
            let len = i32::from_be_bytes(*len);
            if len < 0 {
                cells.push(None);
                rest = tail;
            } else {
                let len = (len as usize).min(tail.len());
                cells.push(Some(&tail[..len]));
                rest = &tail[len..];
            }
        }
        self.text_row(&cells, out);
    }

    /// A line of text or CSV, escaped or quoted as Postgres' COPY TO writes it.
    fn text_row(&self, cells: &[Option<&[u8]>], out: &mut Vec<u8>) {
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                out.push(self.delimiter);
            }
            let Some(cell) = cell else {
                out.extend_from_slice(self.null.as_bytes());
                continue;
            };
            if self.format == Format::Csv {
                let quoted = cell.iter().any(|b| {
                    *b == self.delimiter || *b == self.quote || *b == b'\n' || *b == b'\r'
                }) || *cell == self.null.as_bytes()
                    || (cells.len() == 1 && *cell == b"\\.");
                if !quoted {
                    out.extend_from_slice(cell);
                    continue;
                }
                out.push(self.quote);
                for &b in *cell {
                    if b == self.quote || b == self.escape {
                        out.push(self.escape);
                    }
                    out.push(b);
                }
                out.push(self.quote);
                continue;
            }
            for &b in *cell {
                match b {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    0x08 => out.extend_from_slice(b"\\b"),
                    0x0c => out.extend_from_slice(b"\\f"),
                    0x0b => out.extend_from_slice(b"\\v"),
                    d if d == self.delimiter => {
                        out.push(b'\\');
                        out.push(d);
                    }
                    other => out.push(other),
                }
            }
        }
        out.push(b'\n');
    }
}

/// A COPY FROM STDIN in progress on a session.
#[derive(Debug)]
pub struct CopyIn {
    def: Arc<TableDef>,
    targets: Vec<usize>,
    options: Options,
    /// Data received and not yet parsed: the start of a line still to come.
    buf: Vec<u8>,
    /// Parse again once `buf` holds this much (doubled while one line is longer).
    parse_at: usize,
    /// Records parsed and not yet written, with their line numbers, and their size.
    records: Vec<(usize, Vec<Value>)>,
    record_bytes: usize,
    /// Lines (in binary, rows) read so far.
    lines: usize,
    written: usize,
    /// The binary header was read.
    started: bool,
    /// The end marker (`\.`, or the binary trailer) was read: what follows is ignored.
    ended: bool,
    /// The COPY failed part-way: its remaining data is dropped, the error goes to the
    /// client at its end.
    failed: Option<Error>,
    /// What `pg_stat_progress_copy` shows of it.
    progress: Arc<CopyProgress>,
    /// The last batch being written while the next ones arrive and are parsed (it waits
    /// for those before it), a slot per batch in flight, and whether one failed.
    writing: Option<Writing>,
    slots: Arc<Semaphore>,
    failed_batch: Arc<AtomicBool>,
    /// Whether the table was found empty at the first batch (then the load is a bulk
    /// load for the index, which builds its graph once the COPY ends).
    looked: bool,
    bulk: Option<BulkLoad>,
}

/// A COPY into an empty table with vectors, from its first batch until it ends.
struct BulkLoad {
    index: Arc<dyn VectorIndex>,
    def: Arc<TableDef>,
}

impl BulkLoad {
    fn start(index: Arc<dyn VectorIndex>, def: Arc<TableDef>) -> BulkLoad {
        index.bulk_load(&def, true);
        BulkLoad { index, def }
    }
}

impl Drop for BulkLoad {
    fn drop(&mut self) {
        self.index.bulk_load(&self.def, false);
    }
}

impl std::fmt::Debug for BulkLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BulkLoad({})", self.def.name)
    }
}

/// What a COPY statement starts.
pub enum Started {
    /// The client sends data: [`CopyIn::push`] takes it, [`CopyIn::finish`] ends it.
    In(Box<CopyIn>),
    /// Rows go to the client: the query, the column names and the options to send them with.
    Out {
        query: Box<Statement>,
        names: Vec<String>,
        options: Options,
    },
}

/// Start a COPY: check the table, columns and options.
pub fn start(
    session: &Session,
    source: &CopySource,
    to: bool,
    target: &CopyTarget,
    options: &[CopyOption],
    legacy: &[CopyLegacyOption],
) -> Result<Started> {
    let options = Options::parse(options, legacy)?;
    match (to, target) {
        (true, CopyTarget::Stdout) => return out(session, source, options),
        (false, CopyTarget::Stdin) => {}
        (_, CopyTarget::File { .. } | CopyTarget::Program { .. }) => {
            return Err(Error::FeatureNotSupported(
                "COPY to or from a file or program on the server is not supported; use STDIN or STDOUT (psql's \\copy)".into(),
            ));
        }
        _ => {
            return Err(Error::FeatureNotSupported(
                "COPY FROM takes STDIN and COPY TO takes STDOUT".into(),
            ));
        }
    }
    let CopySource::Table {
        table_name: name,
        columns,
    } = source
    else {
        return Err(Error::Syntax("COPY (query) FROM is not valid".into()));
    };
    let def = session
        .engine
        .core
        .table(&table_name(name as &ObjectName)?)?;
    let targets = targets(&def, columns)?;
    let progress = session.engine.core.copies.start(
        session.pid(),
        session.database_name(),
        &def.name,
        "COPY FROM",
    );
    Ok(Started::In(Box::new(CopyIn {
        def,
        targets,
        options,
        buf: Vec::new(),
        parse_at: PARSE_BYTES,
        records: Vec::new(),
        record_bytes: 0,
        lines: 0,
        written: 0,
        started: false,
        ended: false,
        failed: None,
        progress,
        writing: None,
        slots: Arc::new(Semaphore::new(BATCHES_IN_FLIGHT)),
        failed_batch: Arc::new(AtomicBool::new(false)),
        looked: false,
        bulk: None,
    })))
}

/// Rows of a COPY to write, from lines `first` to `last`.
struct Batch {
    def: Arc<TableDef>,
    rows: Vec<Row>,
    first: usize,
    last: usize,
    progress: Arc<CopyProgress>,
    /// Set when the rows of a batch fail: the COPY stops taking data.
    failed: Arc<AtomicBool>,
}

/// A batch being written: `stored` answers once its rows are stored (`true`) or failed
/// (`false`; no later batch may write then); its task ends once the index has them too,
/// with how many rows it and the batches before it in its chain wrote, and the first
/// error among them.
#[derive(Debug)]
struct Writing {
    stored: oneshot::Receiver<bool>,
    task: JoinHandle<(usize, Result<()>)>,
}

impl Batch {
    /// Store the rows once the batch before (`before`) has stored its own, then hand them
    /// to the index once it has taken that batch's: so the row store takes this batch
    /// while the index takes the one before, and each takes them in order. A batch after
    /// one that failed writes nothing.
    async fn write(
        self,
        session: Arc<Session>,
        before: Option<Writing>,
        stored: oneshot::Sender<bool>,
        _permit: OwnedSemaphorePermit,
    ) -> (usize, Result<()>) {
        let (before_ok, before) = match before {
            Some(w) => (w.stored.await.unwrap_or(false), Some(w.task)),
            None => (true, None),
        };
        let earlier = async {
            match before {
                Some(task) => task.await.unwrap_or_else(|e| (0, Err(Error::internal(e)))),
                None => (0, Ok(())),
            }
        };
        if !before_ok {
            let _ = stored.send(false);
            return earlier.await;
        }
        let Batch {
            def,
            rows,
            first,
            last,
            progress,
            failed,
        } = self;
        let n = rows.len();
        let within = |e: Error| {
            if first == last {
                at(&def, e, first)
            } else {
                e.within(format!("COPY {}, in lines {first} to {last}", def.name))
            }
        };
        let kept = match store_rows(&session, &def, rows, WriteMode::InsertNew).await {
            Ok(kept) => kept,
            Err(e) => {
                failed.store(true, Ordering::Release);
                let _ = stored.send(false);
                let (m, done) = earlier.await;
                return (m, done.and(Err(within(e))));
            }
        };
        progress.written(n);
        let _ = stored.send(true);
        let (m, done) = earlier.await;
        let indexed = index_stored(&session, &def, kept).await;
        (m + n, done.and(indexed.map_err(within)))
    }
}

/// An error of a COPY's line.
fn at(def: &TableDef, e: Error, line: usize) -> Error {
    e.within(format!("COPY {}, line {line}", def.name))
}

/// The columns a COPY names (all the visible ones if it names none).
fn targets(def: &TableDef, columns: &[Ident]) -> Result<Vec<usize>> {
    if columns.is_empty() {
        return Ok(def.visible());
    }
    columns
        .iter()
        .map(|c| {
            let n = ident_name(c);
            def.column_index(&n).ok_or(Error::UndefinedColumn(n))
        })
        .collect()
}

/// A COPY TO: the query whose rows it sends.
fn out(session: &Session, source: &CopySource, options: Options) -> Result<Started> {
    let (query, names) = match source {
        CopySource::Query(q) => (Box::new(Statement::Query(q.clone())), Vec::new()),
        CopySource::Table {
            table_name: name,
            columns,
        } => {
            let def = session.engine.core.table(&table_name(name)?)?;
            let names: Vec<String> = targets(&def, columns)?
                .into_iter()
                .map(|c| def.columns[c].name.clone())
                .collect();
            let list: Vec<String> = names.iter().map(|n| quoted(n)).collect();
            let sql = format!("SELECT {} FROM {name}", list.join(", "));
            let mut stmts = datafusion::sql::sqlparser::parser::Parser::parse_sql(
                &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
                &sql,
            )
            .map_err(|e| Error::Syntax(e.to_string()))?;
            let query = stmts
                .pop()
                .ok_or_else(|| Error::internal("COPY TO made no query"))?;
            (Box::new(query), names)
        }
    };
    Ok(Started::Out {
        query,
        names,
        options,
    })
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl CopyIn {
    pub fn columns(&self) -> usize {
        self.targets.len()
    }

    pub fn binary(&self) -> bool {
        self.options.format == Format::Binary
    }

    /// The next CopyData: parsed once enough has come, its rows written batch by batch.
    /// Past `cap` bytes in all (`max_copy_bytes`, if set) the COPY fails.
    pub async fn push(&mut self, session: &Arc<Session>, bytes: &[u8], cap: Option<usize>) {
        if self.failed.is_some() || self.ended {
            return;
        }
        self.progress.received(bytes.len());
        if let Some(cap) = cap
            && self.progress.bytes() > cap as u64
        {
            let e = Error::ProgramLimit(format!(
                "COPY data is larger than the limit of {cap} bytes (max_copy_bytes)"
            ));
            self.failed = Some(self.failure(session, e).await);
            return;
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() < self.parse_at {
            return;
        }
        if let Err(e) = self.step(session, false).await {
            self.failed = Some(self.failure(session, e).await);
        }
        self.parse_at = PARSE_BYTES.max(self.buf.len() * 2);
    }

    /// The end of the data: the rest is parsed and written; returns the row count.
    pub async fn finish(mut self, session: &Arc<Session>) -> Result<usize> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let done = match self.step(session, true).await {
            Ok(()) => self.written().await,
            Err(e) => Err(e),
        };
        match done {
            Ok(()) => Ok(self.written),
            Err(e) => Err(self.failure(session, e).await),
        }
    }

    /// The client gave up (CopyFail): the rows written so far, to say so.
    pub async fn abandon(mut self, session: &Session, e: Error) -> Error {
        self.failure(session, e).await
    }

    /// Wait for the batches being written; count their rows.
    async fn written(&mut self) -> Result<()> {
        let Some(writing) = self.writing.take() else {
            return Ok(());
        };
        let (n, done) = writing.task.await.map_err(Error::internal)?;
        self.written += n;
        done
    }

    /// An error that ends the COPY, with what it leaves written outside a block, once
    /// the batch being written is; if that batch failed, its error is the one (its lines
    /// come first).
    async fn failure(&mut self, session: &Session, e: Error) -> Error {
        let e = match self.written().await {
            Ok(()) => e,
            Err(first) => first,
        };
        if self.written == 0 || session.tx.active() {
            return e;
        }
        let kept = match self.written {
            1 => format!(
                "COPY {}: the row before this was written and stays",
                self.def.name
            ),
            n => format!(
                "COPY {}: the {n} rows before this were written and stay",
                self.def.name
            ),
        };
        e.within(kept)
    }

    /// Parse what `buf` holds (all of it `at_end`, else up to its last whole record),
    /// writing each batch as it fills; at the end, the last batch too.
    async fn step(&mut self, session: &Arc<Session>, at_end: bool) -> Result<()> {
        let parsed = match self.options.format {
            Format::Binary => self.parse_binary(at_end),
            _ => self.parse_text(at_end),
        };
        // What parsed before a bad line is written, then the error stands.
        let parsed = match parsed {
            Ok(()) => Ok(()),
            Err(e) => {
                self.write_batches(session, true).await?;
                return Err(e);
            }
        };
        self.write_batches(session, at_end).await?;
        parsed
    }

    /// A COPY into an empty table with vectors, outside a transaction block, is a bulk
    /// load: the index builds its graph once, after the rows, instead of again and again
    /// as they arrive.
    async fn bulk_load(&self, session: &Session) -> Result<Option<BulkLoad>> {
        if !self.def.indexed() || session.tx.active() {
            return Ok(None);
        }
        let core = &session.engine.core;
        let mut first = core.rows.scan(&self.def, 1, Some(1));
        let empty = match first.next().await {
            None => true,
            Some(batch) => batch?.is_empty(),
        };
        if !empty {
            return Ok(None);
        }
        let (index, def) = (core.index.clone(), self.def.clone());
        let bulk = tokio::task::spawn_blocking(move || BulkLoad::start(index, def))
            .await
            .map_err(Error::internal)?;
        Ok(Some(bulk))
    }

    /// Write what is parsed, in batches of up to [`BATCH_ROWS`], once there is a batch's
    /// worth (rows or bytes), or `all` of it. The rows of a batch are made here, in line
    /// order (defaults may draw from sequences); each is written in a task of its own
    /// (see [`Batch::write`]), up to [`BATCHES_IN_FLIGHT`] at once, while the next ones
    /// arrive and are parsed. A record that cannot be a row ends the COPY there, once
    /// the rows before it are written.
    async fn write_batches(&mut self, session: &Arc<Session>, all: bool) -> Result<()> {
        let full = self.records.len() >= BATCH_ROWS || self.record_bytes >= BATCH_BYTES;
        if !(full || all) {
            return Ok(());
        }
        if !self.looked && !self.records.is_empty() {
            self.looked = true;
            self.bulk = self.bulk_load(session).await?;
        }
        while !self.records.is_empty() {
            if self.failed_batch.load(Ordering::Acquire) {
                // Its error, after the batches before it.
                self.written().await?;
                return Err(Error::internal("a COPY batch failed without an error"));
            }
            let n = self.records.len().min(BATCH_ROWS);
            let records: Vec<(usize, Vec<Value>)> = self.records.drain(..n).collect();
            let (batch, bad) = self.batch(session, records).await?;
            if !batch.rows.is_empty() {
                let permit = self
                    .slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(Error::internal)?;
                let (stored, answer) = oneshot::channel();
                let task =
                    tokio::spawn(batch.write(session.clone(), self.writing.take(), stored, permit));
                self.writing = Some(Writing {
                    stored: answer,
                    task,
                });
            }
            if let Some(e) = bad {
                return Err(e);
            }
        }
        self.record_bytes = 0;
        Ok(())
    }

    /// The rows of `records` (defaults, types, NOT NULL) up to the first that cannot be a
    /// row, and that one's error.
    async fn batch(
        &self,
        session: &Session,
        records: Vec<(usize, Vec<Value>)>,
    ) -> Result<(Batch, Option<Error>)> {
        let first = records.first().map_or(0, |(line, _)| *line);
        let defaults = Defaults::prepare(
            session,
            &self.def,
            (0..self.def.columns.len()).filter(|c| !self.targets.contains(c)),
            records.len(),
        )
        .await?;
        let mut rows: Vec<Row> = Vec::with_capacity(records.len());
        let mut last = first;
        let mut bad = None;
        for (line, values) in records {
            match check_row(&self.def, &self.targets, values, &defaults) {
                Ok(row) => {
                    rows.push(row);
                    last = line;
                }
                Err(e) => {
                    bad = Some(self.at(e, line));
                    break;
                }
            }
        }
        let batch = Batch {
            def: self.def.clone(),
            rows,
            first,
            last,
            progress: self.progress.clone(),
            failed: self.failed_batch.clone(),
        };
        Ok((batch, bad))
    }

    /// A record, checked for its field count.
    fn record(&mut self, line: usize, values: Vec<Value>, bytes: usize) -> Result<()> {
        if values.len() != self.targets.len() {
            let e = if values.len() < self.targets.len() {
                bad_copy(format!(
                    "missing data for column \"{}\"",
                    self.def.columns[self.targets[values.len()]].name
                ))
            } else {
                bad_copy("extra data after last expected column")
            };
            return Err(self.at(e, line));
        }
        self.records.push((line, values));
        self.record_bytes += bytes;
        Ok(())
    }

    fn at(&self, e: Error, line: usize) -> Error {
        at(&self.def, e, line)
    }

    /// Text and CSV: every whole line (CSV: record, whose quoted fields may hold line
    /// breaks) in `buf`.
    fn parse_text(&mut self, at_end: bool) -> Result<()> {
        let csv = self.options.format == Format::Csv;
        let end = if at_end {
            self.buf.len()
        } else if csv {
            csv_whole(&self.buf, self.options.quote, self.options.escape)
        } else {
            self.buf
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1)
        };
        if end == 0 {
            return Ok(());
        }
        let chunk: Vec<u8> = self.buf.drain(..end).collect();
        let mut rest = &chunk[..];
        while !rest.is_empty() && !self.ended {
            let line_no = self.lines + 1;
            let (record, tail) = if csv {
                match csv_breaks(rest, self.options.quote, self.options.escape).next() {
                    Some(n) => rest.split_at(n),
                    None => (rest, &[][..]),
                }
            } else {
                match rest.iter().position(|b| *b == b'\n') {
                    Some(i) => rest.split_at(i + 1),
                    None => (rest, &[][..]),
                }
            };
            rest = tail;
            self.lines += record.iter().filter(|b| **b == b'\n').count().max(1);
            let line = record.strip_suffix(b"\n").unwrap_or(record);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line == b"\\." {
                self.ended = true;
                break;
            }
            if self.options.header && line_no == 1 {
                continue;
            }
            let text = std::str::from_utf8(line).map_err(|e| {
                let byte = line[e.valid_up_to()];
                self.at(
                    Error::Detailed {
                        code: "22021",
                        message: format!(
                            "invalid byte sequence for encoding \"UTF8\": 0x{byte:02x}"
                        ),
                        detail: String::new(),
                    },
                    line_no,
                )
            })?;
            let values = if csv {
                csv_fields(text, &self.options).map_err(|e| self.at(e, line_no))?
            } else {
                text_fields(text, &self.options)
            };
            self.record(line_no, values, line.len())?;
        }
        Ok(())
    }

    /// Binary: the header, then every whole row in `buf`.
    fn parse_binary(&mut self, at_end: bool) -> Result<()> {
        let mut pos = 0;
        let buf = std::mem::take(&mut self.buf);
        let result = self.binary_rows(&buf, &mut pos, at_end);
        self.buf = buf;
        self.buf.drain(..pos);
        result
    }

    fn binary_rows(&mut self, buf: &[u8], pos: &mut usize, at_end: bool) -> Result<()> {
        let eof = || bad_copy("unexpected EOF in COPY data");
        if !self.started {
            let fixed = BINARY_SIGNATURE.len() + 8;
            if buf.len() < fixed {
                return if at_end {
                    Err(bad_copy("COPY file signature not recognized"))
                } else {
                    Ok(())
                };
            }
            if &buf[..BINARY_SIGNATURE.len()] != BINARY_SIGNATURE {
                return Err(bad_copy("COPY file signature not recognized"));
            }
            let flags = i32::from_be_bytes(buf[11..15].try_into().unwrap_or_default());
            // Bits 16-31 are critical (16: rows carry OIDs, which Postgres 12+ refuses too).
            if flags as u32 & 0xffff_0000 != 0 {
                return Err(bad_copy("unrecognized critical flags in COPY file header"));
            }
            let ext = i32::from_be_bytes(buf[15..19].try_into().unwrap_or_default());
            let ext = usize::try_from(ext)
                .map_err(|_| bad_copy("invalid COPY file header (missing length)"))?;
            if buf.len() < fixed + ext {
                return if at_end { Err(eof()) } else { Ok(()) };
            }
            *pos = fixed + ext;
            self.started = true;
        }
        let types: Vec<u32> = self
            .targets
            .iter()
            .map(|&c| super::catalog::pg_type_of(&self.def.columns[c].ty).0 as u32)
            .collect();
        loop {
            let start = *pos;
            let Some(count) = buf.get(start..start + 2) else {
                break;
            };
            let count = i16::from_be_bytes([count[0], count[1]]);
            if count == -1 {
                self.ended = true;
                *pos = start + 2;
                return Ok(());
            }
            let line = self.lines + 1;
            if count as usize != self.targets.len() || count < 0 {
                return Err(self.at(
                    bad_copy(format!(
                        "row field count is {count}, expected {}",
                        self.targets.len()
                    )),
                    line,
                ));
            }
            let mut at = start + 2;
            let mut fields: Vec<Option<&[u8]>> = Vec::with_capacity(count as usize);
            let mut whole = true;
            for _ in 0..count {
                let Some(len) = buf.get(at..at + 4) else {
                    whole = false;
                    break;
                };
                let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
                at += 4;
                if len < 0 {
                    fields.push(None);
                    continue;
                }
                let Some(raw) = buf.get(at..at + len as usize) else {
                    whole = false;
                    break;
                };
                fields.push(Some(raw));
                at += len as usize;
            }
            if !whole {
                break;
            }
            let values = fields
                .into_iter()
                .zip(&types)
                .map(|(f, oid)| match f {
                    None => Ok(Value::Null),
                    Some(raw) => crate::types::binary::decode_oid(*oid, raw),
                })
                .collect::<Result<Vec<_>>>()
                .map_err(|e| self.at(e, line))?;
            self.lines += 1;
            *pos = at;
            self.record(line, values, at - start)?;
        }
        if at_end && *pos < buf.len() {
            return Err(self.at(eof(), self.lines + 1));
        }
        if at_end && !self.ended && self.started {
            // Postgres takes a binary COPY without its trailer as ended too.
            self.ended = true;
        }
        Ok(())
    }
}

/// The length of the whole CSV records at the start of `data`: up to just after the
/// last line break outside quotes (0 if there is none).
fn csv_whole(data: &[u8], quote: u8, escape: u8) -> usize {
    csv_breaks(data, quote, escape).last().unwrap_or(0)
}

/// Where each CSV record of `data` ends: just after each line break outside quotes.
fn csv_breaks(data: &[u8], quote: u8, escape: u8) -> impl Iterator<Item = usize> + '_ {
    let (mut quoted, mut i) = (false, 0);
    std::iter::from_fn(move || {
        while i < data.len() {
            let b = data[i];
            i += 1;
            if quoted {
                if b == escape
                    && escape != quote
                    && matches!(data.get(i), Some(&n) if n == quote || n == escape)
                {
                    i += 1;
                } else if b == quote {
                    quoted = false;
                }
            } else if b == quote {
                quoted = true;
            } else if b == b'\n' {
                return Some(i);
            }
        }
        None
    })
}

/// A text-format line's fields: split at the delimiter, `\N` (the NULL string) as NULL,
/// backslash escapes undone.
fn text_fields(line: &str, options: &Options) -> Vec<Value> {
    line.split(options.delimiter as char)
        .map(|f| {
            if f == options.null {
                Value::Null
            } else {
                Value::Text(unescape_text(f))
            }
        })
        .collect()
}

fn unescape_text(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_string();
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars().peekable();
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
            // `\x41`: a byte in hex; `\101`: in octal.
            Some('x') if chars.peek().is_some_and(char::is_ascii_hexdigit) => {
                let mut v = 0u32;
                for _ in 0..2 {
                    match chars.peek().and_then(|c| c.to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            chars.next();
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
            }
            Some(d @ '0'..='7') => {
                let mut v = d.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match chars.peek().and_then(|c| c.to_digit(8)) {
                        Some(d) => {
                            v = v * 8 + d;
                            chars.next();
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
            }
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

/// One CSV record's fields. Quoted fields may hold delimiters and line breaks; an
/// unquoted field equal to the NULL string (by default, empty) is NULL.
fn csv_fields(record: &str, options: &Options) -> Result<Vec<Value>> {
    let (delim, quote, escape) = (
        options.delimiter as char,
        options.quote as char,
        options.escape as char,
    );
    let mut fields = Vec::new();
    let mut chars = record.chars().peekable();
    let mut field = String::new();
    let (mut quoted, mut in_quotes) = (false, false);
    let mut end = |field: &mut String, quoted: bool| {
        fields.push(if !quoted && *field == options.null {
            Value::Null
        } else {
            Value::Text(std::mem::take(field))
        });
        field.clear();
    };
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == escape
                && chars
                    .peek()
                    .is_some_and(|n| *n == quote || (*n == escape && escape != quote))
            {
                field.push(chars.next().unwrap_or(quote));
            } else if c == quote {
                in_quotes = false;
            } else {
                field.push(c);
            }
        } else if c == quote {
            in_quotes = true;
            quoted = true;
        } else if c == delim {
            end(&mut field, quoted);
            quoted = false;
        } else {
            field.push(c);
        }
    }
    if in_quotes {
        return Err(bad_copy("unterminated CSV quoted field"));
    }
    end(&mut field, quoted);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv() -> Options {
        Options::parse(&[CopyOption::Format(Ident::new("csv"))], &[]).expect("options")
    }

    #[test]
    fn csv_records() {
        let o = csv();
        assert_eq!(
            csv_fields("1,\"a,b\",,\"\"", &o).expect("csv"),
            vec![
                Value::Text("1".into()),
                Value::Text("a,b".into()),
                Value::Null,
                Value::Text("".into())
            ]
        );
        assert_eq!(
            csv_fields("\"multi\nline\",\"say \"\"hi\"\"\"", &o).expect("csv"),
            vec![
                Value::Text("multi\nline".into()),
                Value::Text("say \"hi\"".into())
            ]
        );
        assert!(csv_fields("\"open", &o).is_err());
        // Whole records end at a line break outside quotes.
        assert_eq!(csv_whole(b"1,\"a\nb\"\n2,\"c", b'"', b'"'), 8);
        assert_eq!(csv_whole(b"1,\"a\nb", b'"', b'"'), 0);
        assert_eq!(unescape_text("a\\tb\\\\c\\x41\\101"), "a\tb\\cAA");
    }

    #[test]
    fn rows_out_are_escaped_and_quoted_as_postgres_writes_them() {
        let cells = |v: &[Option<&str>]| -> (i16, Vec<u8>) {
            let mut data = Vec::new();
            for c in v {
                match c {
                    None => data.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(s) => {
                        data.extend_from_slice(&(s.len() as i32).to_be_bytes());
                        data.extend_from_slice(s.as_bytes());
                    }
                }
            }
            (v.len() as i16, data)
        };
        let text = Options::parse(&[], &[]).expect("text");
        let (n, data) = cells(&[Some("a\tb\\c\nd"), None, Some("")]);
        let mut out = Vec::new();
        text.row(n, &data, &mut out);
        assert_eq!(out, b"a\\tb\\\\c\\nd\t\\N\t\n");
        let o = csv();
        let (n, data) = cells(&[
            Some("x,y"),
            None,
            Some(""),
            Some("say \"hi\""),
            Some("plain"),
        ]);
        let mut out = Vec::new();
        o.row(n, &data, &mut out);
        assert_eq!(out, b"\"x,y\",,\"\",\"say \"\"hi\"\"\",plain\n");
    }
}
