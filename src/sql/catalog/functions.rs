//! Functions drivers, psql and BI tools call that DataFusion's catalog emulation lacks or
//! answers differently: `format_type` with `vector(n)`, array functions over the catalog's
//! text arrays, `pg_typeof`, `pg_get_expr`, `pg_get_indexdef`/`pg_get_constraintdef`,
//! `to_regclass`, `version()`, `current_setting` and the visibility checks.

use super::*;

/// The function psql's column-default lookup is rewritten to.
pub const COLUMN_DEFAULT: &str = "vg_column_default";
/// The function psql's `conrelid::pg_catalog.regclass` (a table's name) becomes.
pub const RELATION_NAME: &str = "vg_relname";

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
                Some(o)
                    if o == VECTOR_OID as i64
                        || o == HALFVEC_OID as i64
                        || o == SPARSEVEC_OID as i64 =>
                {
                    let name = if o == VECTOR_OID as i64 {
                        "vector"
                    } else if o == HALFVEC_OID as i64 {
                        "halfvec"
                    } else {
                        "sparsevec"
                    };
                    if typmod > 0 {
                        out.append_value(format!("{name}({typmod})"))
                    } else {
                        out.append_value(name)
                    }
                }
                Some(o @ (1700 | 1231)) if typmod >= 4 => {
                    let t = typmod - 4;
                    let brackets = if o == 1231 { "[]" } else { "" };
                    out.append_value(format!("numeric({},{}){brackets}", t >> 16, t & 0xffff));
                }
                Some(1560) if typmod > 0 => out.append_value(format!("bit({typmod})")),
                Some(1562) if typmod > 0 => out.append_value(format!("bit varying({typmod})")),
                Some(1562) => out.append_value("bit varying"),
                Some(2950) => out.append_value("uuid"),
                Some(3802) => out.append_value("jsonb"),
                Some(114) => out.append_value("json"),
                Some(1016) => out.append_value("bigint[]"),
                Some(1015) if typmod > 4 => {
                    out.append_value(format!("character varying({})[]", typmod - 4))
                }
                Some(1015) => out.append_value("character varying[]"),
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
        "halfvec" | "public.halfvec" => (HALFVEC_OID, HALFVEC_OID + 1),
        "sparsevec" | "public.sparsevec" => (SPARSEVEC_OID, SPARSEVEC_OID + 1),
        _ => return None,
    };
    Some(if array { array_oid } else { oid })
}

