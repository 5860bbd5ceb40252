//! Changes to the catalog that touch both stores: creating, dropping and re-optioning a
//! table. The SQL layer checks a statement and builds the [`TableDef`]; these carry it
//! out, so that a failure leaves both stores and the catalog as they were.

use crate::error::{Error, Result};
use crate::store::{Distance, Names, Row, TableDef};
use crate::types::Value;

use super::{Core, Notices, health};

/// Create a table: rows first, then its collection. With the index away the table is
/// usable at once (searches scan the rows) and its collection is made on recovery.
pub async fn create_table(core: &Core, def: TableDef, notices: &Notices) -> Result<()> {
    if core.has_table(&def.name) {
        return Err(Error::DuplicateTable(def.name));
    }
    let _changing = core.changing(&def.name);
    core.rows.create_table(&def).await?;
    let created = if !def.indexed() {
        Ok(())
    } else if core.health.writable() {
        core.index.create_collection(&def).await
    } else {
        Err(Error::Unavailable {
            store: "vector index",
            message: "its circuit breaker is open".into(),
        })
    };
    match created {
        Ok(()) => {}
        Err(e) if health::is_index_failure(&e) => {
            core.health.trip(&e);
            notices.push(format!(
                "the vector index is unavailable: the index of \"{}\" is created when it is back; searches scan the rows until then",
                def.name
            ));
        }
        Err(e) => {
            let _ = core.rows.drop_table(&def).await;
            return Err(e);
        }
    }
    core.replace_table(def);
    Ok(())
}

/// Drop a table and its collection; false if there was no such table.
pub async fn drop_table(core: &Core, name: &str) -> Result<bool> {
    let _changing = core.changing(name);
    let Some(def) = core.remove_table(name) else {
        return Ok(false);
    };
    if def.indexed()
        && let Err(e) = core.index.drop_collection(&def).await
    {
        // Dropped anyway: a collection left behind is replaced if the name is reused.
        tracing::warn!(table = %name, error = %e, "the table's vector collection could not be dropped");
    }
    core.rows.drop_table(&def).await?;
    Ok(true)
}

/// Rename a table. Only its catalog entry moves: its rows, points and collection stay
/// under its stored name. Foreign keys that reference it (its own included) follow.
pub async fn rename_table(core: &Core, def: &TableDef, to: &str) -> Result<()> {
    if core.has_table(to) {
        return Err(Error::DuplicateTable(to.to_string()));
    }
    let _changing = core.changing(&def.name);
    let _changing_new = core.changing(to);
    let mut new = def.clone();
    let stored = def.stored_name().to_string();
    new.stored = (stored != to).then_some(stored);
    new.pk_constraint = Some(def.pk_name());
    new.name = to.to_string();
    let follow = |d: &mut TableDef| {
        for f in &mut d.foreign_keys {
            if f.table == def.name {
                f.table = to.to_string();
            }
        }
    };
    follow(&mut new);
    core.rows.rename_table(&def.name, &new).await?;
    core.remove_table(&def.name);
    core.replace_table(new);
    for child in core.tables() {
        if child.name != to && child.foreign_keys.iter().any(|f| f.table == def.name) {
            let mut child = (*child).clone();
            follow(&mut child);
            core.rows.update_table(&child).await?;
            core.replace_table(child);
        }
    }
    Ok(())
}

/// Apply changed index options: the index first (a failure leaves everything as it
/// was), then the row store's catalog, then the engine's. An index that rebuilds in the
/// background (a Qdrant server) answers searches exactly until it is done; the NOTICE
/// says so.
pub async fn set_options(core: &Core, new: TableDef, notices: &Notices) -> Result<()> {
    let _changing = core.changing(&new.name);
    if !core.health.writable() {
        return Err(Error::Unavailable {
            store: "vector index",
            message: "index options cannot be changed while it is away".into(),
        });
    }
    core.index.update_collection(&new).await.inspect_err(|e| {
        if health::is_index_failure(e) {
            core.health.trip(e);
        }
    })?;
    core.rows.update_table(&new).await?;
    if core.index.rebuilding(&new).await.unwrap_or(false) {
        notices.push(format!(
            "the vector index of \"{}\" is being rebuilt with the new options: until it is done, searches of it are exact (and slower)",
            new.name
        ));
    }
    core.replace_table(new);
    Ok(())
}

/// Search a vector column by another distance (`None`: one the index cannot serve, so
/// the column leaves it and its searches read the rows): the table's collection is
/// rebuilt from the rows.
pub async fn set_distance(
    core: &Core,
    def: &TableDef,
    column: usize,
    distance: Option<Distance>,
) -> Result<()> {
    let mut vectors: Vec<_> = def
        .vectors()
        .into_iter()
        .filter(|(c, _)| *c != column)
        .collect();
    vectors.extend(distance.map(|d| (column, d)));
    let mut new = def.clone();
    new.set_vectors(vectors);
    rebuild_index(core, def, new).await
}

