//! Corrections to the emulated `pg_catalog` for the proxy's own tables: the generic
//! emulation derives a column's type from its Arrow type alone, so `vector(n)`, `uuid`,
//! `numeric(p,s)`, `jsonb` and `bigint[]` would all read as other types in psql's `\d`.
//! `pg_attribute` is patched with the declared types, and `format_type` learns pgvector's
//! `vector(n)`.

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

use super::tables::Shared;
use crate::types::ColumnType;

/// OID the proxy gives pgvector's `vector` type (as arrow-pg and the catalog do).
pub const VECTOR_OID: i32 = 16385;

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
        ColumnType::Vector(n) => (VECTOR_OID, *n as i32),
        ColumnType::Bytea => (17, -1),
        // Postgres' numeric typmod: ((precision << 16) | scale) + 4.
        ColumnType::Numeric(p, s) => (1700, ((*p as i32) << 16 | (*s as i32 & 0xffff)) + 4),
        ColumnType::Jsonb => (3802, -1),
    }
}

/// `pg_catalog` with `pg_attribute` corrected; every other table as the emulation has it.
#[derive(Debug)]
pub struct PgCatalogOverlay {
    pub inner: Arc<dyn SchemaProvider>,
    pub shared: Weak<Shared>,
}

#[async_trait]
impl SchemaProvider for PgCatalogOverlay {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let table = self.inner.table(name).await?;
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
            })));
        }
        if name != "pg_attribute" {
            return Ok(table);
        }
        let (Some(attributes), Some(classes)) = (table, self.inner.table("pg_class").await?) else {
            return Ok(None);
        };
        Ok(Some(Arc::new(PgAttribute {
            attributes,
            classes,
            shared: self.shared.clone(),
        })))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
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
        Ok(MemorySourceConfig::try_new_exec(
            &[out],
            self.schema.clone(),
            projection.cloned(),
        )?)
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
            if let Some(arr) = vector_array_row(b)? {
                extra.push(arr);
            }
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
                        if matches!(name.value(i), "vector" | "_vector") {
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
                *b = RecordBatch::try_new(schema, columns)?;
            }
        }
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            self.schema(),
            projection.cloned(),
        )?)
    }
}

/// The `_vector` row: the `vector` row with its own oid, name and element type; the
/// `vector` row itself gets `typarray` pointing at it (patched in place).
fn vector_array_row(b: &RecordBatch) -> DfResult<Option<RecordBatch>> {
    let Some(name) = column(b, "typname").and_then(|c| c.as_string_opt::<i32>()) else {
        return Ok(None);
    };
    let Some(i) = (0..b.num_rows()).find(|&i| name.value(i) == "vector") else {
        return Ok(None);
    };
    let row = b.slice(i, 1);
    let schema = row.schema();
    let mut columns = row.columns().to_vec();
    let set_int = |columns: &mut Vec<ArrayRef>, col: &str, v: i32| {
        if let Ok(k) = schema.index_of(col)
            && columns[k].data_type() == &DataType::Int32
        {
            columns[k] = Arc::new(Int32Array::from(vec![v]));
        }
    };
    set_int(&mut columns, "oid", VECTOR_OID + 1);
    set_int(&mut columns, "typelem", VECTOR_OID);
    set_int(&mut columns, "typarray", 0);
    set_int(&mut columns, "typlen", -1);
    if let Ok(k) = schema.index_of("typname") {
        columns[k] = Arc::new(datafusion::arrow::array::StringArray::from(vec!["_vector"]));
    }
    let set_text = |columns: &mut Vec<ArrayRef>, col: &str, v: &str| {
        if let Ok(k) = schema.index_of(col)
            && columns[k].data_type() == &DataType::Utf8
        {
            columns[k] = Arc::new(datafusion::arrow::array::StringArray::from(vec![v]));
        }
    };
    set_text(&mut columns, "typcategory", "A");
    // pgjdbc tells arrays by their input function.
    set_text(&mut columns, "typinput", "array_in");
    set_text(&mut columns, "typoutput", "array_out");
    set_text(&mut columns, "typreceive", "array_recv");
    set_text(&mut columns, "typsend", "array_send");
    Ok(Some(RecordBatch::try_new(schema, columns)?))
}

#[derive(Debug)]
struct PgAttribute {
    attributes: Arc<dyn TableProvider>,
    classes: Arc<dyn TableProvider>,
    shared: Weak<Shared>,
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
            let tables = shared.tables.read().clone();
            let mut declared: HashMap<i32, HashMap<String, (i32, i32)>> = HashMap::new();
            for b in read_all(&self.classes, state).await? {
                let (Some(oid), Some(name)) = (column(&b, "oid"), column(&b, "relname")) else {
                    continue;
                };
                let (Some(oid), Some(name)) = (
                    oid.as_primitive_opt::<Int32Type>(),
                    name.as_string_opt::<i32>(),
                ) else {
                    continue;
                };
                for i in 0..b.num_rows() {
                    if let Some(def) = tables.get(name.value(i)) {
                        declared.insert(
                            oid.value(i),
                            def.columns
                                .iter()
                                .map(|c| (c.name.clone(), pg_type_of(&c.ty)))
                                .collect(),
                        );
                    }
                }
            }
            for b in &mut batches {
                *b = patch(b, &declared)?;
            }
        }
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            self.schema(),
            projection.cloned(),
        )?)
    }
}

