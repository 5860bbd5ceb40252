//! Corrections to the emulated `pg_catalog` for the proxy's own tables: the generic
//! emulation derives a column's type from its Arrow type alone, so `vector(n)`, `uuid`,
//! `numeric(p,s)`, `jsonb` and `bigint[]` would all read as other types in psql's `\d`.
//! `pg_attribute` is patched with the declared types; `pg_class`, `pg_index` and
//! `pg_constraint` gain each table's primary key; `pg_roles` is `pg_authid`'s rows. The
//! functions are in [`functions`], `information_schema` in [`information_schema`].

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Int32Type, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TableType,
};
use datafusion::physical_plan::{ExecutionPlan, collect};

use crate::engine::Core;
use crate::types::ColumnType;

mod functions;
mod information_schema;
pub mod sequences;

pub use functions::{
    COLUMN_DEFAULT, FormatType, RELATION_NAME, TEXT_ARRAY_FUNCTIONS, TextArrays, constant_int,
    constant_text, current_setting_udf, extra_functions, key_functions, type_oid,
};
pub use information_schema::InformationSchema;

pub use crate::types::{HALFVEC_OID, SPARSEVEC_OID, VECTOR_OID};

/// The type OID and typmod of a table's column: its [`pg_type_of`], but `varchar`
/// (OID 1043, or 1015 for an array of them) with its typmod for a column declared so.
pub fn pg_column_type(c: &crate::store::ColumnDef) -> (i32, i32) {
    match c.varchar_typmod() {
        Some(typmod) if c.ty.element().is_some() => (1015, typmod),
        Some(typmod) => (1043, typmod),
        None => pg_type_of(&c.ty),
    }
}

/// The Postgres type OID and type modifier of a declared column type.
pub fn pg_type_of(ty: &ColumnType) -> (i32, i32) {
    match ty {
        ColumnType::SmallInt => (21, -1),
        ColumnType::Int => (23, -1),
        ColumnType::BigInt => (20, -1),
        ColumnType::Real => (700, -1),
        ColumnType::Double => (701, -1),
        ColumnType::Bool => (16, -1),
        ColumnType::Text => (25, -1),
        ColumnType::Uuid => (2950, -1),
        ColumnType::Timestamp => (1114, -1),
        ColumnType::TimestampTz => (1184, -1),
        ColumnType::Date => (1082, -1),
        ColumnType::TextArray => (1009, -1),
        ColumnType::IntArray => (1007, -1),
        ColumnType::BigIntArray => (1016, -1),
        ColumnType::Vector(0) => (VECTOR_OID, -1),
        ColumnType::Vector(n) => (VECTOR_OID, *n as i32),
        ColumnType::HalfVec(0) => (HALFVEC_OID, -1),
        ColumnType::HalfVec(n) => (HALFVEC_OID, *n as i32),
        ColumnType::SparseVec(0) => (SPARSEVEC_OID, -1),
        ColumnType::SparseVec(n) => (SPARSEVEC_OID, *n as i32),
        ColumnType::Bit(n) => (1560, *n as i32),
        ColumnType::VarBit(0) => (1562, -1),
        ColumnType::VarBit(n) => (1562, *n as i32),
        ColumnType::Bytea => (17, -1),
        // Postgres' numeric typmod: ((precision << 16) | scale) + 4.
        ColumnType::Numeric(p, s) => (1700, ((*p as i32) << 16 | (*s as i32 & 0xffff)) + 4),
        ColumnType::Jsonb => (3802, -1),
        ColumnType::Json => (114, -1),
        // The array type of the element's type, with the element's typmod.
        ColumnType::Array(e) => {
            let (element, typmod) = pg_type_of(e);
            let array = match element {
                21 => 1005,
                700 => 1021,
                701 => 1022,
                16 => 1000,
                2950 => 2951,
                1114 => 1115,
                1184 => 1185,
                1082 => 1182,
                17 => 1001,
                1700 => 1231,
                3802 => 3807,
                114 => 199,
                _ => 1009,
            };
            (array, typmod)
        }
    }
}

/// The `pg_catalog` tables and views the emulation lacks and this overlay has.
pub(crate) const OWN_TABLES: [&str; 6] = [
    "pg_indexes",
    "pg_available_extensions",
    "pg_stat_progress_copy",
    "pg_sequences",
    "pg_transform",
    "pg_seclabels",
];

/// `pg_catalog` with `pg_attribute` corrected; every other table as the emulation has it.
#[derive(Debug)]
pub struct PgCatalogOverlay {
    pub inner: Arc<dyn SchemaProvider>,
    pub shared: Weak<Core>,
    pub seen: Seen,
    /// The server's databases (`pg_database` lists those CREATE DATABASE made).
    pub databases: DatabasesRef,
}

/// Where an engine finds the server's databases, once the server has them.
pub type DatabasesRef = Arc<parking_lot::RwLock<Option<Weak<dyn super::DatabaseAdmin>>>>;

#[async_trait]
impl SchemaProvider for PgCatalogOverlay {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        for extra in OWN_TABLES {
            if !names.iter().any(|n| n == extra) {
                names.push(extra.into());
            }
        }
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(table) = self.overlay(name).await? else {
            return Ok(None);
        };
        let namespaces = match name {
            "pg_namespace" => None,
            _ => self.inner.table("pg_namespace").await?,
        };
        Ok(Some(Mended::wrap(table, namespaces)))
    }

    fn table_exist(&self, name: &str) -> bool {
        OWN_TABLES.contains(&name) || self.inner.table_exist(name)
    }
}

impl PgCatalogOverlay {
    /// Catalog table `name` as the emulation has it, with this proxy's own rows and
    /// columns added where they differ.
    async fn overlay(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if name == "pg_indexes" {
            return Ok(Some(Arc::new(PgIndexes {
                shared: self.shared.clone(),
            })));
        }
        if name == "pg_available_extensions" {
            return Ok(Some(Arc::new(PgAvailableExtensions)));
        }
        if let Some(columns) = Nothing::columns(name) {
            return Ok(Some(Arc::new(Nothing(Nothing::schema_of(columns)))));
        }
        // Postgres' own views' rules, by OIDs its pg_class numbers otherwise (pg_dump
        // stops at a rule whose view it cannot find); the proxy's views have none.
        if name == "pg_rewrite"
            && let Some(rules) = self.inner.table(name).await?
        {
            return Ok(Some(Arc::new(Nothing(rules.schema()))));
        }
        // No per-database or per-role settings are kept; `setconfig` is text[] as in
        // Postgres (pg_dump unnests it).
        if name == "pg_db_role_setting"
            && let Some(settings) = self.inner.table(name).await?
        {
            let list = DataType::List(Arc::new(
                datafusion::arrow::datatypes::Field::new_list_field(DataType::Utf8, true),
            ));
            let fields: Vec<_> = settings
                .schema()
                .fields()
                .iter()
                .map(|f| match f.name().as_str() {
                    "setconfig" => Arc::new(f.as_ref().clone().with_data_type(list.clone())),
                    _ => f.clone(),
                })
                .collect();
            let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
            return Ok(Some(Arc::new(Nothing(schema))));
        }
        if name == "pg_sequences" {
            return Ok(Some(Arc::new(sequences::PgSequences {
                shared: self.shared.clone(),
            })));
        }
        if name == "pg_stat_progress_copy" {
            let (Some(classes), Some(namespaces)) = (
                self.inner.table("pg_class").await?,
                self.inner.table("pg_namespace").await?,
            ) else {
                return Ok(None);
            };
            return Ok(Some(Arc::new(PgStatProgressCopy {
                classes,
                namespaces,
                shared: self.shared.clone(),
            })));
        }
        let table = self.inner.table(name).await?;
        let more = match name {
            "pg_extension" => Some(More::Vector),
            "pg_description" => Some(More::Descriptions),
            "pg_am" => Some(More::AccessMethods),
            "pg_database" => Some(More::Databases(self.databases.clone())),
            _ => None,
        };
        if let (Some(more), Some(inner)) = (more, &table)
            && let Some(namespaces) = self.inner.table("pg_namespace").await?
        {
            return Ok(Some(Arc::new(Appended {
                inner: inner.clone(),
                namespaces,
                more,
            })));
        }
        if name == "pg_roles"
            && let (Some(roles), Some(authid)) = (&table, self.inner.table("pg_authid").await?)
        {
            // Postgres' pg_roles is a view of pg_authid; the emulation's is empty.
            return Ok(Some(Arc::new(ViewOf {
                schema: roles.schema(),
                source: authid,
            })));
        }
        if name == "pg_type" {
            let (Some(types), Some(namespaces)) = (table, self.inner.table("pg_namespace").await?)
            else {
                return Ok(None);
            };
            return Ok(Some(Arc::new(PgType { types, namespaces })));
        }
        if name == "pg_sequence"
            && let Some(table) = &table
        {
            return Ok(Some(Arc::new(PgSequence {
                schema: table.schema(),
                shared: self.shared.clone(),
            })));
        }
        if matches!(name, "pg_attrdef" | "pg_depend")
            && let (Some(table), Some(classes), Some(namespaces)) = (
                &table,
                self.inner.table("pg_class").await?,
                self.inner.table("pg_namespace").await?,
            )
        {
            let shared = self.shared.clone();
            return Ok(Some(if name == "pg_attrdef" {
                Arc::new(PgAttrdef {
                    schema: table.schema(),
                    classes,
                    namespaces,
                    shared,
                })
            } else {
                Arc::new(PgDepend {
                    table: table.clone(),
                    classes,
                    namespaces,
                    shared,
                })
            }));
        }
        let keys = match name {
            "pg_class" => Some(KeyTable::Class),
            "pg_index" => Some(KeyTable::Index),
            "pg_constraint" => Some(KeyTable::Constraint),
            _ => None,
        };
        if let Some(kind) = keys {
            let (Some(table), Some(classes)) = (table, self.inner.table("pg_class").await?) else {
                return Ok(None);
            };
            let Some(namespaces) = self.inner.table("pg_namespace").await? else {
                return Ok(None);
            };
            return Ok(Some(Arc::new(PrimaryKeys {
                kind,
                table,
                classes,
                namespaces,
                shared: self.shared.clone(),
                seen: self.seen.clone(),
            })));
        }
        if name != "pg_attribute" {
            return Ok(table);
        }
        let (Some(attributes), Some(classes), Some(namespaces)) = (
            table,
            self.inner.table("pg_class").await?,
            self.inner.table("pg_namespace").await?,
        ) else {
            return Ok(None);
        };
        Ok(Some(Arc::new(PgAttribute {
            attributes,
            classes,
            namespaces,
            shared: self.shared.clone(),
        })))
    }
}

/// A catalog table made of another's rows: each column of `schema` from the source's
/// column of that name (cast to its type), NULL where the source has none.
#[derive(Debug)]
struct ViewOf {
    schema: SchemaRef,
    source: Arc<dyn TableProvider>,
}

