//! The store core's query layer: what both databases run is written once, as SQL with `?N`
//! placeholders plus the few fragments that differ ([`Dialect`]), with borrowed [`Value`]s
//! bound, and run through [`Sql`] (a read connection) or `ledger::LedgerSql` (a write
//! transaction), which each store implements. SQLite takes `?N` as it is; PostgreSQL rewrites
//! it to `$N` once per statement, when it prepares it. Rows come back through the shared
//! mapping in [`super::rows`].
//!
//! The dialects agree on almost everything hookwatch asks: `UNION ALL`, `CASE`, `coalesce`,
//! `NULLS FIRST`, window functions, `LIMIT`. What differs is kept here and nowhere else: the
//! placeholder mark, how a sum saturates instead of failing, substring search, and how a list
//! of ids is passed as one parameter.

use super::rows::StoredRow;

/// A value bound to a placeholder, borrowed from what is read or written: binding copies
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i64),
    OptInt(Option<i64>),
    Text(&'a str),
    OptText(Option<&'a str>),
}

impl From<i64> for Value<'_> {
    fn from(n: i64) -> Self {
        Self::Int(n)
    }
}

impl From<Option<i64>> for Value<'_> {
    fn from(n: Option<i64>) -> Self {
        Self::OptInt(n)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(text: &'a str) -> Self {
        Self::Text(text)
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(text: &'a String) -> Self {
        Self::Text(text)
    }
}

impl<'a> From<&'a Option<String>> for Value<'a> {
    fn from(text: &'a Option<String>) -> Self {
        Self::OptText(text.as_deref())
    }
}