fn patch(
    b: &RecordBatch,
    declared: &HashMap<i32, HashMap<String, (i32, i32)>>,
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
    for i in 0..b.num_rows() {
        if let Some((t, m)) = declared
            .get(&rel.value(i))
            .and_then(|cols| cols.get(name.value(i)))
        {
            types[i] = Some(*t);
            mods[i] = Some(*m);
        }
    }
    let mut columns = b.columns().to_vec();
    let schema = b.schema();
    columns[schema.index_of("atttypid")?] = Arc::new(Int32Array::from(types));
    columns[schema.index_of("atttypmod")?] = Arc::new(Int32Array::from(mods));
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// `format_type(oid, typmod)` that knows `vector(n)` and the typmods above, and leaves
/// every other type to the emulation's own function.
#[derive(Debug)]
pub struct FormatType {
    inner: Arc<ScalarUDF>,
}

impl PartialEq for FormatType {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}
impl Eq for FormatType {}
impl std::hash::Hash for FormatType {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "vectorgate.format_type".hash(state);
    }
}

impl FormatType {
    pub fn new(inner: Arc<ScalarUDF>) -> FormatType {
        FormatType { inner }
    }
}

impl ScalarUDFImpl for FormatType {
    fn name(&self) -> &str {
        "format_type"
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let base = self.inner.invoke_with_args(args)?.into_array(n)?;
        let base = base.as_string::<i32>();
        let int_at = |a: &ArrayRef, i: usize| -> Option<i64> {
            if a.is_null(i) {
                return None;
            }
            match a.data_type() {
                DataType::Int32 => Some(a.as_primitive::<Int32Type>().value(i) as i64),
                DataType::Int64 => Some(
                    a.as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                        .value(i),
                ),
                _ => None,
            }
        };
        let mut out = StringBuilder::with_capacity(n, n * 8);
        for i in 0..n {
            let oid = int_at(&arrays[0], i);
            let typmod = arrays.get(1).and_then(|a| int_at(a, i)).unwrap_or(-1);
            match oid {
                Some(o) if o == VECTOR_OID as i64 => {
                    if typmod > 0 {
                        out.append_value(format!("vector({typmod})"))
                    } else {
                        out.append_value("vector")
                    }
                }
                Some(1700) if typmod >= 4 => {
                    let t = typmod - 4;
                    out.append_value(format!("numeric({},{})", t >> 16, t & 0xffff));
                }
                Some(2950) => out.append_value("uuid"),
                Some(3802) => out.append_value("jsonb"),
                Some(1016) => out.append_value("bigint[]"),
                _ if base.is_null(i) => out.append_null(),
                _ => out.append_value(base.value(i)),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// An array function that also takes the text the catalog emulation keeps some array
/// columns in (`relacl`, `attacl`, `polroles`, ...; Postgres' `{a,b}` form): psql's `\dp`
/// joins ACLs with `array_to_string` and tests `oid = ANY (polroles)`. Arrays go to
/// DataFusion's own function.
#[derive(Debug)]
pub struct TextArrays {
    inner: Arc<ScalarUDF>,
    signature: Signature,
}

impl PartialEq for TextArrays {
    fn eq(&self, other: &Self) -> bool {
        self.inner.name() == other.inner.name()
    }
}
impl Eq for TextArrays {}
impl std::hash::Hash for TextArrays {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.name().hash(state);
    }
}

/// The functions [`TextArrays`] wraps.
pub const TEXT_ARRAY_FUNCTIONS: [&str; 2] = ["array_to_string", "array_has"];

impl TextArrays {
    pub fn new(inner: Arc<ScalarUDF>) -> TextArrays {
        TextArrays {
            inner,
            signature: Signature::user_defined(datafusion::logical_expr::Volatility::Immutable),
        }
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// The elements of an array in Postgres' text form (`{a,"b c"}`).
fn text_array_elements(text: &str) -> Vec<&str> {
    let inner = text.trim().trim_start_matches('{').trim_end_matches('}');
    if inner.is_empty() {
        return Vec::new();
    }
    inner
        .split(',')
        .map(|e| e.trim().trim_matches('"'))
        .collect()
}

impl ScalarUDFImpl for TextArrays {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        // A NULL array (what the catalog emulation makes of some subqueries) is NULL.
        if arg_types.first().is_some_and(|t| is_text(t) || t.is_null()) {
            return Ok(vec![DataType::Utf8; arg_types.len()]);
        }
        let fields: Vec<_> = arg_types
            .iter()
            .map(|t| {
                Arc::new(datafusion::arrow::datatypes::Field::new(
                    "a",
                    t.clone(),
                    true,
                ))
            })
            .collect();
        Ok(
            datafusion::logical_expr::type_coercion::functions::fields_with_udf(
                &fields,
                self.inner.as_ref(),
            )?
            .iter()
            .map(|f| f.data_type().clone())
            .collect(),
        )
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        if arg_types.first().is_some_and(is_text) {
            return Ok(match self.inner.name() {
                "array_has" => DataType::Boolean,
                _ => DataType::Utf8,
            });
        }
        self.inner.return_type(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if !args.args.first().is_some_and(|a| is_text(&a.data_type())) {
            return self.inner.invoke_with_args(args);
        }
        let n = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let text = arrays[0].as_string::<i32>();
        match self.inner.name() {
            "array_has" => {
                let needle = arrays[1].as_string::<i32>();
                let out: datafusion::arrow::array::BooleanArray = (0..n)
                    .map(|i| {
                        (!text.is_null(i) && !needle.is_null(i))
                            .then(|| text_array_elements(text.value(i)).contains(&needle.value(i)))
                    })
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
            _ => {
                let sep = arrays[1].as_string::<i32>();
                let out: datafusion::arrow::array::StringArray = (0..n)
                    .map(|i| {
                        (!text.is_null(i) && !sep.is_null(i))
                            .then(|| text_array_elements(text.value(i)).join(sep.value(i)))
                    })
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
        }
    }
}

/// The OID of a type by name, as Postgres' `to_regtype` (NULL when unknown): the
/// built-in types the proxy speaks, their arrays, and pgvector's `vector`.
pub fn type_oid(name: &str) -> Option<i32> {
    let n = name
        .trim()
        .trim_start_matches("pg_catalog.")
        .to_ascii_lowercase();
    let (base, array) = match (n.strip_suffix("[]"), n.strip_prefix('_')) {
        (Some(b), _) | (None, Some(b)) => (b.trim().to_string(), true),
        (None, None) => (n, false),
    };
    let (oid, array_oid) = match base.as_str() {
        "bool" | "boolean" => (16, 1000),
        "bytea" => (17, 1001),
        "char" | "\"char\"" => (18, 1002),
        "name" => (19, 1003),
        "int8" | "bigint" => (20, 1016),
        "int2" | "smallint" => (21, 1005),
        "int4" | "integer" | "int" => (23, 1007),
        "text" => (25, 1009),
        "oid" => (26, 1028),
        "json" => (114, 199),
        "float4" | "real" => (700, 1021),
        "float8" | "double precision" => (701, 1022),
        "varchar" | "character varying" => (1043, 1015),
        "date" => (1082, 1182),
        "time" | "time without time zone" => (1083, 1183),
        "timestamp" | "timestamp without time zone" => (1114, 1115),
        "timestamptz" | "timestamp with time zone" => (1184, 1185),
        "interval" => (1186, 1187),
        "numeric" | "decimal" => (1700, 1231),
        "uuid" => (2950, 2951),
        "bit" => (1560, 1561),
        "varbit" | "bit varying" => (1562, 1563),
        "jsonb" => (3802, 3807),
        "vector" | "public.vector" => (VECTOR_OID, VECTOR_OID + 1),
        _ => return None,
    };
    Some(if array { array_oid } else { oid })
}

/// Catalog functions drivers and psql call that DataFusion's catalog lacks.
pub fn extra_functions() -> Vec<datafusion::logical_expr::ScalarUDF> {
    use datafusion::arrow::array::{BooleanArray, Int32Array, StringArray};
    use datafusion::logical_expr::{Volatility, create_udf};
    let to_regtype = create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let names = arrays[0]
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| {
                    datafusion::error::DataFusionError::Internal("to_regtype expects text".into())
                })?;
            let out: Int32Array = names.iter().map(|n| n.and_then(type_oid)).collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    );
    let always_visible = |name: &str| {
        create_udf(
            name,
            vec![DataType::Int64],
            DataType::Boolean,
            Volatility::Stable,
            Arc::new(|args: &[ColumnarValue]| {
                let arrays = ColumnarValue::values_to_arrays(args)?;
                let a = &arrays[0];
                let out: BooleanArray = (0..a.len())
                    .map(|i| (!a.is_null(i)).then_some(true))
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }),
        )
    };
    // The session's own SETs are not visible here: the defaults drivers ask about.
    let current_setting = create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let names = arrays[0]
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| {
                    datafusion::error::DataFusionError::Internal(
                        "current_setting expects text".into(),
                    )
                })?;
            let mut out = Vec::with_capacity(names.len());
            for n in names.iter() {
                out.push(match n {
                    None => None,
                    Some(n) => Some(
                        super::statements::default_setting(&n.to_ascii_lowercase()).ok_or_else(
                            || {
                                datafusion::error::DataFusionError::from(
                                    crate::error::Error::UndefinedObject(format!(
                                        "unrecognized configuration parameter \"{n}\""
                                    )),
                                )
                            },
                        )?,
                    ),
                });
            }
            Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
        }),
    );
    let set_config = create_udf(
        "set_config",
        vec![DataType::Utf8, DataType::Utf8, DataType::Boolean],
        DataType::Utf8,
        Volatility::Volatile,
        Arc::new(|args: &[ColumnarValue]| Ok(args[1].clone())),
    );
    // What drivers parse (SQLAlchemy, DBeaver, ...): a Postgres version first.
    let version = create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|_args: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::Utf8(Some(format!(
                    "PostgreSQL {} (vectorgate {}) on x86_64-pc-linux-gnu, compiled by rustc, 64-bit",
                    crate::wire::SERVER_VERSION,
                    env!("CARGO_PKG_VERSION")
                ))),
            ))
        }),
    );
    let serial_sequence = create_udf(
        "pg_get_serial_sequence",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        // No column of the proxy's tables is backed by a sequence.
        Arc::new(|_args: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::Utf8(None),
            ))
        }),
    );
    // Descriptions, function signatures and tablespaces the proxy does not keep.
    let none = |name: &str, _inputs: Vec<DataType>| {
        datafusion::logical_expr::ScalarUDF::new_from_impl(NullText {
            name: name.to_string(),
            signature: Signature::variadic_any(Volatility::Stable),
        })
    };
    let table_is_visible = create_udf(
        "pg_table_is_visible",
        vec![DataType::Int64],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let oids = arrays[0].as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            let hidden = hidden_relations().read();
            let out: BooleanArray = oids
                .iter()
                .map(|o| o.map(|o| !i32::try_from(o).is_ok_and(|o| hidden.contains(&o))))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    );
    // `to_regclass(name)`: `schema.name` or a name on the search path; NULL if unknown.
    let to_regclass = create_udf(
        "to_regclass",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let names = arrays[0].as_string::<i32>();
            let oids = relation_oids().read();
            let out: Int32Array = names
                .iter()
                .map(|n| {
                    let n = n?.replace('"', "");
                    if n.contains('.') {
                        oids.get(&n).copied()
                    } else {
                        ["public", "pg_catalog"]
                            .iter()
                            .find_map(|s| oids.get(&format!("{s}.{n}")).copied())
                    }
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    );
    let mut out = key_functions();
    out.push(table_is_visible);
    out.push(to_regclass);
    out.push(PgGetExpr::udf());
    out.extend(vec![
        none("obj_description", vec![DataType::Int64, DataType::Utf8]),
        none("col_description", vec![DataType::Int64, DataType::Int64]),
        none("shobj_description", vec![DataType::Int64, DataType::Utf8]),
        none("pg_get_function_result", vec![DataType::Int64]),
        none("pg_get_function_arguments", vec![DataType::Int64]),
        none("pg_get_function_identity_arguments", vec![DataType::Int64]),
        none("pg_tablespace_location", vec![DataType::Int64]),
    ]);
    for f in [
        "pg_conversion_is_visible",
        "pg_operator_is_visible",
        "pg_opclass_is_visible",
        "pg_opfamily_is_visible",
        "pg_ts_config_is_visible",
        "pg_ts_dict_is_visible",
        "pg_ts_parser_is_visible",
        "pg_ts_template_is_visible",
        "pg_statistics_obj_is_visible",
    ] {
        out.push(always_visible(f));
    }
    out.extend(vec![
        datafusion::logical_expr::ScalarUDF::new_from_impl(JsonBuildObject::default()),
        datafusion::logical_expr::ScalarUDF::new_from_impl(PgTypeof {
            signature: Signature::any(1, Volatility::Immutable),
        }),
        version,
        serial_sequence,
        always_visible("pg_collation_is_visible"),
        to_regtype,
        current_setting,
        set_config,
        always_visible("pg_function_is_visible"),
        always_visible("pg_type_is_visible"),
    ]);
    out
}

/// A function of no arguments that answers `value` (the session's user).
pub fn constant_text(name: &str, value: &str) -> datafusion::logical_expr::ScalarUDF {
    let value = value.to_string();
    datafusion::logical_expr::create_udf(
        name,
        vec![],
        DataType::Utf8,
        datafusion::logical_expr::Volatility::Stable,
        Arc::new(move |_args: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::Utf8(Some(value.clone())),
            ))
        }),
    )
}