#[async_trait]
impl TableProvider for ViewOf {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut out = Vec::new();
        for b in read_all(&self.source, state).await? {
            let mut columns = Vec::with_capacity(self.schema.fields().len());
            for f in self.schema.fields() {
                columns.push(match column(&b, f.name()) {
                    Some(c) => datafusion::arrow::compute::cast(c, f.data_type())?,
                    None => datafusion::arrow::array::new_null_array(f.data_type(), b.num_rows()),
                });
            }
            out.push(RecordBatch::try_new(self.schema.clone(), columns)?);
        }
        memory_exec(self.schema.clone(), out, projection)
    }
}

/// `pg_type` with pgvector's `vector` in the `public` schema, where pgvector installs it
/// and where drivers (asyncpg, pgvector-python) look for it.
#[derive(Debug)]
struct PgType {
    types: Arc<dyn TableProvider>,
    namespaces: Arc<dyn TableProvider>,
}

#[async_trait]
impl TableProvider for PgType {
    fn schema(&self) -> SchemaRef {
        self.types.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut public = None;
        for b in read_all(&self.namespaces, state).await? {
            if let (Some(oid), Some(name)) = (column(&b, "oid"), column(&b, "nspname"))
                && let (Some(oid), Some(name)) = (
                    oid.as_primitive_opt::<Int32Type>(),
                    name.as_string_opt::<i32>(),
                )
            {
                for i in 0..b.num_rows() {
                    if name.value(i) == "public" {
                        public = Some(oid.value(i));
                    }
                }
            }
        }
        let mut batches = read_all(&self.types, state).await?;
        // pgvector's array type `_vector`, which pg_type lacks, made from the vector row.
        let mut extra = Vec::new();
        for b in &batches {
            extra.extend(pgvector_type_rows(b)?);
        }
        batches.extend(extra);
        if let Some(public) = public {
            for b in &mut batches {
                let (Some(name), Some(ns)) = (column(b, "typname"), column(b, "typnamespace"))
                else {
                    continue;
                };
                let (Some(name), Some(ns)) = (
                    name.as_string_opt::<i32>(),
                    ns.as_primitive_opt::<Int32Type>(),
                ) else {
                    continue;
                };
                let patched: Vec<Option<i32>> = (0..b.num_rows())
                    .map(|i| {
                        if matches!(
                            name.value(i),
                            "vector"
                                | "_vector"
                                | "halfvec"
                                | "_halfvec"
                                | "sparsevec"
                                | "_sparsevec"
                        ) {
                            Some(public)
                        } else {
                            ns.is_valid(i).then(|| ns.value(i))
                        }
                    })
                    .collect();
                let mut columns = b.columns().to_vec();
                let schema = b.schema();
                columns[schema.index_of("typnamespace")?] = Arc::new(Int32Array::from(patched));
                if let Ok(k) = schema.index_of("typarray")
                    && let Some(arr) = columns[k].as_primitive_opt::<Int32Type>()
                {
                    let fixed: Vec<Option<i32>> = (0..b.num_rows())
                        .map(|i| {
                            if name.value(i) == "vector" {
                                Some(VECTOR_OID + 1)
                            } else {
                                arr.is_valid(i).then(|| arr.value(i))
                            }
                        })
                        .collect();
                    columns[k] = Arc::new(Int32Array::from(fixed));
                }
                if let Ok(k) = schema.index_of("typstorage")
                    && let Some(storage) = columns[k].as_string_opt::<i32>()
                {
                    let fixed: Vec<Option<&str>> = (0..b.num_rows())
                        .map(|i| {
                            if name.value(i) == "vector" {
                                Some("e")
                            } else {
                                storage.is_valid(i).then(|| storage.value(i))
                            }
                        })
                        .collect();
                    columns[k] = Arc::new(datafusion::arrow::array::StringArray::from(fixed));
                }
                *b = RecordBatch::try_new(schema, columns)?;
            }
        }
        memory_exec(self.schema(), batches, projection)
    }
}

/// The rows pg_type lacks for pgvector's types, each made from the `vector` row: `_vector`,
/// `halfvec` and `_halfvec` (each type with its own oid, name, functions and array
/// type). The `vector` row itself gets `typarray` pointing at `_vector` (patched in
/// place).
fn pgvector_type_rows(b: &RecordBatch) -> DfResult<Vec<RecordBatch>> {
    let Some(name) = column(b, "typname").and_then(|c| c.as_string_opt::<i32>()) else {
        return Ok(Vec::new());
    };
    let Some(i) = (0..b.num_rows()).find(|&i| name.value(i) == "vector") else {
        return Ok(Vec::new());
    };
    let row = b.slice(i, 1);
    let schema = row.schema();
    let made = |oid: i32, name: &str, elem: i32, array: i32| -> DfResult<RecordBatch> {
        let mut columns = row.columns().to_vec();
        let set_int = |columns: &mut Vec<ArrayRef>, col: &str, v: i32| {
            if let Ok(k) = schema.index_of(col)
                && columns[k].data_type() == &DataType::Int32
            {
                columns[k] = Arc::new(Int32Array::from(vec![v]));
            }
        };
        let set_text = |columns: &mut Vec<ArrayRef>, col: &str, v: &str| {
            if let Ok(k) = schema.index_of(col)
                && columns[k].data_type() == &DataType::Utf8
            {
                columns[k] = Arc::new(datafusion::arrow::array::StringArray::from(vec![v]));
            }
        };
        set_int(&mut columns, "oid", oid);
        set_int(&mut columns, "typelem", elem);
        set_int(&mut columns, "typarray", array);
        set_int(&mut columns, "typlen", -1);
        set_text(&mut columns, "typname", name);
        // pgvector declares its types STORAGE = external; their arrays are extended.
        set_text(
            &mut columns,
            "typstorage",
            if elem != 0 { "x" } else { "e" },
        );
        if elem != 0 {
            set_text(&mut columns, "typcategory", "A");
            // pgjdbc tells arrays by their input function.
            set_text(&mut columns, "typinput", "array_in");
            set_text(&mut columns, "typoutput", "array_out");
            set_text(&mut columns, "typreceive", "array_recv");
            set_text(&mut columns, "typsend", "array_send");
        } else {
            for f in ["in", "out", "recv", "send", "typmod_in"] {
                let col = match f {
                    "in" => "typinput",
                    "out" => "typoutput",
                    "recv" => "typreceive",
                    "send" => "typsend",
                    _ => "typmodin",
                };
                set_text(&mut columns, col, &format!("{name}_{f}"));
            }
        }
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    };
    Ok(vec![
        made(VECTOR_OID + 1, "_vector", VECTOR_OID, 0)?,
        made(HALFVEC_OID, "halfvec", 0, HALFVEC_OID + 1)?,
        made(HALFVEC_OID + 1, "_halfvec", HALFVEC_OID, 0)?,
        made(SPARSEVEC_OID, "sparsevec", 0, SPARSEVEC_OID + 1)?,
        made(SPARSEVEC_OID + 1, "_sparsevec", SPARSEVEC_OID, 0)?,
    ])
}

#[derive(Debug)]
struct PgAttribute {
    attributes: Arc<dyn TableProvider>,
    classes: Arc<dyn TableProvider>,
    shared: Weak<Core>,
    namespaces: Arc<dyn TableProvider>,
}

/// A catalog table with the references the emulation leaves dangling made whole, as
/// pg_dump needs them (it stops at the first: "role with OID 0 does not exist", "schema
/// with OID 13283 does not exist"):
/// - owner columns (`relowner`, `nspowner`, `typowner`, `datdba`, ...) say 0, a role
///   that does not exist: they are 10, the bootstrap superuser that owns Postgres' own
///   objects and, here, every object;
/// - namespace columns (`pronamespace`, `typnamespace`, ...) of the emulation's built-in
///   functions and types name `information_schema` by the OID PostgreSQL 15 gave it,
///   which its `pg_namespace` numbers otherwise: they name the one `pg_namespace` has.
#[derive(Debug)]
struct Mended {
    inner: Arc<dyn TableProvider>,
    owners: Vec<usize>,
    /// The namespace columns, with `pg_namespace` to look `information_schema` up in.
    namespaces: Option<(Vec<usize>, Arc<dyn TableProvider>)>,
}

impl Mended {
    const BOOTSTRAP_SUPERUSER: i64 = 10;
    const PG_DATABASE_OWNER: i64 = 6171;
    /// `information_schema`'s OID in the PostgreSQL 15 the emulation's rows come from.
    const POSTGRES_INFORMATION_SCHEMA: i64 = 13283;

    /// `inner` mended, `pg_namespace` being `namespaces` (None for itself).
    fn wrap(
        inner: Arc<dyn TableProvider>,
        namespaces: Option<Arc<dyn TableProvider>>,
    ) -> Arc<dyn TableProvider> {
        let schema = inner.schema();
        let columns = |which: &dyn Fn(&str) -> bool| -> Vec<usize> {
            schema
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| which(f.name()) && f.data_type().is_integer())
                .map(|(i, _)| i)
                .collect()
        };
        let owners = columns(&|n| n.ends_with("owner") || n == "datdba");
        let namespaces = namespaces
            .map(|t| (columns(&|n| n.ends_with("namespace")), t))
            .filter(|(c, _)| !c.is_empty());
        if owners.is_empty() && namespaces.is_none() {
            return inner;
        }
        Arc::new(Mended {
            inner,
            owners,
            namespaces,
        })
    }
}

/// `column` with each value `f` maps, in its own type.
fn map_ints(column: &ArrayRef, f: impl Fn(i64) -> i64) -> DfResult<ArrayRef> {
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::compute::cast;
    let wide = cast(column, &DataType::Int64)?;
    let mapped: Int64Array = wide
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
        .iter()
        .map(|v| v.map(&f))
        .collect();
    Ok(cast(&mapped, column.data_type())?)
}

