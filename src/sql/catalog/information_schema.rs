//! `information_schema` in Postgres' words, and the key views the emulation lacks.

use super::*;

/// `information_schema` as DataFusion serves it, with `columns.data_type` in Postgres'
/// words (`bigint`, `double precision`, `USER-DEFINED` for `vector`...) and the
/// `udt_name` column BI tools filter on (Grafana, Metabase). DataFusion's own prints
/// Arrow types (`Int64`, `List(Float32)`).
#[derive(Debug)]
pub struct InformationSchema {
    pub inner: Arc<dyn SchemaProvider>,
    pub shared: Weak<Core>,
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
                "check_constraints",
                "sequences",
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

/// The information_schema views of constraints the emulation lacks: each table's primary
/// key, UNIQUE, CHECK and FOREIGN KEY constraints, as ORMs and BI tools (Metabase) read
/// them.
#[derive(Debug, Clone, Copy, PartialEq)]
enum KeyView {
    TableConstraints,
    KeyColumnUsage,
    ConstraintColumnUsage,
    ReferentialConstraints,
    CheckConstraints,
    /// Not a key view: the sequences (`CREATE SEQUENCE`, serial and identity columns').
    Sequences,
}

impl KeyView {
    fn named(name: &str) -> Option<KeyView> {
        Some(match name {
            "table_constraints" => KeyView::TableConstraints,
            "key_column_usage" => KeyView::KeyColumnUsage,
            "constraint_column_usage" => KeyView::ConstraintColumnUsage,
            "referential_constraints" => KeyView::ReferentialConstraints,
            "check_constraints" => KeyView::CheckConstraints,
            "sequences" => KeyView::Sequences,
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
            KeyView::CheckConstraints => &[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "check_clause",
            ],
            KeyView::Sequences => &[
                "sequence_catalog",
                "sequence_schema",
                "sequence_name",
                "data_type",
                "numeric_precision",
                "numeric_precision_radix",
                "numeric_scale",
                "start_value",
                "minimum_value",
                "maximum_value",
                "increment",
                "cycle_option",
            ],
        }
    }
}

#[derive(Debug)]
struct KeyViews {
    kind: KeyView,
    shared: Weak<Core>,
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
                    "ordinal_position"
                    | "position_in_unique_constraint"
                    | "numeric_precision"
                    | "numeric_precision_radix"
                    | "numeric_scale" => DataType::Int32,
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
        if self.kind == KeyView::Sequences {
            let Some(core) = self.shared.upgrade() else {
                return Err(datafusion::error::DataFusionError::Internal(
                    "the engine is gone".into(),
                ));
            };
            // As in Postgres, not the sequences behind identity columns (serial ones are).
            let identity = |owner: &Option<(String, String)>| {
                owner.as_ref().is_some_and(|(t, c)| {
                    core.table_stored_as(t).is_some_and(|d| {
                        d.columns
                            .iter()
                            .any(|x| x.stored_name() == c && x.identity.is_some())
                    })
                })
            };
            let mut seqs = core.sequence_defs();
            seqs.retain(|s| !identity(&s.owned_by));
            seqs.sort_by(|a, b| a.name.cmp(&b.name));
            let batch = build_rows(
                &schema,
                seqs.len(),
                |c, r| {
                    let s = &seqs[r];
                    let bits = match s.ty {
                        crate::types::ColumnType::SmallInt => 16,
                        crate::types::ColumnType::Int => 32,
                        _ => 64,
                    };
                    Some(match c {
                        "sequence_catalog" => Cell::Text(database.clone()),
                        "sequence_schema" => Cell::Text(s.schema().into()),
                        "sequence_name" => Cell::Text(s.relname().into()),
                        "data_type" => Cell::Text(s.ty.sql_name()),
                        "numeric_precision" => Cell::Int(bits),
                        "numeric_precision_radix" => Cell::Int(2),
                        "numeric_scale" => Cell::Int(0),
                        "start_value" => Cell::Text(s.start.to_string()),
                        "minimum_value" => Cell::Text(s.min.to_string()),
                        "maximum_value" => Cell::Text(s.max.to_string()),
                        "increment" => Cell::Text(s.increment.to_string()),
                        "cycle_option" => Cell::Text(if s.cycle { "YES" } else { "NO" }.into()),
                        _ => return None,
                    })
                },
                None,
            )?;
            return Ok(MemorySourceConfig::try_new_exec(
                &[vec![batch]],
                schema,
                projection.cloned(),
            )?);
        }
        let mut tables: Vec<Arc<crate::store::TableDef>> = self
            .shared
            .upgrade()
            .map(|s| s.tables())
            .unwrap_or_default();
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        let shown: Vec<Vec<Shown>> = tables.iter().map(|d| shown_constraints(d, 0)).collect();
        // For a foreign key: the referenced table, its constraint, and the referenced
        // columns' positions there.
        let referenced = |f: &crate::store::ForeignKeyDef| {
            let at = tables.iter().position(|t| t.name == f.table)?;
            let parent = &tables[at];
            let c = referenced_constraint(parent, &shown[at], f)?;
            let cols: Vec<usize> = f
                .referenced
                .iter()
                .filter_map(|n| parent.column_index(n))
                .collect();
            Some((parent, c, cols))
        };
        // One row per constraint, or per constraint column: (table, constraint, column
        // position in the list, the table the column belongs to, the column).
        type Row<'a> = (usize, &'a Shown, Option<usize>, &'a str, Option<String>);
        let mut rows: Vec<Row> = Vec::new();
        for (ti, list) in shown.iter().enumerate() {
            let def = &tables[ti];
            for s in list.iter().filter(|s| s.constraint) {
                match self.kind {
                    KeyView::TableConstraints => rows.push((ti, s, None, def.relname(), None)),
                    KeyView::ReferentialConstraints if s.kind == 'f' => {
                        rows.push((ti, s, None, def.relname(), None))
                    }
                    KeyView::KeyColumnUsage if s.kind != 'c' => {
                        for (i, &c) in s.columns.iter().enumerate() {
                            rows.push((
                                ti,
                                s,
                                Some(i),
                                def.relname(),
                                Some(def.columns[c].name.clone()),
                            ));
                        }
                    }
                    KeyView::ConstraintColumnUsage => match &s.foreign {
                        Some(f) => {
                            if let Some((parent, _, cols)) = referenced(f) {
                                for (i, c) in cols.into_iter().enumerate() {
                                    let name = parent.columns[c].name.clone();
                                    rows.push((ti, s, Some(i), parent.relname(), Some(name)));
                                }
                            }
                        }
                        None => {
                            for (i, &c) in s.columns.iter().enumerate() {
                                let name = def.columns[c].name.clone();
                                rows.push((ti, s, Some(i), def.relname(), Some(name)));
                            }
                        }
                    },
                    KeyView::CheckConstraints if s.kind == 'c' => {
                        rows.push((ti, s, None, def.relname(), None))
                    }
                    _ => {}
                }
            }
        }
        let batch = build_rows(
            &schema,
            rows.len(),
            |c, r| {
                let (ti, s, key, table, column) = &rows[r];
                let def = &tables[*ti];
                let kind = match s.kind {
                    'p' => "PRIMARY KEY",
                    'u' => "UNIQUE",
                    'c' => "CHECK",
                    _ => "FOREIGN KEY",
                };
                Some(match c {
                    "constraint_catalog" | "table_catalog" | "unique_constraint_catalog" => {
                        Cell::Text(database.clone())
                    }
                    "constraint_schema" | "table_schema" | "unique_constraint_schema" => {
                        Cell::Text(def.schema().into())
                    }
                    "constraint_name" => Cell::Text(s.name.clone()),
                    "table_name" if self.kind == KeyView::ConstraintColumnUsage => {
                        Cell::Text(table.to_string())
                    }
                    "table_name" => Cell::Text(def.relname().into()),
                    "constraint_type" => Cell::Text(kind.into()),
                    "is_deferrable" | "initially_deferred" => {
                        let yes = s.foreign.as_ref().is_some_and(|f| {
                            if c == "is_deferrable" {
                                f.deferrable
                            } else {
                                f.initially_deferred
                            }
                        });
                        Cell::Text(if yes { "YES" } else { "NO" }.into())
                    }
                    "enforced" => Cell::Text("YES".into()),
                    "nulls_distinct" if s.kind == 'u' => Cell::Text("YES".into()),
                    "column_name" => Cell::Text(column.clone()?),
                    "ordinal_position" => Cell::Int((*key)? as i64 + 1),
                    "position_in_unique_constraint" => {
                        let (_, u, cols) = referenced(s.foreign.as_ref()?)?;
                        let c = cols.get((*key)?)?;
                        Cell::Int(u.columns.iter().position(|x| x == c)? as i64 + 1)
                    }
                    "unique_constraint_name" => {
                        Cell::Text(referenced(s.foreign.as_ref()?)?.1.name.clone())
                    }
                    "match_option" => Cell::Text("NONE".into()),
                    "update_rule" => Cell::Text(s.foreign.as_ref()?.on_update.sql().into()),
                    "delete_rule" => Cell::Text(s.foreign.as_ref()?.on_delete.sql().into()),
                    "check_clause" => Cell::Text(s.definition.strip_prefix("CHECK ")?.to_string()),
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
/// name and schema, whether it is an identity column (and which kind), and (no
/// generated columns here) `NEVER`.
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
    shared: Weak<Core>,
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
        C::HalfVec(_) => ("USER-DEFINED", "halfvec"),
        C::SparseVec(_) => ("USER-DEFINED", "sparsevec"),
        C::Bit(_) => ("bit", "bit"),
        C::VarBit(_) => ("bit varying", "varbit"),
        C::Bytea => ("bytea", "bytea"),
        C::Numeric(..) => ("numeric", "numeric"),
        C::Jsonb => ("jsonb", "jsonb"),
        C::Json => ("json", "json"),
        C::Array(e) => (
            "ARRAY",
            match **e {
                C::SmallInt => "_int2",
                C::Real => "_float4",
                C::Double => "_float8",
                C::Bool => "_bool",
                C::Uuid => "_uuid",
                C::Timestamp => "_timestamp",
                C::TimestampTz => "_timestamptz",
                C::Date => "_date",
                C::Bytea => "_bytea",
                C::Numeric(..) => "_numeric",
                C::Jsonb => "_jsonb",
                C::Json => "_json",
                _ => "_text",
            },
        ),
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
            .map(|s| s.catalog())
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
            let mut defaults = Vec::with_capacity(b.num_rows());
            let mut identities = Vec::with_capacity(b.num_rows());
            let mut lengths: Vec<Option<i64>> = Vec::with_capacity(b.num_rows());
            // A hidden key is a system column: not in `information_schema.columns`.
            let mut shown = Vec::with_capacity(b.num_rows());
            for i in 0..b.num_rows() {
                let col = (!crate::sql::schemas::is_system(ts.value(i)))
                    .then(|| tables.get(&crate::store::qualified(ts.value(i), tn.value(i))))
                    .flatten()
                    .and_then(|def| def.columns.iter().find(|c| c.name == cn.value(i)));
                shown.push(!col.is_some_and(|c| c.hidden()));
                // An identity column's sequence is not a default here (as in Postgres).
                defaults.push(
                    col.filter(|c| c.identity.is_none())
                        .and_then(|c| c.default.clone()),
                );
                identities.push(col.and_then(|c| c.identity));
                let array = col.is_some_and(|c| c.ty.element().is_some());
                let declared = col.map(|c| match c.varchar {
                    Some(_) if array => ("ARRAY", "_varchar"),
                    Some(_) => ("character varying", "varchar"),
                    None => declared_type_names(&c.ty),
                });
                lengths.push(
                    col.and_then(|c| c.varchar)
                        .filter(|n| *n > 0 && !array)
                        .map(i64::from),
                );
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
                    Some(
                        if ["vector", "halfvec", "sparsevec"].contains(&u.as_str()) {
                            "public"
                        } else {
                            "pg_catalog"
                        },
                    )
                })
                .collect();
            let mut columns = b.columns().to_vec();
            columns[b.schema().index_of("data_type")?] = Arc::new(StringArray::from(data_types));
            if let Ok(k) = b.schema().index_of("column_default")
                && columns[k].data_type() == &DataType::Utf8
            {
                columns[k] = Arc::new(StringArray::from(defaults));
            }
            if let Ok(k) = b.schema().index_of("character_maximum_length") {
                let given: ArrayRef = Arc::new(datafusion::arrow::array::Int64Array::from(lengths));
                columns[k] = datafusion::arrow::compute::cast(&given, columns[k].data_type())?;
            }
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
            let is_identity: StringArray = identities
                .iter()
                .map(|i| Some(if i.is_some() { "YES" } else { "NO" }))
                .collect();
            let generation: StringArray = identities
                .iter()
                .map(|i| match i {
                    Some('a') => Some("ALWAYS"),
                    Some(_) => Some("BY DEFAULT"),
                    None => None,
                })
                .collect();
            columns.push(Arc::new(is_identity));
            columns.push(Arc::new(StringArray::from(vec!["NEVER"; n])));
            columns.push(Arc::new(generation));
            let batch = RecordBatch::try_new(schema.clone(), columns)?;
            out.push(datafusion::arrow::compute::filter_record_batch(
                &batch,
                &datafusion::arrow::array::BooleanArray::from(shown),
            )?);
        }
        Ok(MemorySourceConfig::try_new_exec(
            &[out],
            schema,
            projection.cloned(),
        )?)
    }
}