/// `json_build_object(key, value, ...)`, as ORMs use it in catalog queries.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonBuildObject {
    signature: Signature,
}

impl Default for JsonBuildObject {
    fn default() -> Self {
        JsonBuildObject {
            signature: Signature::variadic_any(datafusion::logical_expr::Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        if arrays.len() % 2 != 0 {
            return Err(crate::error::Error::InvalidParameter(
                "json_build_object needs an even number of arguments".into(),
            )
            .into());
        }
        let mut out = StringBuilder::with_capacity(n, n * 32);
        for row in 0..n {
            let mut obj = serde_json::Map::new();
            for pair in arrays.chunks(2) {
                let key = datafusion::common::ScalarValue::try_from_array(&pair[0], row)?;
                let value = datafusion::common::ScalarValue::try_from_array(&pair[1], row)?;
                let key = if key.is_null() {
                    String::new()
                } else {
                    key.to_string()
                };
                obj.insert(key, scalar_json(&value));
            }
            out.append_value(serde_json::Value::Object(obj).to_string());
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

fn scalar_json(v: &datafusion::common::ScalarValue) -> serde_json::Value {
    use datafusion::common::ScalarValue as S;
    match v {
        v if v.is_null() => serde_json::Value::Null,
        S::Boolean(Some(b)) => serde_json::Value::Bool(*b),
        S::Int8(Some(_))
        | S::Int16(Some(_))
        | S::Int32(Some(_))
        | S::Int64(Some(_))
        | S::UInt8(Some(_))
        | S::UInt16(Some(_))
        | S::UInt32(Some(_))
        | S::UInt64(Some(_))
        | S::Float32(Some(_))
        | S::Float64(Some(_)) => v
            .to_string()
            .parse::<serde_json::Number>()
            .map(serde_json::Value::Number)
            .unwrap_or_else(|_| serde_json::Value::String(v.to_string())),
        other => serde_json::Value::String(other.to_string()),
    }
}

/// A catalog function the proxy has nothing to answer with: NULL text, any arguments.
#[derive(Debug, PartialEq, Eq, Hash)]
struct NullText {
    name: String,
    signature: Signature,
}

impl ScalarUDFImpl for NullText {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Ok(ColumnarValue::Scalar(
            datafusion::common::ScalarValue::Utf8(None),
        ))
    }
}

/// `pg_get_expr(expr, relation [, pretty])`: the expression text the catalog keeps, NULL
/// for NULL (a plain index has no `indpred`; Metabase's index query tests `IS NULL`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgGetExpr {
    signature: Signature,
}

impl PgGetExpr {
    fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(PgGetExpr {
            signature: Signature::variadic_any(datafusion::logical_expr::Volatility::Stable),
        })
    }
}

impl ScalarUDFImpl for PgGetExpr {
    fn name(&self) -> &str {
        "pg_get_expr"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let expr = args
            .args
            .first()
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Plan("pg_get_expr(expr, relation)".into())
            })?
            .clone()
            .into_array(n)?;
        Ok(ColumnarValue::Array(datafusion::arrow::compute::cast(
            &expr,
            &DataType::Utf8,
        )?))
    }
}