#[async_trait]
impl TableProvider for Mended {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut information_schema = None;
        if let Some((_, namespaces)) = &self.namespaces {
            for b in read_all(namespaces, state).await? {
                let (Some(oids), Some(names)) = (column(&b, "oid"), column(&b, "nspname")) else {
                    continue;
                };
                let oids = datafusion::arrow::compute::cast(oids, &DataType::Int64)?;
                let names = datafusion::arrow::compute::cast(names, &DataType::Utf8)?;
                let oids = oids.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                information_schema = (0..b.num_rows())
                    .find(|&r| names.as_string::<i32>().value(r) == "information_schema")
                    .map(|r| oids.value(r))
                    .or(information_schema);
            }
        }
        let mut batches = read_all(&self.inner, state).await?;
        for b in &mut batches {
            let mut columns = b.columns().to_vec();
            for &i in &self.owners {
                columns[i] = map_ints(&columns[i], |o| {
                    if o == 0 { Self::BOOTSTRAP_SUPERUSER } else { o }
                })?;
            }
            if let (Some((namespace_columns, _)), Some(own)) =
                (&self.namespaces, information_schema)
            {
                for &i in namespace_columns {
                    columns[i] = map_ints(&columns[i], |n| {
                        if n == Self::POSTGRES_INFORMATION_SCHEMA {
                            own
                        } else {
                            n
                        }
                    })?;
                }
            }
            // PostgreSQL 15's `public` belongs to pg_database_owner (whoever owns the
            // database), which pg_dump leaves out of a dump.
            if let (Some(names), Some(&k)) = (
                column(b, "nspname").and_then(|c| c.as_string_opt::<i32>()),
                self.owners.first(),
            ) {
                let owners = datafusion::arrow::compute::cast(&columns[k], &DataType::Int64)?;
                let owners = owners.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                let fixed: datafusion::arrow::array::Int64Array = (0..b.num_rows())
                    .map(|r| {
                        if names.value(r) == "public" {
                            Some(Self::PG_DATABASE_OWNER)
                        } else {
                            owners.is_valid(r).then(|| owners.value(r))
                        }
                    })
                    .collect();
                columns[k] = datafusion::arrow::compute::cast(&fixed, columns[k].data_type())?;
            }
            *b = RecordBatch::try_new(b.schema(), columns)?;
        }
        memory_exec(self.schema(), batches, projection)
    }
}

async fn read_all(t: &Arc<dyn TableProvider>, state: &dyn Session) -> DfResult<Vec<RecordBatch>> {
    let plan = t.scan(state, None, &[], None).await?;
    collect(plan, state.task_ctx()).await
}

fn column<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a ArrayRef> {
    b.schema().index_of(name).ok().map(|i| b.column(i))
}

#[async_trait]
impl TableProvider for PgAttribute {
    fn schema(&self) -> SchemaRef {
        self.attributes.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut batches = read_all(&self.attributes, state).await?;
        if let Some(shared) = self.shared.upgrade() {
            // Table OID -> declared column types, for the proxy's tables.
            let tables = shared.catalog();
            let spaces = Namespaces::read(&self.namespaces, state).await?;
            let mut declared: HashMap<i32, HashMap<String, Declared>> = HashMap::new();
            for b in read_all(&self.classes, state).await? {
                let (Some(oid), Some(name), Some(ns)) = (
                    column(&b, "oid").and_then(|c| c.as_primitive_opt::<Int32Type>()),
                    column(&b, "relname").and_then(|c| c.as_string_opt::<i32>()),
                    column(&b, "relnamespace").and_then(|c| c.as_primitive_opt::<Int32Type>()),
                ) else {
                    continue;
                };
                for i in 0..b.num_rows() {
                    let key = spaces.key(ns.value(i), name.value(i));
                    if let Some(def) = key.and_then(|k| tables.get(&k)) {
                        declared.insert(
                            oid.value(i),
                            def.columns
                                .iter()
                                .map(|c| {
                                    let (ty, typmod) = pg_column_type(c);
                                    let d = Declared {
                                        ty,
                                        typmod,
                                        storage: type_storage(ty),
                                        // An identity column's sequence is not a default.
                                        has_default: c.default.is_some() && c.identity.is_none(),
                                        identity: c.identity,
                                        hidden: c.hidden(),
                                    };
                                    (c.name.clone(), d)
                                })
                                .collect(),
                        );
                    }
                }
            }
            for b in &mut batches {
                *b = patch(b, &declared)?;
            }
        }
        memory_exec(self.schema(), batches, projection)
    }
}

/// A column of the proxy's tables as `pg_attribute` describes it.
struct Declared {
    ty: i32,
    typmod: i32,
    /// `attstorage`: as its type's `typstorage` (pg_dump writes SET STORAGE for a column
    /// whose storage differs from its type's).
    storage: &'static str,
    has_default: bool,
    identity: Option<char>,
    /// The hidden key: a system column, numbered below zero as Postgres numbers `ctid`.
    hidden: bool,
}

fn patch(
    b: &RecordBatch,
    declared: &HashMap<i32, HashMap<String, Declared>>,
) -> DfResult<RecordBatch> {
    let (Some(rel), Some(name), Some(typ), Some(typmod)) = (
        column(b, "attrelid"),
        column(b, "attname"),
        column(b, "atttypid"),
        column(b, "atttypmod"),
    ) else {
        return Ok(b.clone());
    };
    let (Some(rel), Some(name), Some(typ), Some(typmod)) = (
        rel.as_primitive_opt::<Int32Type>(),
        name.as_string_opt::<i32>(),
        typ.as_primitive_opt::<Int32Type>(),
        typmod.as_primitive_opt::<Int32Type>(),
    ) else {
        return Ok(b.clone());
    };
    let mut types: Vec<Option<i32>> = typ.iter().collect();
    let mut mods: Vec<Option<i32>> = typmod.iter().collect();
    let has_def = column(b, "atthasdef").and_then(|c| c.as_boolean_opt());
    let mut defaults: Option<Vec<Option<bool>>> = has_def.map(|c| c.iter().collect());
    let identity = column(b, "attidentity").and_then(|c| c.as_string_opt::<i32>());
    let mut identities: Option<Vec<Option<String>>> =
        identity.map(|c| c.iter().map(|v| v.map(str::to_string)).collect());
    let attnum = column(b, "attnum")
        .map(|c| datafusion::arrow::compute::cast(c, &DataType::Int32))
        .transpose()?;
    let storage = column(b, "attstorage").and_then(|c| c.as_string_opt::<i32>());
    let mut storages: Option<Vec<Option<String>>> =
        storage.map(|c| c.iter().map(|v| v.map(str::to_string)).collect());
    let mut numbers: Option<Vec<Option<i32>>> = attnum
        .as_ref()
        .and_then(|c| c.as_primitive_opt::<Int32Type>())
        .map(|c| c.iter().collect());
    for i in 0..b.num_rows() {
        if let Some(d) = declared
            .get(&rel.value(i))
            .and_then(|cols| cols.get(name.value(i)))
        {
            types[i] = Some(d.ty);
            mods[i] = Some(d.typmod);
            if let Some(defaults) = &mut defaults {
                defaults[i] = Some(d.has_default);
            }
            if let Some(ids) = &mut identities {
                ids[i] = Some(d.identity.map(String::from).unwrap_or_default());
            }
            if let Some(s) = &mut storages {
                s[i] = Some(d.storage.into());
            }
            if d.hidden
                && let Some(n) = &mut numbers
            {
                n[i] = Some(-1);
            }
        }
    }
    let mut columns = b.columns().to_vec();
    let schema = b.schema();
    columns[schema.index_of("atttypid")?] = Arc::new(Int32Array::from(types));
    columns[schema.index_of("atttypmod")?] = Arc::new(Int32Array::from(mods));
    if let Some(defaults) = defaults {
        columns[schema.index_of("atthasdef")?] =
            Arc::new(datafusion::arrow::array::BooleanArray::from(defaults));
    }
    if let Some(ids) = identities {
        columns[schema.index_of("attidentity")?] =
            Arc::new(datafusion::arrow::array::StringArray::from(ids));
    }
    if let Some(s) = storages {
        columns[schema.index_of("attstorage")?] =
            Arc::new(datafusion::arrow::array::StringArray::from(s));
    }
    if let Some(n) = numbers {
        let k = schema.index_of("attnum")?;
        let n: ArrayRef = Arc::new(Int32Array::from(n));
        columns[k] = datafusion::arrow::compute::cast(&n, schema.field(k).data_type())?;
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// PostgreSQL's `typstorage` of a column type: `p` (plain) for the fixed-size types,
/// `m` for numeric, `e` for pgvector's types (STORAGE = external), `x` for the rest.
fn type_storage(ty: i32) -> &'static str {
    match ty {
        // bool, "char", name, int8, int2, int4, oid, float4, float8, date, time,
        // timestamp, timestamptz, interval, timetz, uuid
        16 | 18 | 19 | 20 | 21 | 23 | 26 | 700 | 701 | 1082 | 1083 | 1114 | 1184 | 1186 | 1266
        | 2950 => "p",
        1700 => "m",
        _ if ty == VECTOR_OID || ty == HALFVEC_OID || ty == SPARSEVEC_OID => "e",
        _ => "x",
    }
}

/// OIDs of the primary-key index and constraint of the table with OID `table`: the
/// catalog has no such rows, so they are derived from the table's own OID.
pub const INDEX_OID_BASE: i32 = 1_000_000;
pub const CONSTRAINT_OID_BASE: i32 = 2_000_000;
/// OIDs of sequences: a hash of the name above this.
pub const SEQUENCE_OID_BASE: i32 = 3_000_000;
/// OIDs of column defaults (`pg_attrdef`) are above this.
pub const ATTRDEF_OID_BASE: i32 = 4_000_000;

/// A sequence's OID, the same in every query.
pub fn sequence_oid(name: &str) -> i32 {
    let h = name.bytes().fold(0xcbf2_9ce4_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    SEQUENCE_OID_BASE + (h % 1_000_000) as i32
}

/// `pg_namespace` as read by one query: OID -> name.
#[derive(Default)]
struct Namespaces(HashMap<i32, String>);

impl Namespaces {
    async fn read(t: &Arc<dyn TableProvider>, state: &dyn Session) -> DfResult<Namespaces> {
        Ok(Namespaces::of(&read_all(t, state).await?))
    }

    fn of(batches: &[RecordBatch]) -> Namespaces {
        let mut names = HashMap::new();
        for b in batches {
            let (Some(oid), Some(name)) = (
                column(b, "oid").and_then(|c| c.as_primitive_opt::<Int32Type>()),
                column(b, "nspname").and_then(|c| c.as_string_opt::<i32>()),
            ) else {
                continue;
            };
            for i in 0..b.num_rows() {
                names.insert(oid.value(i), name.value(i).to_string());
            }
        }
        Namespaces(names)
    }

    /// The catalog name of the proxy's relation `relname` of namespace `ns`
    /// ([`crate::store::qualified`]); `None` in a system schema.
    fn key(&self, ns: i32, relname: &str) -> Option<String> {
        let schema = self.0.get(&ns)?;
        (!crate::sql::schemas::is_system(schema)).then(|| crate::store::qualified(schema, relname))
    }

    /// The OID of the namespace of that name.
    fn oid(&self, name: &str) -> Option<i32> {
        self.0.iter().find(|(_, n)| *n == name).map(|(o, _)| *o)
    }
}

/// What an engine's catalog queries last saw in `pg_class`, for the functions that
/// answer about a relation by its OID or name: each engine keeps its own.
#[derive(Debug, Default)]
pub struct SeenCatalog {
    /// Constraint or index OID -> (its definition, pretty and not, its column names), for
    /// `pg_get_constraintdef` and `pg_get_indexdef`.
    pub(crate) keys: parking_lot::RwLock<HashMap<i32, Definition>>,
    /// Table OID -> each column's DEFAULT text, for psql's `\d` (see
    /// `vg_column_default`).
    pub(crate) defaults: parking_lot::RwLock<HashMap<i32, Vec<Option<String>>>>,
    /// OIDs of relations outside the search path (`information_schema`):
    /// `pg_table_is_visible` is false for them, as in Postgres, so psql's `\dp` and tools
    /// that list "visible" tables leave them out.
    pub(crate) hidden: parking_lot::RwLock<std::collections::HashSet<i32>>,
    /// `schema.relation` -> OID, for `to_regclass` of a computed name (Metabase:
    /// `format('%I.%I', schema, table)::regclass`).
    pub(crate) oids: parking_lot::RwLock<HashMap<String, i32>>,
}

/// A constraint's or index's definition, pretty and not, and its column names.
pub(crate) type Definition = (String, String, Vec<String>);

/// A shared [`SeenCatalog`], compared by identity (UDFs must be comparable).
#[derive(Debug, Clone, Default)]
pub struct Seen(pub Arc<SeenCatalog>);

impl PartialEq for Seen {
    fn eq(&self, other: &Seen) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Seen {}

impl std::hash::Hash for Seen {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.0), state)
    }
}