impl From<usize> for Value<'_> {
    fn from(n: usize) -> Self {
        Self::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

/// The parts of SQL the two databases spell differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The largest sum a view shows ([`super::rows::SATURATED`]).
const SATURATED: i64 = super::rows::SATURATED;

/// `current + delta` for an upsert, saturating at ±[`super::rows::SATURATED`] instead of failing
/// (PostgreSQL's `bigint out of range`) or turning into a REAL (SQLite), in SQL both
/// databases read alike: each `CASE` branch is evaluated only when taken, so no guard
/// overflows either.
pub(crate) fn saturating_add(current: &str, delta: &str) -> String {
    format!(
        "CASE WHEN {delta} >= 0 THEN \
           CASE WHEN {current} > {SATURATED} - {delta} THEN {SATURATED} \
           ELSE {current} + {delta} END \
         ELSE CASE WHEN {current} < -{SATURATED} - {delta} THEN -{SATURATED} \
           ELSE {current} + {delta} END END"
    )
}

impl Dialect {
    /// `sql` written with SQLite's `?N` placeholders in this dialect's marks (`$N`). No `?`
    /// may stand inside a string literal of `sql`.
    pub(crate) fn with_own_marks(self, sql: &str) -> String {
        match self {
            Self::Sqlite => sql.to_owned(),
            Self::Postgres => {
                let mut out = String::with_capacity(sql.len());
                let mut chars = sql.chars().peekable();
                while let Some(c) = chars.next() {
                    if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
                        out.push('$');
                    } else {
                        out.push(c);
                    }
                }
                out
            }
        }
    }

    /// The sum of `expr` over a group as a 64-bit integer that saturates instead of failing
    /// (SQLite's `sum()` raises "integer overflow", PostgreSQL's `bigint` "out of range"); 0
    /// for no rows.
    pub(crate) fn sum(self, expr: &str) -> String {
        match self {
            Self::Sqlite => format!("CAST(total({expr}) AS INTEGER)"),
            Self::Postgres => {
                format!("least(coalesce(sum({expr}), 0), {SATURATED})::int8")
            }
        }
    }

    /// Whether the text `expr` is one or more ASCII digits.
    pub(crate) fn all_digits(self, expr: &str) -> String {
        match self {
            Self::Sqlite => format!("({expr} <> '' AND {expr} NOT GLOB '*[^0-9]*')"),
            Self::Postgres => format!("({expr} ~ '^[0-9]+$')"),
        }
    }

    /// The text at top-level `key` of the JSON text in `column` (NULL when absent), read by
    /// the database, so a large document is never handed over whole.
    pub(crate) fn json_text(self, column: &str, key: &str) -> String {
        match self {
            Self::Sqlite => format!("json_extract({column}, '$.{key}')"),
            Self::Postgres => format!("({column}::json ->> '{key}')"),
        }
    }

    /// Whether the text `haystack` contains the parameter `needle` (`?N`).
    pub(crate) fn contains(self, haystack: &str, needle: &str) -> String {
        match self {
            Self::Sqlite => format!("instr({haystack}, {needle}) > 0"),
            Self::Postgres => format!("strpos({haystack}, {needle}) > 0"),
        }
    }

    /// `expr` compared and ordered byte by byte, as Rust orders strings, whatever the
    /// database's collation.
    pub(crate) fn binary(self, expr: &str) -> String {
        match self {
            Self::Sqlite => expr.to_owned(),
            Self::Postgres => format!("({expr}) COLLATE \"C\""),
        }
    }

    /// `column` is one of the texts of a JSON array passed as the one parameter `param`.
    pub(crate) fn in_text_list(self, column: &str, param: &str) -> String {
        match self {
            Self::Sqlite => format!("{column} IN (SELECT value FROM json_each({param}))"),
            Self::Postgres => format!(
                "{column} IN (SELECT json_array_elements_text(CAST(CAST({param} AS text) AS json)))"
            ),
        }
    }

    /// `column` is one of a list of ids passed as the one parameter `param` (`?N`), with the
    /// value to bind.
    pub(crate) fn in_id_list(self, column: &str, param: &str, ids: &[i64]) -> (String, String) {
        let listed = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        match self {
            Self::Sqlite => (
                format!("{column} IN (SELECT value FROM json_each({param}))"),
                format!("[{listed}]"),
            ),
            Self::Postgres => (
                format!("{column} = ANY(CAST({param} AS text)::int8[])"),
                format!("{{{listed}}}"),
            ),
        }
    }

    /// Saturating sums of `columns` of `table`'s rows for the session `s.session_id`: the
    /// select list, and what follows `FROM sessions s`. PostgreSQL sums them in one lateral
    /// subquery; SQLite has no LATERAL and takes one indexed subquery per sum (as fast there).
    pub(crate) fn per_session_sums(self, table: &str, columns: &[&str]) -> (String, String) {
        match self {
            Self::Sqlite => {
                let sums = columns
                    .iter()
                    .map(|c| {
                        format!(
                            "(SELECT {} FROM {table} u WHERE u.session_id = s.session_id)",
                            self.sum(c)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                (sums, String::new())
            }
            Self::Postgres => {
                let named = |f: &dyn Fn(usize, &str) -> String| {
                    columns
                        .iter()
                        .enumerate()
                        .map(|(n, c)| f(n, c))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let sums = named(&|n, c| format!("{} AS sum{n}", self.sum(c)));
                (
                    named(&|n, _| format!("u.sum{n}")),
                    format!(
                        "CROSS JOIN LATERAL (SELECT {sums} FROM {table} \
                         WHERE {table}.session_id = s.session_id) u"
                    ),
                )
            }
        }
    }

    /// A list of texts passed as the one parameter `param` (`?N`), as rows of one column
    /// `l.value`, with the text to bind to it.
    pub(crate) fn text_list_rows(self, param: &str, texts: &[&str]) -> (String, String) {
        match self {
            Self::Sqlite => (
                format!("json_each({param}) AS l"),
                serde_json::to_string(texts).unwrap_or_else(|_| "[]".into()),
            ),
            Self::Postgres => {
                // An array literal: each element quoted, with `\` and `"` escaped.
                let quoted: Vec<String> = texts
                    .iter()
                    .map(|t| format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\"")))
                    .collect();
                (
                    format!("unnest(CAST({param} AS text)::text[]) AS l(value)"),
                    format!("{{{}}}", quoted.join(",")),
                )
            }
        }
    }
}

/// A read connection of either database, as the shared reads use it.
pub trait Sql {
    type Error;
    type Row<'r>: StoredRow<Error = Self::Error>;

    const DIALECT: Dialect;

    fn dialect(&self) -> Dialect {
        Self::DIALECT
    }

    /// Runs `sql` (with `?N` placeholders; prepared once per connection) with `params`, and
    /// maps each row.
    fn query<T>(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        map: impl FnMut(&Self::Row<'_>) -> Result<T, Self::Error>,
    ) -> Result<Vec<T>, Self::Error>;

    /// The first row, if any.
    fn query_first<T>(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        map: impl FnMut(&Self::Row<'_>) -> Result<T, Self::Error>,
    ) -> Result<Option<T>, Self::Error> {
        Ok(self.query(sql, params, map)?.into_iter().next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_gets_its_marks_and_other_question_marks_stay() {
        let sql = r#"SELECT ?1, ?12 WHERE s = '{"status":"pending"}' AND x = ?2 AND j ? 'k'"#;
        assert_eq!(Dialect::Sqlite.with_own_marks(sql), sql);
        assert_eq!(
            Dialect::Postgres.with_own_marks(sql),
            r#"SELECT $1, $12 WHERE s = '{"status":"pending"}' AND x = $2 AND j ? 'k'"#
        );
    }
}