/// `pg_typeof(x)`: the Postgres type of its argument, by the name `regtype` prints.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgTypeof {
    signature: Signature,
}

/// The name `regtype` prints for the Postgres type a result column of `field` has.
fn regtype_name(field: &datafusion::arrow::datatypes::Field) -> String {
    if field.metadata().contains_key(crate::types::PG_VECTOR_KEY) {
        return "vector".into();
    }
    let Ok(ty) = arrow_pg::datatypes::into_pg_type(field.data_type()) else {
        return "unknown".into();
    };
    let base = |name: &str| -> String {
        match name {
            "int2" => "smallint",
            "int4" => "integer",
            "int8" => "bigint",
            "float4" => "real",
            "float8" => "double precision",
            "bool" => "boolean",
            "varchar" => "character varying",
            "bpchar" => "character",
            "timestamp" => "timestamp without time zone",
            "timestamptz" => "timestamp with time zone",
            "time" => "time without time zone",
            other => other,
        }
        .to_string()
    };
    match ty.name().strip_prefix('_') {
        Some(elem) => format!("{}[]", base(elem)),
        None => base(ty.name()),
    }
}

impl ScalarUDFImpl for PgTypeof {
    fn name(&self) -> &str {
        "pg_typeof"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let name = args.arg_fields.first().map(|f| regtype_name(f));
        Ok(ColumnarValue::Scalar(
            datafusion::common::ScalarValue::Utf8(name),
        ))
    }
}