/// Result columns that are arrays of oids in Postgres' catalog but come out of
/// DataFusion as `int4[]` (its `array_agg` drops the marker that makes an Int32 an
/// oid). Drivers decode them by name-agnostic type: asyncpg, for one, ships only the
/// `oid[]` and `text[]` array codecs before it has introspected anything, so its own
/// type query must answer `oid[]` here.
const OID_ARRAY_COLUMNS: [&str; 4] = ["attrtypoids", "proargtypes", "proallargtypes", "indclass"];

/// Whether a plan reads the catalog (`pg_catalog` or `information_schema`).
pub fn reads_catalog(plan: &datafusion::logical_expr::LogicalPlan) -> bool {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let mut found = false;
    let _ = plan.apply_with_subqueries(|p| {
        if let datafusion::logical_expr::LogicalPlan::TableScan(t) = p
            && matches!(
                t.table_name.schema(),
                Some("pg_catalog" | "information_schema")
            )
        {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// The result schema of a plan, its catalog columns marked with the Postgres type they
/// have ([`crate::types::PG_TYPE_KEY`]): an `oid[]` that DataFusion's `array_agg` made an
/// `int4[]`, the `{1,2}` text of `pg_constraint.conkey`. Only a plan that reads the
/// catalog has such columns: a user's own column named `conkey` is what it is.
pub fn result_schema(plan: &datafusion::logical_expr::LogicalPlan) -> SchemaRef {
    use datafusion::arrow::datatypes::{Field, Schema};
    let schema = plan.schema().as_arrow().clone();
    if !reads_catalog(plan) {
        return Arc::new(schema);
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let ty = match f.data_type() {
                DataType::List(e)
                    if e.data_type() == &DataType::Int32
                        && OID_ARRAY_COLUMNS.contains(&f.name().as_str()) =>
                {
                    Some("oid[]")
                }
                DataType::Utf8 if INT2_ARRAY_TEXT_COLUMNS.contains(&f.name().as_str()) => {
                    Some("int2[]")
                }
                _ => None,
            };
            match ty {
                None => f.as_ref().clone(),
                Some(t) => {
                    let mut m = f.metadata().clone();
                    m.insert(crate::types::PG_TYPE_KEY.to_string(), t.to_string());
                    f.as_ref().clone().with_metadata(m)
                }
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The `int2[]` columns of `pg_constraint`, kept as text: the emulation's own rows hold
/// `[1, 2]`, Postgres prints `{1,2}` (and the wire announces them as `int2[]`, so pgjdbc's
/// `getArray` reads them, as DBeaver does).
pub const INT2_ARRAY_TEXT_COLUMNS: [&str; 2] = ["conkey", "confkey"];

fn int2_arrays_as_postgres_prints_them(b: &RecordBatch) -> DfResult<RecordBatch> {
    let mut columns = b.columns().to_vec();
    for name in INT2_ARRAY_TEXT_COLUMNS {
        let Ok(i) = b.schema().index_of(name) else {
            continue;
        };
        let Some(text) = b.column(i).as_string_opt::<i32>() else {
            continue;
        };
        let fixed: datafusion::arrow::array::StringArray = text
            .iter()
            .map(|v| {
                let v: String = v?
                    .chars()
                    .filter(|c| !c.is_whitespace() && *c != '"')
                    .map(|c| match c {
                        '[' => '{',
                        ']' => '}',
                        c => c,
                    })
                    .collect();
                (!v.is_empty()).then_some(v)
            })
            .collect();
        columns[i] = Arc::new(fixed);
    }
    Ok(RecordBatch::try_new(b.schema(), columns)?)
}

fn note_hidden_relations(seen: &SeenCatalog, classes: &[RecordBatch], namespaces: &[RecordBatch]) {
    let mut visible_ns = std::collections::HashSet::new();
    let mut ns_names = HashMap::new();
    for b in namespaces {
        let (Some(oid), Some(name)) = (
            column(b, "oid").and_then(|c| c.as_primitive_opt::<Int32Type>()),
            column(b, "nspname").and_then(|c| c.as_string_opt::<i32>()),
        ) else {
            continue;
        };
        for i in 0..b.num_rows() {
            ns_names.insert(oid.value(i), name.value(i).to_string());
            if matches!(name.value(i), "public" | "pg_catalog") {
                visible_ns.insert(oid.value(i));
            }
        }
    }
    let mut hidden = seen.hidden.write();
    let mut oids = seen.oids.write();
    for b in classes {
        let (Some(oid), Some(ns), Some(rel)) = (
            column(b, "oid").and_then(|c| c.as_primitive_opt::<Int32Type>()),
            column(b, "relnamespace").and_then(|c| c.as_primitive_opt::<Int32Type>()),
            column(b, "relname").and_then(|c| c.as_string_opt::<i32>()),
        ) else {
            continue;
        };
        for i in 0..b.num_rows() {
            if let Some(schema) = ns_names.get(&ns.value(i)) {
                oids.insert(format!("{schema}.{}", rel.value(i)), oid.value(i));
            }
            if visible_ns.contains(&ns.value(i)) {
                hidden.remove(&oid.value(i));
            } else {
                hidden.insert(oid.value(i));
            }
        }
    }
}

/// `schema` with nullable columns `extra` appended (those it does not have yet).
fn with_columns(schema: &SchemaRef, extra: &[(&str, DataType)]) -> SchemaRef {
    let mut fields: Vec<_> = schema.fields().iter().cloned().collect();
    for (name, ty) in extra {
        if schema.index_of(name).is_err() {
            fields.push(Arc::new(datafusion::arrow::datatypes::Field::new(
                *name,
                ty.clone(),
                true,
            )));
        }
    }
    Arc::new(datafusion::arrow::datatypes::Schema::new(fields))
}

/// Each batch given the columns `full` has after its own, all NULL.
fn widen(batches: &mut [RecordBatch], full: &SchemaRef) -> DfResult<()> {
    for b in batches {
        let mut columns = b.columns().to_vec();
        for f in &full.fields()[columns.len()..] {
            columns.push(datafusion::arrow::array::new_null_array(
                f.data_type(),
                b.num_rows(),
            ));
        }
        *b = RecordBatch::try_new(full.clone(), columns)?;
    }
    Ok(())
}

/// `pg_sequence`: one row per sequence (the emulation's is empty), for psql's `\d seq`.
#[derive(Debug)]
struct PgSequence {
    schema: SchemaRef,
    shared: Weak<Core>,
}

#[async_trait]
impl TableProvider for PgSequence {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let seqs = self
            .shared
            .upgrade()
            .map(|s| s.sequence_defs())
            .unwrap_or_default();
        let batch = build_rows(
            &self.schema,
            seqs.len(),
            |c, r| {
                let s = &seqs[r];
                Some(match c {
                    "seqrelid" => Cell::Int(i64::from(sequence_oid(&s.name))),
                    "seqtypid" => Cell::Int(match s.ty {
                        crate::types::ColumnType::SmallInt => 21,
                        crate::types::ColumnType::Int => 23,
                        _ => 20,
                    }),
                    "seqstart" => Cell::Int(s.start),
                    "seqincrement" => Cell::Int(s.increment),
                    "seqmax" => Cell::Int(s.max),
                    "seqmin" => Cell::Int(s.min),
                    "seqcache" => Cell::Int(1),
                    "seqcycle" => Cell::Bool(s.cycle),
                    _ => return None,
                })
            },
            None,
        )?;
        memory_exec(self.schema.clone(), vec![batch], projection)
    }
}

/// `pg_depend`: the emulation's own rows, and for each sequence a column owns (`serial`,
/// an identity column, `OWNED BY`) the row that ties it to that column, as Postgres
/// records it (deptype `a`, `i` for an identity), which Django's `get_sequences` and
/// psql's `\d` of a sequence read.
#[derive(Debug)]
struct PgDepend {
    table: Arc<dyn TableProvider>,
    classes: Arc<dyn TableProvider>,
    namespaces: Arc<dyn TableProvider>,
    shared: Weak<Core>,
}

#[async_trait]
impl TableProvider for PgDepend {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        const PG_CLASS: i64 = 1259;
        const PG_TYPE: i64 = 1247;
        const PG_ATTRDEF: i64 = 2604;
        const PG_EXTENSION: i64 = 3079;
        let schema = self.table.schema();
        let mut batches = read_all(&self.table, state).await?;
        let (tables, sequences) = match self.shared.upgrade() {
            Some(core) => (core.catalog(), core.sequence_defs()),
            None => Default::default(),
        };
        // Each user table's OID in pg_class, by its stored name (what `owned_by` names).
        let oids: HashMap<String, (i32, Arc<crate::store::TableDef>)> =
            table_oids(&self.classes, &self.namespaces, &tables, state)
                .await?
                .into_iter()
                .map(|(oid, def)| (def.stored_name().to_string(), (oid, def)))
                .collect();
        // (classid, objid, refclassid, refobjid, refobjsubid, deptype)
        let mut rows: Vec<(i64, i64, i64, i64, i64, char)> = Vec::new();
        // A sequence owned by a column (OWNED BY, serial, identity) depends on it.
        for s in sequences.iter() {
            let Some((table, col)) = s.owned_by.as_ref() else {
                continue;
            };
            let Some((oid, def)) = oids.get(table) else {
                continue;
            };
            let Some(at) = def.columns.iter().position(|c| &c.name == col) else {
                continue;
            };
            let deptype = if def.columns[at].identity.is_some() {
                'i'
            } else {
                'a'
            };
            let seq = i64::from(sequence_oid(&s.name));
            rows.push((
                PG_CLASS,
                seq,
                PG_CLASS,
                i64::from(*oid),
                at as i64 + 1,
                deptype,
            ));
        }
        // A column's default that calls nextval() depends on that sequence (pg_dump sets
        // such a default after the sequence it names is made).
        for (oid, def) in oids.values() {
            for (at, c) in def.columns.iter().enumerate() {
                let Some(name) = c
                    .default
                    .as_deref()
                    .filter(|_| c.identity.is_none())
                    .and_then(nextval_sequence)
                else {
                    continue;
                };
                if sequences.iter().any(|s| s.name == name) {
                    let objid = attrdef_oid(*oid, at + 1);
                    let seq = i64::from(sequence_oid(&name));
                    rows.push((PG_ATTRDEF, objid, PG_CLASS, seq, 0, 'n'));
                }
            }
        }
        // pgvector's types belong to its extension.
        for ty in [VECTOR_OID, HALFVEC_OID, SPARSEVEC_OID] {
            rows.push((
                PG_TYPE,
                i64::from(ty),
                PG_EXTENSION,
                PGVECTOR_EXTENSION_OID,
                0,
                'e',
            ));
        }
        batches.push(build_rows(
            &schema,
            rows.len(),
            |c, r| {
                let (classid, objid, refclassid, refobjid, refobjsubid, deptype) = rows[r];
                Some(match c {
                    "classid" => Cell::Int(classid),
                    "objid" => Cell::Int(objid),
                    "objsubid" => Cell::Int(0),
                    "refclassid" => Cell::Int(refclassid),
                    "refobjid" => Cell::Int(refobjid),
                    "refobjsubid" => Cell::Int(refobjsubid),
                    "deptype" => Cell::Text(deptype.to_string()),
                    _ => return None,
                })
            },
            None,
        )?);
        memory_exec(schema, batches, projection)
    }
}

/// The OID of the default of column `attnum` of the table with OID `table`, derived from
/// the column's (the catalog keeps no defaults of its own).
fn attrdef_oid(table: i32, attnum: usize) -> i64 {
    i64::from(ATTRDEF_OID_BASE) + i64::from(table) * 1600 + attnum as i64
}

/// The sequence a default `nextval('name'::regclass)` draws from, named as the catalog
/// names it (`public.` dropped, quotes undone).
fn nextval_sequence(default: &str) -> Option<String> {
    let lower = default.to_ascii_lowercase();
    let at = lower.find("nextval('")? + "nextval('".len();
    let rest = &default[at..];
    let name = &rest[..rest.find("'")?];
    let name = name.replace('"', "");
    Some(name.strip_prefix("public.").unwrap_or(&name).to_string())
}

/// Each user table with its OID in `pg_class`.
async fn table_oids(
    classes: &Arc<dyn TableProvider>,
    namespaces: &Arc<dyn TableProvider>,
    tables: &HashMap<String, Arc<crate::store::TableDef>>,
    state: &dyn Session,
) -> DfResult<Vec<(i32, Arc<crate::store::TableDef>)>> {
    let spaces = Namespaces::read(namespaces, state).await?;
    let mut out = Vec::new();
    for b in read_all(classes, state).await? {
        let (Some(oid), Some(name), Some(ns)) = (
            column(&b, "oid").and_then(|c| c.as_primitive_opt::<Int32Type>()),
            column(&b, "relname").and_then(|c| c.as_string_opt::<i32>()),
            column(&b, "relnamespace").and_then(|c| c.as_primitive_opt::<Int32Type>()),
        ) else {
            continue;
        };
        for i in 0..b.num_rows() {
            if let Some(def) = spaces
                .key(ns.value(i), name.value(i))
                .and_then(|k| tables.get(&k))
            {
                out.push((oid.value(i), def.clone()));
            }
        }
    }
    Ok(out)
}

/// `pg_attrdef`: a row for each column of the user tables that has a DEFAULT (a
/// `serial` column's `nextval(...)` among them; an identity column's sequence is not a
/// default), its expression as text in `adbin`, which `pg_get_expr` returns as it is.
/// SQLAlchemy's column reflection reads it; psql's `\d` is answered by
/// `vg_column_default`.
#[derive(Debug)]
struct PgAttrdef {
    schema: SchemaRef,
    classes: Arc<dyn TableProvider>,
    namespaces: Arc<dyn TableProvider>,
    shared: Weak<Core>,
}

#[async_trait]
impl TableProvider for PgAttrdef {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let tables = match self.shared.upgrade() {
            Some(core) => core.catalog(),
            None => Default::default(),
        };
        // (table OID, column number, default text)
        let mut rows: Vec<(i32, usize, String)> = Vec::new();
        for (oid, def) in table_oids(&self.classes, &self.namespaces, &tables, state).await? {
            for (at, c) in def.columns.iter().enumerate() {
                if let Some(d) = &c.default
                    && c.identity.is_none()
                    && !c.hidden()
                {
                    rows.push((oid, at + 1, d.clone()));
                }
            }
        }
        let batch = build_rows(
            &self.schema,
            rows.len(),
            |c, r| {
                let (table, attnum, default) = &rows[r];
                Some(match c {
                    // An OID of its own for each default, derived from its column's.
                    "oid" => Cell::Int(attrdef_oid(*table, *attnum)),
                    "adrelid" => Cell::Int(i64::from(*table)),
                    "adnum" => Cell::Int(*attnum as i64),
                    "adbin" => Cell::Text(default.clone()),
                    _ => return None,
                })
            },
            None,
        )?;
        memory_exec(self.schema.clone(), vec![batch], projection)
    }
}

/// `pg_indexes`: every index of the tables (primary keys, UNIQUE constraints, indexes
/// `CREATE INDEX` made), with `pg_get_indexdef`'s text. The system catalogs' own indexes
/// are not listed.
#[derive(Debug)]
struct PgIndexes {
    shared: Weak<Core>,
}

impl PgIndexes {
    fn columns() -> SchemaRef {
        Arc::new(datafusion::arrow::datatypes::Schema::new(
            [
                "schemaname",
                "tablename",
                "indexname",
                "tablespace",
                "indexdef",
            ]
            .map(|n| datafusion::arrow::datatypes::Field::new(n, DataType::Utf8, n == "tablespace"))
            .to_vec(),
        ))
    }
}

#[async_trait]
impl TableProvider for PgIndexes {
    fn schema(&self) -> SchemaRef {
        Self::columns()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut tables: Vec<Arc<crate::store::TableDef>> = self
            .shared
            .upgrade()
            .map(|s| s.catalog().into_values().collect())
            .unwrap_or_default();
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        let rows: Vec<(&str, &str, String, String)> = tables
            .iter()
            .flat_map(|def| {
                shown_constraints(def, 0)
                    .into_iter()
                    .filter(|s| s.index_oid.is_some())
                    .map(|s| {
                        (
                            def.schema(),
                            def.relname(),
                            s.name.clone(),
                            s.index_definition(def),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let schema = Self::columns();
        let batch = build_rows(
            &schema,
            rows.len(),
            |c, r| {
                let (namespace, table, index, definition) = &rows[r];
                Some(Cell::Text(match c {
                    "schemaname" => namespace.to_string(),
                    "tablename" => table.to_string(),
                    "indexname" => index.clone(),
                    "indexdef" => definition.clone(),
                    _ => return None,
                }))
            },
            None,
        )?;
        memory_exec(schema, vec![batch], projection)
    }
}

/// `pg_class` columns the emulation lacks, added as NULL text arrays.
const PG_CLASS_EXTRA: [&str; 2] = ["reloptions", "relacl"];

/// Which catalog table a [`PrimaryKeys`] overlay adds rows to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyTable {
    Class,
    Index,
    Constraint,
}

/// `pg_class`, `pg_index` and `pg_constraint` with the primary key of each of the
/// proxy's tables: an index `<table>_pkey` (relkind `i`, btree, unique, primary) and a
/// constraint of type `p`, so `\d`, ORMs and JDBC metadata see the key.
#[derive(Debug)]
struct PrimaryKeys {
    kind: KeyTable,
    table: Arc<dyn TableProvider>,
    classes: Arc<dyn TableProvider>,
    namespaces: Arc<dyn TableProvider>,
    shared: Weak<Core>,
    seen: Seen,
}

/// A value for a catalog column, cast to the column's type when the batch is built.
enum Cell {
    Int(i64),
    Text(String),
    Bool(bool),
}

impl Cell {
    fn scalar(&self, ty: &DataType) -> DfResult<datafusion::common::ScalarValue> {
        use datafusion::common::ScalarValue;
        let v = match self {
            Cell::Int(i) => ScalarValue::Int64(Some(*i)),
            Cell::Text(s) => ScalarValue::Utf8(Some(s.clone())),
            Cell::Bool(b) => ScalarValue::Boolean(Some(*b)),
        };
        v.cast_to(ty)
    }
}

/// Rows for `schema`: each column from `cell(column, row)`, else from row `base[row]` of
/// `from` (when given), else NULL.
/// A scan of rows made in memory: `batches` of `schema`, projected.
fn memory_exec(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    projection: Option<&Vec<usize>>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    Ok(MemorySourceConfig::try_new_exec(
        &[batches],
        schema,
        projection.cloned(),
    )?)
}

fn build_rows(
    schema: &SchemaRef,
    n: usize,
    cell: impl Fn(&str, usize) -> Option<Cell>,
    from: Option<(&RecordBatch, &[usize])>,
) -> DfResult<RecordBatch> {
    use datafusion::common::ScalarValue;
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (ci, field) in schema.fields().iter().enumerate() {
        let mut values = Vec::with_capacity(n);
        for row in 0..n {
            let v = match cell(field.name(), row) {
                Some(c) => c.scalar(field.data_type())?,
                None => match from {
                    Some((b, rows)) => ScalarValue::try_from_array(b.column(ci), rows[row])?,
                    None => ScalarValue::try_from(field.data_type())?,
                },
            };
            values.push(v);
        }
        columns.push(if n == 0 {
            datafusion::arrow::array::new_empty_array(field.data_type())
        } else {
            ScalarValue::iter_to_array(values)?
        });
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[async_trait]
impl TableProvider for PrimaryKeys {
    fn schema(&self) -> SchemaRef {
        let inner = self.table.schema();
        if self.kind != KeyTable::Class {
            return inner;
        }
        // Array columns psql's `\d+` and `\dp` read and the emulation lacks: all NULL.
        let text_array = DataType::List(Arc::new(
            datafusion::arrow::datatypes::Field::new_list_field(DataType::Utf8, true),
        ));
        let extra: Vec<_> = PG_CLASS_EXTRA
            .iter()
            .map(|name| (*name, text_array.clone()))
            .collect();
        with_columns(&inner, &extra)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = self.table.schema();
        let mut batches = read_all(&self.table, state).await?;
        let tables = self
            .shared
            .upgrade()
            .map(|s| s.catalog())
            .unwrap_or_default();
        // (table oid, namespace oid, def, the batch and row of its pg_class entry)
        let mut found = Vec::new();
        let classes = if self.kind == KeyTable::Class {
            batches.clone()
        } else {
            read_all(&self.classes, state).await?
        };
        let spaces = Namespaces::read(&self.namespaces, state).await?;
        for (bi, b) in classes.iter().enumerate() {
            let (Some(oid), Some(name), Some(ns)) = (
                column(b, "oid").and_then(|c| c.as_primitive_opt::<Int32Type>()),
                column(b, "relname").and_then(|c| c.as_string_opt::<i32>()),
                column(b, "relnamespace").and_then(|c| c.as_primitive_opt::<Int32Type>()),
            ) else {
                continue;
            };
            let kind = column(b, "relkind").and_then(|c| c.as_string_opt::<i32>());
            for i in 0..b.num_rows() {
                if kind.is_some_and(|k| k.value(i) != "r") {
                    continue;
                }
                let key = spaces.key(ns.value(i), name.value(i));
                if let Some(def) = key.and_then(|k| tables.get(&k)) {
                    found.push((oid.value(i), ns.value(i), def.clone(), bi, i));
                }
            }
        }
        if self.kind == KeyTable::Class {
            note_hidden_relations(
                &self.seen.0,
                &classes,
                &read_all(&self.namespaces, state).await?,
            );
        }
        {
            let mut defaults = self.seen.0.defaults.write();
            for (oid, _, def, _, _) in &found {
                defaults.insert(
                    *oid,
                    def.columns.iter().map(|c| c.default.clone()).collect(),
                );
            }
        }
        // Each table's constraints, with the table's OID, namespace and pg_class row.
        let shown: Vec<(
            i32,
            i32,
            Arc<crate::store::TableDef>,
            Vec<Shown>,
            usize,
            usize,
        )> = found
            .iter()
            .map(|(oid, ns, def, bi, row)| {
                (
                    *oid,
                    *ns,
                    def.clone(),
                    shown_constraints(def, *oid),
                    *bi,
                    *row,
                )
            })
            .collect();
        {
            let mut registry = self.seen.0.keys.write();
            for (_, _, def, list, _, _) in &shown {
                for s in list {
                    let names = names_of(def, &s.columns);
                    let pretty = s.pretty.clone().unwrap_or_else(|| s.definition.clone());
                    registry.insert(s.oid, (s.definition.clone(), pretty, names.clone()));
                    if let Some(i) = s.index_oid {
                        let index = s.index_definition(def);
                        registry.insert(i, (index.clone(), index, names));
                    }
                }
            }
        }
        let indexes: Vec<(i32, &Arc<crate::store::TableDef>, &Shown, usize, usize)> = shown
            .iter()
            .flat_map(|(oid, _, def, list, bi, row)| {
                list.iter()
                    .filter(|s| s.index_oid.is_some())
                    .map(move |s| (*oid, def, s, *bi, *row))
            })
            .collect();
        let constraints: Vec<(i32, i32, &Arc<crate::store::TableDef>, &Shown, &[Shown])> = shown
            .iter()
            .flat_map(|(oid, ns, def, list, _, _)| {
                list.iter()
                    .filter(|s| s.constraint)
                    .map(move |s| (*oid, *ns, def, s, list.as_slice()))
            })
            .collect();
        let conkey = |cols: &[usize]| {
            format!(
                "{{{}}}",
                cols.iter()
                    .map(|k| (k + 1).to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        let joined = |cols: &[usize]| {
            cols.iter()
                .map(|k| (k + 1).to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let extra = match self.kind {
            KeyTable::Class => {
                // The tables now have an index; the index is a relation of its own.
                // psql's `\d` lists CHECK constraints of a table whose `relchecks` is
                // not 0, and foreign keys (both ways) of one with `relhastriggers`.
                let referenced: std::collections::HashSet<&str> = found
                    .iter()
                    .flat_map(|f| f.2.foreign_keys.iter().map(|k| k.table.as_str()))
                    .collect();
                for (bi, b) in batches.iter_mut().enumerate() {
                    let rows: Vec<(usize, &Arc<crate::store::TableDef>)> = found
                        .iter()
                        .filter(|f| f.3 == bi)
                        .map(|f| (f.4, &f.2))
                        .collect();
                    if rows.is_empty() || column(b, "relhasindex").is_none() {
                        continue;
                    }
                    let all: Vec<usize> = (0..b.num_rows()).collect();
                    *b = build_rows(
                        &schema,
                        b.num_rows(),
                        |c, r| {
                            let (_, def) = rows.iter().find(|(row, _)| *row == r)?;
                            match c {
                                "relhasindex" => Some(Cell::Bool(true)),
                                "relchecks" => Some(Cell::Int(def.checks.len() as i64)),
                                "relhastriggers" => Some(Cell::Bool(
                                    !def.foreign_keys.is_empty()
                                        || referenced.contains(def.name.as_str()),
                                )),
                                _ => None,
                            }
                        },
                        Some((&*b, &all)),
                    )?;
                }
                let mut out = Vec::new();
                for (_, _, s, bi, row) in &indexes {
                    let keys = s.columns.len() as i64;
                    out.push(build_rows(
                        &schema,
                        1,
                        |c, _| match c {
                            "oid" => s.index_oid.map(|o| Cell::Int(i64::from(o))),
                            "relname" => Some(Cell::Text(s.name.clone())),
                            "relkind" => Some(Cell::Text("i".into())),
                            "reltype" | "reloftype" | "reltoastrelid" => Some(Cell::Int(0)),
                            "relam" => Some(Cell::Int(if s.kind == 'i' {
                                access_method_oid(&s.definition)
                            } else {
                                403
                            })),
                            "relnatts" => Some(Cell::Int(keys)),
                            "relhasindex" | "relhasrules" | "relhastriggers" | "relhassubclass" => {
                                Some(Cell::Bool(false))
                            }
                            _ => None,
                        },
                        Some((&batches[*bi], &[*row])),
                    )?);
                }
                // Sequences are relations too (relkind `S`: psql's `\ds`).
                let mut seqs = self
                    .shared
                    .upgrade()
                    .map(|s| s.sequence_defs())
                    .unwrap_or_default();
                seqs.sort_by(|a, b| a.name.cmp(&b.name));

                // The other columns as a table's (any relation's, without one) has them.
                let template = found.first().map(|f| (f.3, f.4)).or_else(|| {
                    batches
                        .iter()
                        .position(|b| b.num_rows() > 0)
                        .map(|bi| (bi, 0))
                });
                for seq in &seqs {
                    out.push(build_rows(
                        &schema,
                        1,
                        |c, _| match c {
                            "oid" => Some(Cell::Int(i64::from(sequence_oid(&seq.name)))),
                            "relname" => Some(Cell::Text(seq.relname().to_string())),
                            "relnamespace" => {
                                spaces.oid(seq.schema()).map(|p| Cell::Int(i64::from(p)))
                            }
                            "relkind" => Some(Cell::Text("S".into())),
                            "relpersistence" => Some(Cell::Text("p".into())),
                            "reltype" | "reloftype" | "reltoastrelid" | "relam" => {
                                Some(Cell::Int(0))
                            }
                            "relnatts" => Some(Cell::Int(3)),
                            "relhasindex" | "relhasrules" | "relhastriggers" | "relhassubclass"
                            | "relisshared" => Some(Cell::Bool(false)),
                            _ => None,
                        },
                        template
                            .as_ref()
                            .map(|(bi, row)| (&batches[*bi], std::slice::from_ref(row))),
                    )?);
                }
                out
            }
            KeyTable::Index => {
                vec![build_rows(
                    &schema,
                    indexes.len(),
                    |c, r| {
                        let (oid, _, s, _, _) = indexes[r];
                        let zeros = vec!["0"; s.columns.len().max(1)].join(" ");
                        Some(match c {
                            "indexrelid" => Cell::Int(i64::from(s.index_oid?)),
                            "indrelid" => Cell::Int(i64::from(oid)),
                            "indnatts" | "indnkeyatts" => Cell::Int(s.columns.len().max(1) as i64),
                            "indisprimary" => Cell::Bool(s.kind == 'p'),
                            "indisunique" | "indimmediate" => Cell::Bool(s.kind != 'i'),
                            "indisvalid" | "indisready" | "indislive" => Cell::Bool(true),
                            "indnullsnotdistinct"
                            | "indisexclusion"
                            | "indisclustered"
                            | "indcheckxmin"
                            | "indisreplident" => Cell::Bool(false),
                            // An expression index has 0 for its expression.
                            "indkey" if s.columns.is_empty() => Cell::Text("0".into()),
                            "indkey" => Cell::Text(joined(&s.columns)),
                            "indoption" if s.options.iter().any(|o| *o != 0) => Cell::Text(
                                s.options
                                    .iter()
                                    .map(ToString::to_string)
                                    .collect::<Vec<_>>()
                                    .join(" "),
                            ),
                            "indcollation" | "indclass" | "indoption" => Cell::Text(zeros),
                            _ => return None,
                        })
                    },
                    None,
                )?]
            }
            KeyTable::Constraint => {
                vec![build_rows(
                    &schema,
                    constraints.len(),
                    |c, r| {
                        let (oid, ns, _, s, _) = constraints[r];
                        // A foreign key's referenced table, its shown constraints, and
                        // the positions of the referenced columns there.
                        let foreign = s.foreign.as_ref().and_then(|f| {
                            let (poid, _, pdef, plist, _, _) =
                                shown.iter().find(|x| x.2.name == f.table)?;
                            let cols: Vec<usize> = f
                                .referenced
                                .iter()
                                .filter_map(|n| pdef.column_index(n))
                                .collect();
                            let index = referenced_constraint(pdef, plist, f)
                                .and_then(|u| u.index_oid)
                                .unwrap_or(0);
                            Some((*poid, cols, index, f))
                        });
                        Some(match c {
                            "oid" => Cell::Int(i64::from(s.oid)),
                            "conname" => Cell::Text(s.name.clone()),
                            "connamespace" => Cell::Int(i64::from(ns)),
                            "contype" => Cell::Text(s.kind.to_string()),
                            "condeferrable" => {
                                Cell::Bool(s.foreign.as_ref().is_some_and(|f| f.deferrable))
                            }
                            "condeferred" => {
                                Cell::Bool(s.foreign.as_ref().is_some_and(|f| f.initially_deferred))
                            }
                            "convalidated" | "conislocal" => Cell::Bool(true),
                            "connoinherit" => Cell::Bool(s.kind != 'c'),
                            "conrelid" => Cell::Int(i64::from(oid)),
                            "conindid" => Cell::Int(i64::from(
                                s.index_oid.or(foreign.as_ref().map(|f| f.2)).unwrap_or(0),
                            )),
                            "confrelid" => {
                                Cell::Int(i64::from(foreign.as_ref().map_or(0, |f| f.0)))
                            }
                            "contypid" | "conparentid" | "coninhcount" => Cell::Int(0),
                            "confupdtype" => Cell::Text(
                                foreign
                                    .as_ref()
                                    .map_or(' ', |f| f.3.on_update.code())
                                    .to_string(),
                            ),
                            "confdeltype" => Cell::Text(
                                foreign
                                    .as_ref()
                                    .map_or(' ', |f| f.3.on_delete.code())
                                    .to_string(),
                            ),
                            "confmatchtype" => {
                                Cell::Text(if foreign.is_some() { "s" } else { " " }.into())
                            }
                            "conkey" => Cell::Text(conkey(&s.columns)),
                            "confkey" => Cell::Text(conkey(&foreign.as_ref()?.1)),
                            _ => return None,
                        })
                    },
                    None,
                )?]
            }
        };
        if self.kind == KeyTable::Constraint {
            for b in &mut batches {
                *b = int2_arrays_as_postgres_prints_them(b)?;
            }
        }
        batches.extend(extra.into_iter().filter(|b| b.num_rows() > 0));
        let full = self.schema();
        widen(&mut batches, &full)?;
        memory_exec(full, batches, projection)
    }
}

/// OIDs of constraints and indexes after a table's primary key: `EXTRA_OID_BASE + table
/// * 64 + 2n` for the n-th (from 1) constraint and `+ 1` for its index.
pub const EXTRA_OID_BASE: i32 = 100_000_000;

/// A table's constraint as the catalog shows it (`pg_constraint`, `pg_index`,
/// `information_schema`, `pg_get_constraintdef`).
#[derive(Debug, Clone)]
pub(crate) struct Shown {
    /// `p`, `u`, `c` or `f`, as `pg_constraint.contype`; `i` for an index on json values
    /// (no constraint).
    pub kind: char,
    pub name: String,
    /// Positions of the constrained columns (a CHECK's: the columns it names).
    pub columns: Vec<usize>,
    pub oid: i32,
    /// The index behind a primary key or UNIQUE constraint.
    pub index_oid: Option<i32>,
    /// `pg_get_constraintdef(oid)` (not pretty).
    pub definition: String,
    /// `pg_get_constraintdef(oid, true)`, where it differs (a CHECK: as written).
    pub pretty: Option<String>,
    /// A foreign key's referenced table, its columns' positions there, and the actions.
    pub foreign: Option<crate::store::ForeignKeyDef>,
    /// False for a unique index that is not a constraint (`CREATE UNIQUE INDEX`).
    pub constraint: bool,
    /// `pg_index.indoption` of each key (1: DESC, 2: NULLS FIRST); empty for all 0.
    pub options: Vec<i64>,
}

impl Shown {
    /// `pg_get_indexdef` of the index behind it.
    pub fn index_definition(&self, def: &crate::store::TableDef) -> String {
        if self.kind == 'i' {
            return self.definition.clone();
        }
        format!(
            "CREATE UNIQUE INDEX {} ON {}.{} USING btree ({})",
            self.name,
            def.schema(),
            def.relname(),
            names_of(def, &self.columns).join(", ")
        )
    }
}

/// `pg_am.oid` of the method an index definition names (`USING gin`); 0 for one the
/// catalog does not list (pgvector's `hnsw` and `ivfflat`).
/// pgvector's index access methods in `pg_am`, with OIDs just below its extension's.
/// pgvector's row in `pg_extension`: above 16383, the last OID PostgreSQL keeps for
/// its own objects, as an extension a database installed is (pg_dump dumps none below).
const PGVECTOR_EXTENSION_OID: i64 = 16391;

const PGVECTOR_ACCESS_METHODS: [(i64, &str); 2] = [(16381, "hnsw"), (16382, "ivfflat")];

fn access_method_oid(definition: &str) -> i64 {
    let method = definition
        .split_once(" USING ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("btree");
    match method {
        "btree" => 403,
        "hash" => 405,
        "gist" => 783,
        "gin" => 2742,
        "spgist" => 4000,
        "brin" => 3580,
        other => PGVECTOR_ACCESS_METHODS
            .iter()
            .find(|(_, name)| *name == other)
            .map_or(0, |(oid, _)| *oid),
    }
}

fn names_of(def: &crate::store::TableDef, cols: &[usize]) -> Vec<String> {
    cols.iter().map(|&c| def.columns[c].name.clone()).collect()
}

/// The constraints of `def` (whose OID is `oid`): its primary key, UNIQUE constraints,
/// CHECKs and foreign keys, in that order.
pub(crate) fn shown_constraints(def: &crate::store::TableDef, oid: i32) -> Vec<Shown> {
    let mut out = Vec::new();
    // A hidden key is no constraint a user made: Postgres has none for such a table.
    out.extend((!def.hidden_key()).then(|| Shown {
        kind: 'p',
        name: def.pk_name(),
        columns: def.primary_key.clone(),
        oid: CONSTRAINT_OID_BASE + oid,
        index_oid: Some(INDEX_OID_BASE + oid),
        definition: format!(
            "PRIMARY KEY ({})",
            names_of(def, &def.primary_key).join(", ")
        ),
        foreign: None,
        constraint: true,
        options: Vec::new(),
        pretty: None,
    }));
    let mut n = 0;
    let mut next = || {
        n += 1;
        EXTRA_OID_BASE.wrapping_add(oid.wrapping_mul(64)) + 2 * n
    };
    for u in &def.unique {
        let c = next();
        out.push(Shown {
            kind: 'u',
            name: u.name.clone(),
            columns: u.columns.clone(),
            oid: c,
            index_oid: Some(c + 1),
            definition: format!("UNIQUE ({})", names_of(def, &u.columns).join(", ")),
            foreign: None,
            constraint: !u.index_only,
            options: Vec::new(),
            pretty: None,
        });
    }
    for ch in &def.checks {
        let columns = crate::sql::constraints::check_columns(def, ch);
        out.push(Shown {
            kind: 'c',
            name: ch.name.clone(),
            columns,
            oid: next(),
            index_oid: None,
            definition: format!(
                "CHECK ({})",
                crate::sql::constraints::fully_parenthesized(&ch.expr)
            ),
            foreign: None,
            constraint: true,
            options: Vec::new(),
            pretty: Some(format!("CHECK ({})", ch.expr)),
        });
    }
    for f in &def.foreign_keys {
        let mut text = format!(
            "FOREIGN KEY ({}) REFERENCES {}({})",
            names_of(def, &f.columns).join(", "),
            f.table,
            f.referenced.join(", ")
        );
        use crate::store::RefAction;
        if f.on_update != RefAction::NoAction {
            text.push_str(&format!(" ON UPDATE {}", f.on_update.sql()));
        }
        if f.on_delete != RefAction::NoAction {
            text.push_str(&format!(" ON DELETE {}", f.on_delete.sql()));
        }
        if f.deferrable {
            text.push_str(" DEFERRABLE");
        }
        if f.initially_deferred {
            text.push_str(" INITIALLY DEFERRED");
        }
        out.push(Shown {
            kind: 'f',
            name: f.name.clone(),
            columns: f.columns.clone(),
            oid: next(),
            index_oid: None,
            definition: text,
            foreign: Some(f.clone()),
            constraint: true,
            options: Vec::new(),
            pretty: None,
        });
    }
    // Indexes on json values: indexes only, on an expression (or on the whole column).
    let mut seen_names: Vec<&str> = Vec::new();
    for j in &def.json_indexes {
        if seen_names.contains(&j.name.as_str()) {
            continue;
        }
        seen_names.push(&j.name);
        let c = next();
        out.push(Shown {
            kind: 'i',
            name: j.name.clone(),
            // An expression has no column of its own (`indkey` 0).
            columns: if j.path.is_empty() {
                vec![j.column]
            } else {
                vec![]
            },
            oid: c,
            index_oid: Some(c + 1),
            definition: j.definition.clone(),
            foreign: None,
            constraint: false,
            options: Vec::new(),
            pretty: None,
        });
    }
    // Every other index CREATE INDEX made (recorded only).
    for ix in &def.indexes {
        let c = next();
        out.push(Shown {
            kind: 'i',
            name: ix.name.clone(),
            columns: ix
                .keys
                .iter()
                .map(|k| k.column)
                .collect::<Option<Vec<usize>>>()
                .unwrap_or_default(),
            oid: c,
            index_oid: Some(c + 1),
            definition: ix.definition(def),
            foreign: None,
            constraint: false,
            options: ix.keys.iter().map(|k| index_option(&k.tail)).collect(),
            pretty: None,
        });
    }
    out
}

/// `pg_index.indoption` of a key from what follows it (`DESC`, `NULLS FIRST`): bit 1
/// for descending, bit 2 for nulls first (the default of a descending key).
fn index_option(tail: &str) -> i64 {
    let words: Vec<String> = tail
        .split_whitespace()
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let has = |pair: [&str; 2]| words.windows(2).any(|w| w[0] == pair[0] && w[1] == pair[1]);
    let desc = words.iter().any(|w| w == "DESC");
    let nulls_first = has(["NULLS", "FIRST"]) || (desc && !has(["NULLS", "LAST"]));
    i64::from(desc) | (i64::from(nulls_first) << 1)
}

/// The constraint (or index) of the referenced table a foreign key relies on: its
/// primary key or the UNIQUE constraint over the referenced columns.
pub(crate) fn referenced_constraint<'a>(
    parent: &crate::store::TableDef,
    shown: &'a [Shown],
    fk: &crate::store::ForeignKeyDef,
) -> Option<&'a Shown> {
    let mut wanted: Vec<usize> = fk
        .referenced
        .iter()
        .filter_map(|n| parent.column_index(n))
        .collect();
    wanted.sort_unstable();
    shown.iter().find(|s| {
        let mut c = s.columns.clone();
        c.sort_unstable();
        matches!(s.kind, 'p' | 'u') && c == wanted
    })
}

/// The pgvector version vectorgate answers as (its types, operators and functions are
/// those of pgvector 0.8).
pub const PGVECTOR_VERSION: &str = "0.8.0";

/// A catalog table with rows of the proxy's own after the emulation's.
#[derive(Debug)]
struct Appended {
    inner: Arc<dyn TableProvider>,
    namespaces: Arc<dyn TableProvider>,
    more: More,
}

#[derive(Debug)]
enum More {
    /// `pg_extension`: pgvector's `vector`, always installed (built in).
    Vector,
    /// `pg_database`: the databases CREATE DATABASE made, each like the server's own.
    Databases(DatabasesRef),
    /// `pg_am`: pgvector's index access methods, `hnsw` and `ivfflat`.
    AccessMethods,
    /// `pg_description`: pgvector's comment on its extension; `public`'s comment on the
    /// OID this catalog gives `public` (the emulation's rows name PostgreSQL's 2200).
    Descriptions,
}

#[async_trait]
impl TableProvider for Appended {
    fn schema(&self) -> SchemaRef {
        match self.more {
            // PostgreSQL 15's column the emulation lacks (pg_dump reads it).
            More::Databases(_) => {
                with_columns(&self.inner.schema(), &[("datcollversion", DataType::Utf8)])
            }
            _ => self.inner.schema(),
        }
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = self.schema();
        let mut batches = read_all(&self.inner, state).await?;
        widen(&mut batches, &schema)?;
        match &self.more {
            More::Vector => {
                let public = Namespaces::read(&self.namespaces, state)
                    .await?
                    .oid("public");
                batches.push(build_rows(
                    &schema,
                    1,
                    |c, _| match c {
                        "oid" => Some(Cell::Int(PGVECTOR_EXTENSION_OID)),
                        "extname" => Some(Cell::Text("vector".into())),
                        "extowner" => Some(Cell::Int(10)),
                        "extnamespace" => public.map(|p| Cell::Int(i64::from(p))),
                        "extrelocatable" => Some(Cell::Bool(true)),
                        "extversion" => Some(Cell::Text(PGVECTOR_VERSION.into())),
                        _ => None,
                    },
                    None,
                )?);
            }
            More::Descriptions => {
                const PG_NAMESPACE: i64 = 2615;
                const POSTGRES_PUBLIC: i64 = 2200;
                let public = Namespaces::read(&self.namespaces, state)
                    .await?
                    .oid("public");
                if let Some(public) = public {
                    for b in &mut batches {
                        let (Some(&k), Some(class)) = (
                            b.schema().index_of("objoid").ok().as_ref(),
                            column(b, "classoid"),
                        ) else {
                            continue;
                        };
                        let class = datafusion::arrow::compute::cast(class, &DataType::Int64)?;
                        let class = class.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                        let objects =
                            datafusion::arrow::compute::cast(b.column(k), &DataType::Int64)?;
                        let objects =
                            objects.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                        let fixed: datafusion::arrow::array::Int64Array = (0..b.num_rows())
                            .map(|r| {
                                let o = objects.is_valid(r).then(|| objects.value(r));
                                if o == Some(POSTGRES_PUBLIC) && class.value(r) == PG_NAMESPACE {
                                    Some(i64::from(public))
                                } else {
                                    o
                                }
                            })
                            .collect();
                        let mut columns = b.columns().to_vec();
                        columns[k] =
                            datafusion::arrow::compute::cast(&fixed, columns[k].data_type())?;
                        *b = RecordBatch::try_new(b.schema(), columns)?;
                    }
                }
                batches.push(build_rows(
                    &schema,
                    1,
                    |c, _| match c {
                        "objoid" => Some(Cell::Int(PGVECTOR_EXTENSION_OID)),
                        "classoid" => Some(Cell::Int(3079)),
                        "objsubid" => Some(Cell::Int(0)),
                        "description" => Some(Cell::Text(
                            "vector data type and ivfflat and hnsw access methods".into(),
                        )),
                        _ => None,
                    },
                    None,
                )?);
            }
            More::AccessMethods => {
                batches.push(build_rows(
                    &schema,
                    PGVECTOR_ACCESS_METHODS.len(),
                    |c, r| {
                        let (oid, name) = PGVECTOR_ACCESS_METHODS[r];
                        match c {
                            "oid" => Some(Cell::Int(oid)),
                            "amname" => Some(Cell::Text(name.into())),
                            "amhandler" => Some(Cell::Text(format!("{name}handler"))),
                            "amtype" => Some(Cell::Text("i".into())),
                            _ => None,
                        }
                    },
                    None,
                )?);
            }
            More::Databases(databases) => {
                // The locale provider is a "char" in PostgreSQL, `c` for libc (pg_dump
                // and psql's `\l` spell it out themselves); text sorts by byte order
                // here, which is the C.UTF-8 locale's (a dump's CREATE DATABASE says so).
                for b in &mut batches {
                    let mut columns = b.columns().to_vec();
                    for (name, value) in [
                        ("datlocprovider", "c"),
                        ("datcollate", "C.UTF-8"),
                        ("datctype", "C.UTF-8"),
                    ] {
                        if let Ok(k) = b.schema().index_of(name)
                            && columns[k].data_type() == &DataType::Utf8
                        {
                            columns[k] = Arc::new(datafusion::arrow::array::StringArray::from(
                                vec![value; b.num_rows()],
                            ));
                        }
                    }
                    *b = RecordBatch::try_new(b.schema(), columns)?;
                }
                let admin = databases.read().as_ref().and_then(|d| d.upgrade());
                let names = admin.map(|d| d.names()).unwrap_or_default();
                if let Some(template) = batches.iter().find(|b| b.num_rows() > 0).cloned()
                    && !names.is_empty()
                {
                    batches.push(build_rows(
                        &schema,
                        names.len(),
                        |c, r| match c {
                            "oid" => Some(Cell::Int(i64::from(database_oid(&names[r])))),
                            "datname" => Some(Cell::Text(names[r].clone())),
                            _ => None,
                        },
                        Some((&template, &vec![0; names.len()])),
                    )?);
                }
            }
        }
        memory_exec(schema, batches, projection)
    }
}

/// A catalog table that always has no rows here: there are no transforms, security
/// labels or rules. [`Nothing::columns`] are the Postgres columns of those the emulation
/// lacks (oids as `int4`, as the emulation has them).
#[derive(Debug)]
struct Nothing(SchemaRef);

impl Nothing {
    fn schema_of(columns: &[(&str, DataType)]) -> SchemaRef {
        Arc::new(datafusion::arrow::datatypes::Schema::new(
            columns
                .iter()
                .map(|(n, t)| datafusion::arrow::datatypes::Field::new(*n, t.clone(), true))
                .collect::<Vec<_>>(),
        ))
    }

    fn columns(table: &str) -> Option<&'static [(&'static str, DataType)]> {
        const TRANSFORM: &[(&str, DataType)] = &[
            ("oid", DataType::Int32),
            ("trftype", DataType::Int32),
            ("trflang", DataType::Int32),
            ("trffromsql", DataType::Int32),
            ("trftosql", DataType::Int32),
        ];
        const SECLABELS: &[(&str, DataType)] = &[
            ("objoid", DataType::Int32),
            ("classoid", DataType::Int32),
            ("objsubid", DataType::Int32),
            ("objtype", DataType::Utf8),
            ("objnamespace", DataType::Int32),
            ("objname", DataType::Utf8),
            ("provider", DataType::Utf8),
            ("label", DataType::Utf8),
        ];
        match table {
            "pg_transform" => Some(TRANSFORM),
            "pg_seclabels" => Some(SECLABELS),
            _ => None,
        }
    }
}

#[async_trait]
impl TableProvider for Nothing {
    fn schema(&self) -> SchemaRef {
        self.0.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        memory_exec(self.schema(), Vec::new(), projection)
    }
}

/// `pg_available_extensions`: PL/pgSQL and pgvector, both installed.
#[derive(Debug)]
pub(crate) struct PgAvailableExtensions;

#[async_trait]
impl TableProvider for PgAvailableExtensions {
    fn schema(&self) -> SchemaRef {
        Arc::new(datafusion::arrow::datatypes::Schema::new(
            ["name", "default_version", "installed_version", "comment"]
                .map(|n| datafusion::arrow::datatypes::Field::new(n, DataType::Utf8, true))
                .to_vec(),
        ))
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let rows = [
            ("plpgsql", "1.0", "PL/pgSQL procedural language"),
            (
                "vector",
                PGVECTOR_VERSION,
                "vector data type and ivfflat and hnsw access methods",
            ),
        ];
        let schema = self.schema();
        let batch = build_rows(
            &schema,
            rows.len(),
            |c, r| {
                let (name, version, comment) = rows[r];
                Some(Cell::Text(
                    match c {
                        "name" => name,
                        "default_version" | "installed_version" => version,
                        "comment" => comment,
                        _ => return None,
                    }
                    .into(),
                ))
            },
            None,
        )?;
        memory_exec(schema, vec![batch], projection)
    }
}

/// A created database's OID, the same in every query and on every proxy.
fn database_oid(name: &str) -> i32 {
    20_000 + (sequence_oid(name) % 100_000)
}

/// `pg_stat_progress_copy`: the COPYs running on this proxy, with their rows and bytes
/// so far, as in Postgres (`bytes_total` is 0: data from STDIN has no known size).
#[derive(Debug)]
struct PgStatProgressCopy {
    classes: Arc<dyn TableProvider>,
    namespaces: Arc<dyn TableProvider>,
    shared: Weak<Core>,
}

impl PgStatProgressCopy {
    fn columns() -> SchemaRef {
        use datafusion::arrow::datatypes::Field;
        Arc::new(datafusion::arrow::datatypes::Schema::new(
            [
                ("pid", DataType::Int32),
                ("datid", DataType::Int32),
                ("datname", DataType::Utf8),
                ("relid", DataType::Int32),
                ("command", DataType::Utf8),
                ("type", DataType::Utf8),
                ("bytes_processed", DataType::Int64),
                ("bytes_total", DataType::Int64),
                ("tuples_processed", DataType::Int64),
                ("tuples_excluded", DataType::Int64),
            ]
            .map(|(n, t)| Field::new(n, t, true))
            .to_vec(),
        ))
    }
}

#[async_trait]
impl TableProvider for PgStatProgressCopy {
    fn schema(&self) -> SchemaRef {
        Self::columns()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let running = self
            .shared
            .upgrade()
            .map(|s| s.copies.running())
            .unwrap_or_default();
        // Each table's OID, as pg_class gives it.
        let mut oids = HashMap::new();
        if !running.is_empty() {
            let spaces = Namespaces::read(&self.namespaces, state).await?;
            for b in read_all(&self.classes, state).await? {
                let (Some(oid), Some(name), Some(ns)) = (
                    column(&b, "oid").and_then(|c| c.as_primitive_opt::<Int32Type>()),
                    column(&b, "relname").and_then(|c| c.as_string_opt::<i32>()),
                    column(&b, "relnamespace").and_then(|c| c.as_primitive_opt::<Int32Type>()),
                ) else {
                    continue;
                };
                for i in 0..b.num_rows() {
                    if let Some(key) = spaces.key(ns.value(i), name.value(i)) {
                        oids.insert(key, oid.value(i));
                    }
                }
            }
        }
        let schema = Self::columns();
        let batch = build_rows(
            &schema,
            running.len(),
            |c, r| {
                let copy = &running[r];
                Some(match c {
                    "pid" => Cell::Int(i64::from(copy.pid)),
                    "datid" => Cell::Int(i64::from(database_oid(&copy.database))),
                    "datname" => Cell::Text(copy.database.clone()),
                    "relid" => Cell::Int(i64::from(*oids.get(&copy.table)?)),
                    "command" => Cell::Text(copy.command.into()),
                    "type" => Cell::Text("PIPE".into()),
                    "bytes_processed" => Cell::Int(copy.bytes() as i64),
                    "bytes_total" | "tuples_excluded" => Cell::Int(0),
                    "tuples_processed" => Cell::Int(copy.tuples() as i64),
                    _ => return None,
                })
            },
            None,
        )?;
        memory_exec(schema, vec![batch], projection)
    }
}