/// Put `new` in place of `def` where the collection's shape changes (its vectors): the
/// collection is made again and filled from the rows.
pub async fn rebuild_index(core: &Core, def: &TableDef, new: TableDef) -> Result<()> {
    index_writable(core)?;
    let _changing = core.changing(&def.name);
    // Between the drop and the end of the backfill the collection holds only part of the
    // table: searches scan the rows meanwhile.
    let _rebuilding = core.begin_rebuild(&def.name);
    if def.indexed() {
        core.index.drop_collection(def).await?;
    }
    if new.indexed() {
        core.index.create_collection(&new).await?;
        super::sync::backfill(core.rows.as_ref(), core.index.as_ref(), &new).await?;
    }
    core.rows.update_table(&new).await?;
    core.replace_table(new);
    Ok(())
}

fn index_writable(core: &Core) -> Result<()> {
    if !core.health.writable() {
        return Err(Error::Unavailable {
            store: "vector index",
            message: "the index cannot be rebuilt while it is away".into(),
        });
    }
    Ok(())
}

/// Add columns to a table (`new` is `def` with them at the end); the rows stored before
/// get `fill`.
pub async fn add_columns(core: &Core, def: &TableDef, new: TableDef, fill: &[Value]) -> Result<()> {
    let stored = core
        .rows
        .add_columns(def, &new, fill, crate::store::now_micros());
    columns_changed(core, def, new.clone(), true, stored).await
}

/// Drop the columns at `dropped` (positions in `def`); `new` is `def` without them. A
/// table whose vector column goes keeps its rows and loses its index.
pub async fn drop_columns(
    core: &Core,
    def: &TableDef,
    new: TableDef,
    dropped: &[usize],
) -> Result<()> {
    let stored = core.rows.drop_columns(def, &new, dropped);
    columns_changed(core, def, new.clone(), true, stored).await
}

/// A change to the catalog only (a default, NOT NULL, a column's name): the rows stay
/// as they are. `rebuild`: the index's payload names the columns, so it is built again.
pub async fn alter_columns(
    core: &Core,
    def: &TableDef,
    new: TableDef,
    rebuild: bool,
) -> Result<()> {
    let stored = core.rows.update_table(&new);
    columns_changed(core, def, new.clone(), rebuild, stored).await
}

/// Carry out a change to a table's columns in the row store (`stored`), then put `new`
/// in the catalog. A table with a vector index has its collection rebuilt from the rows
/// when `rebuild`, so that every point carries the columns as they are now (searches
/// scan the rows meanwhile).
async fn columns_changed(
    core: &Core,
    def: &TableDef,
    new: TableDef,
    rebuild: bool,
    stored: impl std::future::Future<Output = Result<()>>,
) -> Result<()> {
    let rebuild = rebuild && (def.indexed() || new.indexed());
    if rebuild {
        index_writable(core)?;
    }
    let _changing = core.changing(&def.name);
    let _rebuilding = rebuild.then(|| core.begin_rebuild(&def.name));
    stored.await?;
    core.replace_table(new.clone());
    if rebuild {
        if def.indexed() {
            core.index.drop_collection(def).await?;
        }
        if new.indexed() {
            core.index.create_collection(&new).await?;
            super::sync::backfill(core.rows.as_ref(), core.index.as_ref(), &new).await?;
        }
    }
    Ok(())
}

/// Create a schema (42P06 if it exists, made by any proxy).
pub async fn create_schema(core: &Core, name: &str) -> Result<()> {
    if core.has_schema(name) {
        return Err(Error::DuplicateSchema(name.to_string()));
    }
    if !core.rows.add_name(Names::Schema, name).await? {
        return Err(Error::DuplicateSchema(name.to_string()));
    }
    core.schemas.write().insert(name.to_string());
    core.bump();
    Ok(())
}

/// Take a schema out of the catalog; its tables and sequences are gone already.
pub async fn drop_schema(core: &Core, name: &str) -> Result<()> {
    core.rows.remove_name(Names::Schema, name).await?;
    core.schemas.write().remove(name);
    core.bump();
    Ok(())
}

/// Give a table kept under its hidden key the primary key `new` has (`ALTER TABLE ...
/// ADD PRIMARY KEY`): its rows are written again, keyed by the new key ([`rewrite`]).
/// 23502 if a key column holds NULL, 23505 if two rows share a key; the table is as it
/// was then.
pub async fn rekey(
    core: &Core,
    def: &TableDef,
    mut new: TableDef,
    notices: &Notices,
) -> Result<()> {
    new.pk_constraint = Some(new.pk_name());
    rewrite(core, def, new, notices, |rows| async move { Ok(rows) }).await
}