/// OIDs of the primary-key index and constraint of the table with OID `table`: the
/// catalog has no such rows, so they are derived from the table's own OID.
pub const INDEX_OID_BASE: i32 = 1_000_000;
pub const CONSTRAINT_OID_BASE: i32 = 2_000_000;

/// Table OID -> (table name, key column names), as last seen in `pg_class`, for
/// `pg_get_indexdef` and `pg_get_constraintdef`.
type KeyRegistry = parking_lot::RwLock<HashMap<i32, (String, Vec<String>)>>;

fn key_registry() -> &'static KeyRegistry {
    static KEYS: std::sync::OnceLock<KeyRegistry> = std::sync::OnceLock::new();
    KEYS.get_or_init(Default::default)
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

/// OIDs of relations outside the search path (`information_schema`), as last seen in
/// `pg_class`: `pg_table_is_visible` is false for them, as in Postgres, so psql's `\dp`
/// and tools that list "visible" tables leave them out.
fn hidden_relations() -> &'static parking_lot::RwLock<std::collections::HashSet<i32>> {
    static HIDDEN: std::sync::OnceLock<parking_lot::RwLock<std::collections::HashSet<i32>>> =
        std::sync::OnceLock::new();
    HIDDEN.get_or_init(Default::default)
}

/// `schema.relation` -> OID, as last seen in `pg_class`, for `to_regclass` of a computed
/// name (Metabase: `format('%I.%I', schema, table)::regclass`).
fn relation_oids() -> &'static parking_lot::RwLock<HashMap<String, i32>> {
    static OIDS: std::sync::OnceLock<parking_lot::RwLock<HashMap<String, i32>>> =
        std::sync::OnceLock::new();
    OIDS.get_or_init(Default::default)
}