/// Catalog functions drivers and psql call that DataFusion's catalog lacks.
pub fn extra_functions(seen: &Seen) -> Vec<datafusion::logical_expr::ScalarUDF> {
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
    // Without a session (the engine's own context): the defaults drivers ask about.
    let current_setting = current_setting_udf(Arc::new(|name: &str| {
        crate::sql::statements::default_setting(name).map(str::to_string)
    }));
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
                    crate::server_version(),
                    env!("CARGO_PKG_VERSION")
                ))),
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
        Arc::new({
            let seen = seen.clone();
            move |args: &[ColumnarValue]| {
                let arrays = ColumnarValue::values_to_arrays(args)?;
                let oids = arrays[0].as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                let hidden = seen.0.hidden.read();
                let out: BooleanArray = oids
                    .iter()
                    .map(|o| o.map(|o| !i32::try_from(o).is_ok_and(|o| hidden.contains(&o))))
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
        }),
    );
    // `to_regclass(name)`: `schema.name` or a name on the search path; NULL if unknown.
    let to_regclass = create_udf(
        "to_regclass",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new({
            let seen = seen.clone();
            move |args: &[ColumnarValue]| {
                let arrays = ColumnarValue::values_to_arrays(args)?;
                let names = arrays[0].as_string::<i32>();
                let oids = seen.0.oids.read();
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
            }
        }),
    );
    // `vg_relname(oid)`: a relation's name (`oid::regclass` as text), on the search path
    // bare, else schema-qualified; NULL if unknown.
    let relation_name = create_udf(
        RELATION_NAME,
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new({
            let seen = seen.clone();
            move |args: &[ColumnarValue]| {
                let arrays = ColumnarValue::values_to_arrays(args)?;
                let wanted = arrays[0].as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                let oids = seen.0.oids.read();
                let out: StringArray = wanted
                    .iter()
                    .map(|o| {
                        let o = i32::try_from(o?).ok()?;
                        let (name, _) = oids.iter().find(|(_, v)| **v == o)?;
                        Some(
                            name.strip_prefix("public.")
                                .or_else(|| name.strip_prefix("pg_catalog."))
                                .unwrap_or(name)
                                .to_string(),
                        )
                    })
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
        }),
    );
    // `vg_column_default(table oid, attnum)`: the column's DEFAULT text; psql's `\d`
    // asks `pg_attrdef` in a correlated subquery, which is rewritten to this.
    let column_default = create_udf(
        COLUMN_DEFAULT,
        vec![DataType::Int64, DataType::Int64],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new({
            let seen = seen.clone();
            move |args: &[ColumnarValue]| {
                let arrays = ColumnarValue::values_to_arrays(args)?;
                let rels = arrays[0].as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                let nums = arrays[1].as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                let defaults = seen.0.defaults.read();
                let out: datafusion::arrow::array::StringArray = rels
                    .iter()
                    .zip(nums.iter())
                    .map(|(r, n)| {
                        let cols = defaults.get(&i32::try_from(r?).ok()?)?;
                        cols.get(usize::try_from(n?).ok()?.checked_sub(1)?)?.clone()
                    })
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
        }),
    );
    let mut out = key_functions(seen);
    out.push(encoding_to_char());
    out.push(column_default);
    out.push(table_is_visible);
    out.push(to_regclass);
    out.push(relation_name);
    out.push(PgGetExpr::udf());
    out.extend(vec![
        none("obj_description", vec![DataType::Int64, DataType::Utf8]),
        none("col_description", vec![DataType::Int64, DataType::Int64]),
        none("shobj_description", vec![DataType::Int64, DataType::Utf8]),
        none("pg_get_function_result", vec![DataType::Int64]),
        none("pg_get_function_arguments", vec![DataType::Int64]),
        none("pg_get_function_identity_arguments", vec![DataType::Int64]),
        none("pg_tablespace_location", vec![DataType::Int64]),
        // No privileges are kept: every object's ACL is NULL (the default), and so is
        // the default ACL pg_dump compares it with.
        none("acldefault", vec![DataType::Utf8, DataType::Int64]),
        // There are no triggers (psql's `\d` asks of a table with foreign keys).
        none(
            "pg_get_triggerdef",
            vec![DataType::Int64, DataType::Boolean],
        ),
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
        datafusion::logical_expr::ScalarUDF::new_from_impl(PgTypeof {
            signature: Signature::any(1, Volatility::Immutable),
        }),
        version,
        always_visible("pg_collation_is_visible"),
        to_regtype,
        current_setting,
        set_config,
        always_visible("pg_function_is_visible"),
        always_visible("pg_type_is_visible"),
        // A proxy is never a standby replaying a primary's log (pg_restore asks).
        create_udf(
            "pg_is_in_recovery",
            vec![],
            DataType::Boolean,
            Volatility::Stable,
            Arc::new(|_args: &[ColumnarValue]| {
                Ok(ColumnarValue::Scalar(
                    datafusion::common::ScalarValue::Boolean(Some(false)),
                ))
            }),
        ),
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

/// Postgres' encodings by number (`pg_enc`), as `pg_encoding_to_char` names them.
const ENCODINGS: [&str; 42] = [
    "SQL_ASCII",
    "EUC_JP",
    "EUC_CN",
    "EUC_KR",
    "EUC_TW",
    "EUC_JIS_2004",
    "UTF8",
    "MULE_INTERNAL",
    "LATIN1",
    "LATIN2",
    "LATIN3",
    "LATIN4",
    "LATIN5",
    "LATIN6",
    "LATIN7",
    "LATIN8",
    "LATIN9",
    "LATIN10",
    "WIN1256",
    "WIN1258",
    "WIN866",
    "WIN874",
    "KOI8R",
    "WIN1251",
    "WIN1252",
    "ISO_8859_5",
    "ISO_8859_6",
    "ISO_8859_7",
    "ISO_8859_8",
    "WIN1250",
    "WIN1253",
    "WIN1254",
    "WIN1255",
    "WIN1257",
    "KOI8U",
    "SJIS",
    "BIG5",
    "GBK",
    "UHC",
    "GB18030",
    "JOHAB",
    "SHIFT_JIS_2004",
];

/// `pg_encoding_to_char(int)`: an unknown number is the empty string, as in Postgres
/// (datafusion-pg-catalog's answers `UTF-8`, which is not an encoding name Postgres
/// knows, and NULL for the others).
fn encoding_to_char() -> datafusion::logical_expr::ScalarUDF {
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::compute::cast;
    use datafusion::logical_expr::{Volatility, create_udf};
    create_udf(
        "pg_encoding_to_char",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let ids = cast(&arrays[0], &DataType::Int64)?;
            let ids = ids.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            let out: StringArray = ids
                .iter()
                .map(|id| {
                    id.map(|i| {
                        usize::try_from(i)
                            .ok()
                            .and_then(|i| ENCODINGS.get(i))
                            .copied()
                            .unwrap_or("")
                    })
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

/// A function of no arguments that answers `value` (an integer).
pub fn constant_int(name: &str, value: i32) -> datafusion::logical_expr::ScalarUDF {
    datafusion::logical_expr::create_udf(
        name,
        vec![],
        DataType::Int32,
        datafusion::logical_expr::Volatility::Stable,
        Arc::new(move |_args: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::Int32(Some(value)),
            ))
        }),
    )
}

/// A setting's value by its lower-cased name.
pub type SettingLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// `current_setting(name)` answered by `lookup` (given the lower-cased name); an unknown
/// name is 42704, as in Postgres.
pub fn current_setting_udf(lookup: SettingLookup) -> datafusion::logical_expr::ScalarUDF {
    use datafusion::arrow::array::StringArray;
    datafusion::logical_expr::create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        datafusion::logical_expr::Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let names = arrays[0].as_string::<i32>();
            let mut out = Vec::with_capacity(names.len());
            for n in names.iter() {
                out.push(match n {
                    None => None,
                    Some(n) => Some(lookup(&n.to_ascii_lowercase()).ok_or_else(|| {
                        datafusion::error::DataFusionError::from(
                            crate::error::Error::UndefinedObject(format!(
                                "unrecognized configuration parameter \"{n}\""
                            )),
                        )
                    })?),
                });
            }
            Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
        }),
    )
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
    match field
        .metadata()
        .get(crate::types::PG_TYPE_KEY)
        .map(String::as_str)
    {
        Some(crate::types::SPARSEVEC) => return crate::types::SPARSEVEC.into(),
        Some(crate::types::BIT) => return "bit".into(),
        Some(crate::types::VARBIT) => return "bit varying".into(),
        _ => {}
    }
    if field.metadata().contains_key(crate::types::PG_VECTOR_KEY) {
        let half = field
            .metadata()
            .get(crate::types::PG_TYPE_KEY)
            .is_some_and(|t| t == crate::types::HALFVEC);
        return if half { "halfvec" } else { "vector" }.into();
    }
    match crate::json::kind_of(field) {
        Some(crate::json::Kind::Jsonb) => return "jsonb".into(),
        Some(crate::json::Kind::Json) => return "json".into(),
        None => {}
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

/// `pg_get_indexdef(oid [, column, pretty])` and `pg_get_constraintdef(oid [, pretty])`
/// for the constraints and indexes of the proxy's tables (as the last catalog query saw
/// them); NULL for anything else.
#[derive(Debug, PartialEq, Eq, Hash)]
struct KeyDefinition {
    name: &'static str,
    signature: Signature,
    seen: Seen,
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
        // `pg_get_constraintdef(oid, true)`: pretty (a CHECK as written).
        let pretty = self.name == "pg_get_constraintdef" && args.args.len() > 1;
        let registry = self.seen.0.keys.read();
        let out: StringArray = (0..n)
            .map(|i| {
                if oids.is_null(i) {
                    return None;
                }
                let oid = i32::try_from(oids.value(i)).ok()?;
                let (definition, pretty_definition, columns) = registry.get(&oid)?;
                if let Some(k) = column
                    .as_ref()
                    .and_then(|c| (!c.is_null(i)).then(|| c.value(i)))
                    .filter(|k| *k > 0)
                {
                    return columns.get(k as usize - 1).cloned();
                }
                Some(if pretty {
                    pretty_definition.clone()
                } else {
                    definition.clone()
                })
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// The two key-definition functions, replacing the catalog emulation's.
pub fn key_functions(seen: &Seen) -> Vec<datafusion::logical_expr::ScalarUDF> {
    ["pg_get_indexdef", "pg_get_constraintdef"]
        .into_iter()
        .map(|name| {
            datafusion::logical_expr::ScalarUDF::new_from_impl(KeyDefinition {
                name,
                signature: Signature::variadic_any(datafusion::logical_expr::Volatility::Stable),
                seen: seen.clone(),
            })
        })
        .collect()
}