/// Put `new` in place of `def` with every row written again as `convert` makes it (a
/// new key, columns of new types). A row store keys its rows by the primary key and
/// cannot change a column's type, so the rows go under a new stored name (with a
/// collection of their own); then the old table goes and the new one takes its name.
/// The rows are read, converted and written a page at a time, so memory holds only
/// each row's keys and a hash of it; rows that other statements changed while the copy
/// ran are converted and copied again just before the swap, and rows they deleted are
/// deleted. `convert` takes rows as `def` keeps them and gives them, in order, as `new`
/// does. 23505 if two rows share a key, 23502 if a key column holds NULL, or
/// `convert`'s error: the table is as it was then.
pub async fn rewrite<C, F>(
    core: &Core,
    def: &TableDef,
    mut new: TableDef,
    notices: &Notices,
    convert: C,
) -> Result<()>
where
    C: Fn(Vec<Row>) -> F,
    F: std::future::Future<Output = Result<Vec<Row>>>,
{
    if def.indexed() || new.indexed() {
        index_writable(core)?;
    }
    let _changing = core.changing(&def.name);
    // The rows under a name of their own until the swap; UNIQUE constraints claim their
    // values afresh (their holders name rows by key).
    let stored = core
        .storage_name_for(&def.name)
        .unwrap_or_else(|| def.name.clone());
    for u in &mut new.unique {
        u.space = super::unique::new_space();
    }
    let mut staging = new.clone();
    staging.name = format!(
        "{}rewrite_{:08x}",
        crate::store::RESERVED_PREFIX,
        uuid::Uuid::new_v4().as_fields().0
    );
    staging.schema = None;
    staging.stored = Some(stored);
    create_table(core, staging.clone(), notices).await?;
    let copied = async {
        use futures::StreamExt;
        let mut copy = Copied::new(def, &staging);
        let mut pages = core.rows.scan(def, 1000, None);
        while let Some(page) = pages.next().await {
            let page = page?;
            let seen = copy.seen(&page);
            let mut converted = convert(page).await?;
            copy.record(seen, &converted)?;
            // A row with NULL in its new key fails the rewrite at its end (unless it is
            // deleted meanwhile); a row store cannot hold it.
            converted.retain(|c| !staging.key_of(c).iter().any(Value::is_null));
            copy_rows(core, &staging, &converted, notices).await?;
        }
        drop(pages);
        // What changed meanwhile (by the old key, or the hidden key, which every row
        // keeps): converted and written again; what was deleted meanwhile, deleted. This
        // proxy's writes to the table wait from here until the swap.
        let closed = core.gate(def.stored_name()).write_owned().await;
        let mut changed = Vec::new();
        let mut present = std::collections::HashSet::new();
        let mut pages = core.rows.scan(def, 1000, None);
        while let Some(page) = pages.next().await {
            for r in page? {
                let k = crate::store::keys::encode(&def.key_of(&r));
                if copy.rows.get(&k).is_none_or(|e| e.hash != row_hash(&r)) {
                    changed.push(r);
                }
                present.insert(k);
            }
        }
        drop(pages);
        let olds: Vec<Vec<u8>> = copy.seen(&changed).into_iter().map(|(k, _)| k).collect();
        let mut converted = convert(changed).await?;
        let gone = copy.settle(&present, &olds, &converted)?;
        converted.retain(|c| !staging.key_of(c).iter().any(Value::is_null));
        // Deleted first: a key a row left may be the one another row took.
        if !gone.is_empty() {
            super::write::delete_rows(core, &staging, gone, notices).await?;
        }
        copy_rows(core, &staging, &converted, notices).await?;
        Ok::<_, Error>(closed)
    }
    .await;
    let _closed = match copied {
        Ok(closed) => closed,
        Err(e) => {
            let _ = drop_table(core, &staging.name).await;
            return Err(e);
        }
    };
    drop_table(core, &def.name).await?;
    staging.schema = def.schema.clone();
    rename_table(core, &staging, &def.name).await?;
    // The sequences its columns own name it by where its rows are.
    for seq in core.sequence_defs() {
        if let Some((table, column)) = &seq.owned_by
            && table == def.stored_name()
        {
            let mut moved = (*seq).clone();
            moved.owned_by = Some((staging.stored_name().to_string(), column.clone()));
            core.replace_sequence(moved).await?;
        }
    }
    // `rename_table` keeps the staging entry's constraint name; the table's is `new`'s.
    let mut renamed = (*core.table(&def.name)?).clone();
    renamed.pk_constraint = new.pk_constraint.clone();
    core.rows.update_table(&renamed).await?;
    core.replace_table(renamed);
    Ok(())
}

/// A row's hash: whether it changed since it was copied.
fn row_hash(r: &Row) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    crate::store::keys::encode(r).hash(&mut h);
    h.finish()
}