fn note_hidden_relations(classes: &[RecordBatch], namespaces: &[RecordBatch]) {
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
    let mut hidden = hidden_relations().write();
    let mut oids = relation_oids().write();
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
    shared: Weak<Shared>,
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
            .map(|s| s.tables.read().clone())
            .unwrap_or_default();
        // (table oid, namespace oid, def, the batch and row of its pg_class entry)
        let mut found = Vec::new();
        let classes = if self.kind == KeyTable::Class {
            batches.clone()
        } else {
            read_all(&self.classes, state).await?
        };
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
                if let Some(def) = tables.get(name.value(i)) {
                    found.push((oid.value(i), ns.value(i), def.clone(), bi, i));
                }
            }
        }
        if self.kind == KeyTable::Class {
            note_hidden_relations(&classes, &read_all(&self.namespaces, state).await?);
        }
        {
            let mut registry = key_registry().write();
            for (oid, _, def, _, _) in &found {
                registry.insert(
                    *oid,
                    (
                        def.name.clone(),
                        def.primary_key
                            .iter()
                            .map(|&k| def.columns[k].name.clone())
                            .collect(),
                    ),
                );
            }
        }
        let attnums = |def: &crate::store::TableDef| -> Vec<i64> {
            def.primary_key.iter().map(|&k| k as i64 + 1).collect()
        };
        let joined = |nums: &[i64]| {
            nums.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let extra = match self.kind {
            KeyTable::Class => {
                // The tables now have an index; the index is a relation of its own.
                for (bi, b) in batches.iter_mut().enumerate() {
                    let rows: Vec<usize> =
                        found.iter().filter(|f| f.3 == bi).map(|f| f.4).collect();
                    if rows.is_empty() || column(b, "relhasindex").is_none() {
                        continue;
                    }
                    let all: Vec<usize> = (0..b.num_rows()).collect();
                    *b = build_rows(
                        &schema,
                        b.num_rows(),
                        |c, r| {
                            (c == "relhasindex" && rows.contains(&r)).then_some(Cell::Bool(true))
                        },
                        Some((&*b, &all)),
                    )?;
                }
                let mut out = Vec::new();
                for (oid, _, def, bi, row) in &found {
                    let keys = def.primary_key.len() as i64;
                    let name = format!("{}_pkey", def.name);
                    out.push(build_rows(
                        &schema,
                        1,
                        |c, _| match c {
                            "oid" => Some(Cell::Int(i64::from(INDEX_OID_BASE + oid))),
                            "relname" => Some(Cell::Text(name.clone())),
                            "relkind" => Some(Cell::Text("i".into())),
                            "reltype" | "reloftype" | "reltoastrelid" => Some(Cell::Int(0)),
                            "relam" => Some(Cell::Int(403)),
                            "relnatts" => Some(Cell::Int(keys)),
                            "relhasindex" | "relhasrules" | "relhastriggers" | "relhassubclass" => {
                                Some(Cell::Bool(false))
                            }
                            _ => None,
                        },
                        Some((&batches[*bi], &[*row])),
                    )?);
                }
                out
            }
            KeyTable::Index => {
                let n = found.len();
                vec![build_rows(
                    &schema,
                    n,
                    |c, r| {
                        let (oid, _, def, _, _) = &found[r];
                        let keys = attnums(def);
                        let zeros = vec!["0"; keys.len()].join(" ");
                        Some(match c {
                            "indexrelid" => Cell::Int(i64::from(INDEX_OID_BASE + oid)),
                            "indrelid" => Cell::Int(i64::from(*oid)),
                            "indnatts" | "indnkeyatts" => Cell::Int(keys.len() as i64),
                            "indisunique" | "indisprimary" | "indimmediate" | "indisvalid"
                            | "indisready" | "indislive" => Cell::Bool(true),
                            "indnullsnotdistinct"
                            | "indisexclusion"
                            | "indisclustered"
                            | "indcheckxmin"
                            | "indisreplident" => Cell::Bool(false),
                            "indkey" => Cell::Text(joined(&keys)),
                            "indcollation" | "indclass" | "indoption" => Cell::Text(zeros),
                            _ => return None,
                        })
                    },
                    None,
                )?]
            }
            KeyTable::Constraint => {
                let n = found.len();
                vec![build_rows(
                    &schema,
                    n,
                    |c, r| {
                        let (oid, ns, def, _, _) = &found[r];
                        let keys = attnums(def);
                        Some(match c {
                            "oid" => Cell::Int(i64::from(CONSTRAINT_OID_BASE + oid)),
                            "conname" => Cell::Text(format!("{}_pkey", def.name)),
                            "connamespace" => Cell::Int(i64::from(*ns)),
                            "contype" => Cell::Text("p".into()),
                            "condeferrable" | "condeferred" => Cell::Bool(false),
                            "convalidated" | "conislocal" | "connoinherit" => Cell::Bool(true),
                            "conrelid" => Cell::Int(i64::from(*oid)),
                            "conindid" => Cell::Int(i64::from(INDEX_OID_BASE + oid)),
                            "contypid" | "conparentid" | "confrelid" | "coninhcount" => {
                                Cell::Int(0)
                            }
                            "confupdtype" | "confdeltype" | "confmatchtype" => {
                                Cell::Text(" ".into())
                            }
                            "conkey" => Cell::Text(format!(
                                "{{{}}}",
                                keys.iter()
                                    .map(|k| k.to_string())
                                    .collect::<Vec<_>>()
                                    .join(",")
                            )),
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
        if full.fields().len() > schema.fields().len() {
            for b in &mut batches {
                let mut columns = b.columns().to_vec();
                for f in &full.fields()[schema.fields().len()..] {
                    columns.push(datafusion::arrow::array::new_null_array(
                        f.data_type(),
                        b.num_rows(),
                    ));
                }
                *b = RecordBatch::try_new(full.clone(), columns)?;
            }
        }
        let schema = full;
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            schema,
            projection.cloned(),
        )?)
    }
}

/// `pg_get_indexdef(oid [, column, pretty])` and `pg_get_constraintdef(oid [, pretty])`
/// for the primary keys of the proxy's tables; NULL for anything else.
#[derive(Debug, PartialEq, Eq, Hash)]
struct KeyDefinition {
    name: &'static str,
    signature: Signature,
}

impl ScalarUDFImpl for KeyDefinition {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        use datafusion::arrow::array::StringArray;
        let n = args.number_rows;
        let oids = args.args[0].clone().into_array(n)?;
        let oids = datafusion::arrow::compute::cast(&oids, &DataType::Int64)?;
        let oids = oids.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        // `pg_get_indexdef(index, column, pretty)`: column k > 0 is that key column's name.
        let column = match args.args.get(1) {
            Some(c) if self.name == "pg_get_indexdef" => {
                let c =
                    datafusion::arrow::compute::cast(&c.clone().into_array(n)?, &DataType::Int64)?;
                Some(
                    c.as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                        .clone(),
                )
            }
            _ => None,
        };
        let registry = key_registry().read();
        let index = self.name == "pg_get_indexdef";
        let base = i64::from(if index {
            INDEX_OID_BASE
        } else {
            CONSTRAINT_OID_BASE
        });
        let out: StringArray = (0..n)
            .map(|i| {
                if oids.is_null(i) {
                    return None;
                }
                let table = i32::try_from(oids.value(i) - base).ok()?;
                let (name, keys) = registry.get(&table)?;
                if let Some(k) = column
                    .as_ref()
                    .and_then(|c| (!c.is_null(i)).then(|| c.value(i)))
                    .filter(|k| *k > 0)
                {
                    return keys.get(k as usize - 1).cloned();
                }
                Some(if index {
                    format!(
                        "CREATE UNIQUE INDEX {name}_pkey ON public.{name} USING btree ({})",
                        keys.join(", ")
                    )
                } else {
                    format!("PRIMARY KEY ({})", keys.join(", "))
                })
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// The two key-definition functions, replacing the catalog emulation's.
pub fn key_functions() -> Vec<datafusion::logical_expr::ScalarUDF> {
    ["pg_get_indexdef", "pg_get_constraintdef"]
        .into_iter()
        .map(|name| {
            datafusion::logical_expr::ScalarUDF::new_from_impl(KeyDefinition {
                name,
                signature: Signature::variadic_any(datafusion::logical_expr::Volatility::Stable),
            })
        })
        .collect()
}

/// `information_schema` as DataFusion serves it, with `columns.data_type` in Postgres'
/// words (`bigint`, `double precision`, `USER-DEFINED` for `vector`...) and the
/// `udt_name` column BI tools filter on (Grafana, Metabase). DataFusion's own prints
/// Arrow types (`Int64`, `List(Float32)`).
#[derive(Debug)]
pub struct InformationSchema {
    pub inner: Arc<dyn SchemaProvider>,
    pub shared: Weak<Shared>,
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.extend(
            [
                "table_constraints",
                "key_column_usage",
                "constraint_column_usage",
                "referential_constraints",
            ]
            .map(String::from),
        );
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let table = self.inner.table(name).await?;
        match (name, table) {
            ("columns", Some(inner)) => Ok(Some(Arc::new(Columns {
                inner,
                shared: self.shared.clone(),
            }))),
            (_, None) => Ok(KeyView::named(name).map(|kind| {
                Arc::new(KeyViews {
                    kind,
                    shared: self.shared.clone(),
                }) as Arc<dyn TableProvider>
            })),
            (_, t) => Ok(t),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name) || KeyView::named(name).is_some()
    }
}

/// The information_schema views of keys the emulation lacks: each table's primary key
/// (vectorgate has no other constraints), as ORMs and BI tools (Metabase) read it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum KeyView {
    TableConstraints,
    KeyColumnUsage,
    ConstraintColumnUsage,
    ReferentialConstraints,
}

impl KeyView {
    fn named(name: &str) -> Option<KeyView> {
        Some(match name {
            "table_constraints" => KeyView::TableConstraints,
            "key_column_usage" => KeyView::KeyColumnUsage,
            "constraint_column_usage" => KeyView::ConstraintColumnUsage,
            "referential_constraints" => KeyView::ReferentialConstraints,
            _ => return None,
        })
    }

    fn columns(self) -> &'static [&'static str] {
        match self {
            KeyView::TableConstraints => &[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "table_catalog",
                "table_schema",
                "table_name",
                "constraint_type",
                "is_deferrable",
                "initially_deferred",
                "enforced",
                "nulls_distinct",
            ],
            KeyView::KeyColumnUsage => &[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "table_catalog",
                "table_schema",
                "table_name",
                "column_name",
                "ordinal_position",
                "position_in_unique_constraint",
            ],
            KeyView::ConstraintColumnUsage => &[
                "table_catalog",
                "table_schema",
                "table_name",
                "column_name",
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
            ],
            KeyView::ReferentialConstraints => &[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "unique_constraint_catalog",
                "unique_constraint_schema",
                "unique_constraint_name",
                "match_option",
                "update_rule",
                "delete_rule",
            ],
        }
    }
}

#[derive(Debug)]
struct KeyViews {
    kind: KeyView,
    shared: Weak<Shared>,
}

#[async_trait]
impl TableProvider for KeyViews {
    fn schema(&self) -> SchemaRef {
        let fields: Vec<_> = self
            .kind
            .columns()
            .iter()
            .map(|c| {
                let ty = match *c {
                    "ordinal_position" | "position_in_unique_constraint" => DataType::Int32,
                    _ => DataType::Utf8,
                };
                datafusion::arrow::datatypes::Field::new(*c, ty, true)
            })
            .collect();
        Arc::new(datafusion::arrow::datatypes::Schema::new(fields))
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
        let database = state.config().options().catalog.default_catalog.clone();
        let mut tables: Vec<Arc<crate::store::TableDef>> = self
            .shared
            .upgrade()
            .map(|s| s.tables.read().values().cloned().collect())
            .unwrap_or_default();
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        // One row per table, or per key column.
        let mut rows: Vec<(&Arc<crate::store::TableDef>, Option<usize>)> = Vec::new();
        for def in &tables {
            match self.kind {
                KeyView::TableConstraints => rows.push((def, None)),
                KeyView::KeyColumnUsage | KeyView::ConstraintColumnUsage => {
                    rows.extend((0..def.primary_key.len()).map(|i| (def, Some(i))))
                }
                KeyView::ReferentialConstraints => {}
            }
        }
        let batch = build_rows(
            &schema,
            rows.len(),
            |c, r| {
                let (def, key) = rows[r];
                Some(match c {
                    "constraint_catalog" | "table_catalog" => Cell::Text(database.clone()),
                    "constraint_schema" | "table_schema" => Cell::Text("public".into()),
                    "constraint_name" => Cell::Text(format!("{}_pkey", def.name)),
                    "table_name" => Cell::Text(def.name.clone()),
                    "constraint_type" => Cell::Text("PRIMARY KEY".into()),
                    "is_deferrable" | "initially_deferred" => Cell::Text("NO".into()),
                    "enforced" | "nulls_distinct" => Cell::Text("YES".into()),
                    "column_name" => Cell::Text(def.columns[def.primary_key[key?]].name.clone()),
                    "ordinal_position" => Cell::Int(key? as i64 + 1),
                    _ => return None,
                })
            },
            None,
        )?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            schema,
            projection.cloned(),
        )?)
    }
}

/// Columns of `information_schema.columns` the emulation lacks, in this order: the type's
/// name and schema, and (no identity or generated columns here) `NO`, `NEVER`, NULL.
const COLUMNS_EXTRA: [&str; 5] = [
    "udt_name",
    "udt_schema",
    "is_identity",
    "is_generated",
    "identity_generation",
];

#[derive(Debug)]
struct Columns {
    inner: Arc<dyn TableProvider>,
    shared: Weak<Shared>,
}

/// (data_type, udt_name) of a declared column type, as Postgres' information_schema says.
fn declared_type_names(ty: &crate::types::ColumnType) -> (&'static str, &'static str) {
    use crate::types::ColumnType as C;
    match ty {
        C::SmallInt => ("smallint", "int2"),
        C::Int => ("integer", "int4"),
        C::BigInt => ("bigint", "int8"),
        C::Real => ("real", "float4"),
        C::Double => ("double precision", "float8"),
        C::Bool => ("boolean", "bool"),
        C::Text => ("text", "text"),
        C::Uuid => ("uuid", "uuid"),
        C::Timestamp => ("timestamp without time zone", "timestamp"),
        C::TimestampTz => ("timestamp with time zone", "timestamptz"),
        C::Date => ("date", "date"),
        C::TextArray => ("ARRAY", "_text"),
        C::IntArray => ("ARRAY", "_int4"),
        C::BigIntArray => ("ARRAY", "_int8"),
        C::Vector(_) => ("USER-DEFINED", "vector"),
        C::Bytea => ("bytea", "bytea"),
        C::Numeric(..) => ("numeric", "numeric"),
        C::Jsonb => ("jsonb", "jsonb"),
    }
}

/// (data_type, udt_name) for an Arrow type as DataFusion prints it.
fn arrow_type_names(arrow: &str) -> (String, String) {
    let (d, u) = match arrow {
        "Int8" | "Int16" | "UInt8" => ("smallint", "int2"),
        "Int32" | "UInt16" => ("integer", "int4"),
        "Int64" | "UInt32" | "UInt64" => ("bigint", "int8"),
        "Float16" | "Float32" => ("real", "float4"),
        "Float64" => ("double precision", "float8"),
        "Boolean" => ("boolean", "bool"),
        "Utf8" | "LargeUtf8" | "Utf8View" => ("text", "text"),
        "Date32" | "Date64" => ("date", "date"),
        "Binary" | "LargeBinary" | "BinaryView" => ("bytea", "bytea"),
        a if a.starts_with("Timestamp(") && a.contains("Some(") => {
            ("timestamp with time zone", "timestamptz")
        }
        a if a.starts_with("Timestamp(") => ("timestamp without time zone", "timestamp"),
        a if a.starts_with("Decimal") => ("numeric", "numeric"),
        a if a.starts_with("List(") || a.starts_with("LargeList(") => ("ARRAY", "_text"),
        _ => ("USER-DEFINED", "unknown"),
    };
    (d.to_string(), u.to_string())
}

#[async_trait]
impl TableProvider for Columns {
    fn schema(&self) -> SchemaRef {
        let inner = self.inner.schema();
        let fields: Vec<_> = inner
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "ordinal_position" => Arc::new(f.as_ref().clone().with_data_type(DataType::Int32)),
                _ => f.clone(),
            })
            .collect();
        let inner = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
        with_columns(&inner, &COLUMNS_EXTRA.map(|c| (c, DataType::Utf8)))
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
        use datafusion::arrow::array::StringArray;
        let schema = self.schema();
        let tables = self
            .shared
            .upgrade()
            .map(|s| s.tables.read().clone())
            .unwrap_or_default();
        let mut out = Vec::new();
        for b in read_all(&self.inner, state).await? {
            let (Some(ts), Some(tn), Some(cn), Some(dt)) = (
                column(&b, "table_schema").and_then(|c| c.as_string_opt::<i32>()),
                column(&b, "table_name").and_then(|c| c.as_string_opt::<i32>()),
                column(&b, "column_name").and_then(|c| c.as_string_opt::<i32>()),
                column(&b, "data_type").and_then(|c| c.as_string_opt::<i32>()),
            ) else {
                continue;
            };
            let mut data_types = Vec::with_capacity(b.num_rows());
            let mut udt_names = Vec::with_capacity(b.num_rows());
            for i in 0..b.num_rows() {
                let declared = (ts.value(i) == "public")
                    .then(|| tables.get(tn.value(i)))
                    .flatten()
                    .and_then(|def| def.columns.iter().find(|c| c.name == cn.value(i)))
                    .map(|c| declared_type_names(&c.ty));
                let (d, u) = match declared {
                    Some((d, u)) => (d.to_string(), u.to_string()),
                    None => arrow_type_names(dt.value(i)),
                };
                data_types.push(d);
                udt_names.push(u);
            }
            let n = b.num_rows();
            let udt_schemas: StringArray = udt_names
                .iter()
                .map(|u| {
                    Some(if u == "vector" {
                        "public"
                    } else {
                        "pg_catalog"
                    })
                })
                .collect();
            let mut columns = b.columns().to_vec();
            columns[b.schema().index_of("data_type")?] = Arc::new(StringArray::from(data_types));
            // DataFusion counts columns from 0; Postgres from 1, as an integer.
            if let Ok(k) = b.schema().index_of("ordinal_position") {
                let zero_based = datafusion::arrow::compute::cast(&columns[k], &DataType::Int32)?;
                columns[k] = datafusion::arrow::compute::kernels::numeric::add(
                    &zero_based,
                    &Int32Array::new_scalar(1),
                )?;
            }
            columns.push(Arc::new(StringArray::from(udt_names)));
            columns.push(Arc::new(udt_schemas));
            columns.push(Arc::new(StringArray::from(vec!["NO"; n])));
            columns.push(Arc::new(StringArray::from(vec!["NEVER"; n])));
            columns.push(Arc::new(StringArray::from(vec![None::<&str>; n])));
            out.push(RecordBatch::try_new(schema.clone(), columns)?);
        }
        Ok(MemorySourceConfig::try_new_exec(
            &[out],
            schema,
            projection.cloned(),
        )?)
    }
}