/// What [`rewrite`] has copied: for each row (by its key in the old table) its hash and
/// its key in the new one; the new keys taken, and the rows whose new key has a NULL.
struct Copied<'a> {
    new: &'a TableDef,
    old: &'a TableDef,
    rows: std::collections::HashMap<Vec<u8>, CopiedRow>,
    taken: std::collections::HashSet<Vec<u8>>,
    nulls: std::collections::HashMap<Vec<u8>, usize>,
}

struct CopiedRow {
    hash: u64,
    key: Vec<Value>,
}

impl<'a> Copied<'a> {
    fn new(old: &'a TableDef, new: &'a TableDef) -> Self {
        Copied {
            new,
            old,
            rows: Default::default(),
            taken: Default::default(),
            nulls: Default::default(),
        }
    }

    /// Each row's key in the old table and its hash, taken before it is converted.
    fn seen(&self, rows: &[Row]) -> Vec<(Vec<u8>, u64)> {
        rows.iter()
            .map(|r| (crate::store::keys::encode(&self.old.key_of(r)), row_hash(r)))
            .collect()
    }

    /// Rows copied (`seen` before, as converted): 23505 at once if a new key is taken
    /// already.
    fn record(&mut self, seen: Vec<(Vec<u8>, u64)>, converted: &[Row]) -> Result<()> {
        for ((old, hash), c) in seen.into_iter().zip(converted) {
            self.take(&old, c)?;
            self.rows.insert(
                old,
                CopiedRow {
                    hash,
                    key: self.new.key_of(c),
                },
            );
        }
        Ok(())
    }

    fn take(&mut self, old: &[u8], c: &Row) -> Result<()> {
        let key = self.new.key_of(c);
        if let Some(i) = key.iter().position(Value::is_null) {
            self.nulls.insert(old.to_vec(), self.new.primary_key[i]);
            return Ok(());
        }
        if !self.taken.insert(crate::store::keys::encode(&key)) {
            return Err(match self.new.duplicate_key(&key) {
                Error::UniqueViolation {
                    detail,
                    table,
                    constraint,
                    ..
                } => Error::UniqueViolation {
                    message: format!("could not create unique index \"{constraint}\""),
                    detail: detail.replace("already exists.", "is duplicated."),
                    table,
                    constraint,
                },
                other => other,
            });
        }
        Ok(())
    }

    /// The second look: `present` the old keys of every row now, `olds` the old keys of
    /// the rows changed or added since they were copied and `converted` those rows
    /// converted. The new keys of the rows gone (deleted, or changed to another key) are
    /// given; 23505 if a changed row's new key is another's, then 23502 if a new key has
    /// a NULL.
    fn settle(
        &mut self,
        present: &std::collections::HashSet<Vec<u8>>,
        olds: &[Vec<u8>],
        converted: &[Row],
    ) -> Result<Vec<Vec<Value>>> {
        let mut gone = Vec::new();
        let release = |copied: &CopiedRow, taken: &mut std::collections::HashSet<Vec<u8>>| {
            taken.remove(&crate::store::keys::encode(&copied.key));
        };
        let deleted: Vec<Vec<u8>> = self
            .rows
            .keys()
            .filter(|k| !present.contains(*k))
            .cloned()
            .collect();
        for k in deleted {
            if let Some(c) = self.rows.remove(&k) {
                release(&c, &mut self.taken);
                gone.push(c.key);
            }
            self.nulls.remove(&k);
        }
        for (k, c) in olds.iter().zip(converted) {
            self.nulls.remove(k);
            if let Some(before) = self.rows.get(k) {
                release(before, &mut self.taken);
                if before.key != self.new.key_of(c) {
                    gone.push(before.key.clone());
                }
            }
        }
        for (k, c) in olds.iter().zip(converted) {
            self.take(k, c)?;
        }
        // A key with a NULL was never copied.
        gone.retain(|k| !k.iter().any(Value::is_null));
        match self.nulls.values().next() {
            Some(&c) => Err(Error::NotNullViolation(format!(
                "column \"{}\" of relation \"{}\" contains null values",
                self.new.columns[c].name,
                self.new.relname()
            ))),
            None => Ok(gone),
        }
    }
}

/// Write `rows` into `def` in batches (claiming their UNIQUE values first).
async fn copy_rows(core: &Core, def: &TableDef, rows: &[Row], notices: &Notices) -> Result<()> {
    for chunk in rows.chunks(1000) {
        let pairs: Vec<(&Row, Option<&Row>)> = chunk.iter().map(|r| (r, None)).collect();
        super::unique::claim(core, def, None, &pairs).await?;
        super::write::write_rows(
            core,
            def,
            chunk.to_vec(),
            crate::store::WriteMode::Upsert,
            notices,
        )
        .await?;
    }
    Ok(())
}
