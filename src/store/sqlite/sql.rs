//! The core's statements on SQLite: `$n` placeholders become `?n`, a time is its text
//! (one fixed format, so text order is time order), a flag an integer.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql};

use crate::store::sql::{Query, Row, Statement, Value, parse_time};
use crate::store::{StoreError, StoreResult};

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Backend(format!("SQLite: {e}"))
    }
}

impl ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(n) => ToSqlOutput::from(*n),
            Value::Bool(b) => ToSqlOutput::from(*b),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Time(t) => ToSqlOutput::from(crate::event::format_time(t)),
            Value::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

fn column(i: usize, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("SQLite: column {i}: {e}"))
}

impl Row for rusqlite::Row<'_> {
    fn int(&self, i: usize) -> StoreResult<Option<i64>> {
        self.get_ref(i)?.as_i64_or_null().map_err(|e| column(i, e))
    }

    fn flag(&self, i: usize) -> StoreResult<Option<bool>> {
        Ok(self.int(i)?.map(|n| n != 0))
    }

    fn text(&self, i: usize) -> StoreResult<Option<&str>> {
        self.get_ref(i)?.as_str_or_null().map_err(|e| column(i, e))
    }

    fn time(&self, i: usize) -> StoreResult<Option<DateTime<Utc>>> {
        match self.text(i)? {
            Some(text) => match parse_time(text) {
                Some(t) => Ok(Some(t)),
                None => Err(column(i, format!("not a time: {text:?}"))),
            },
            None => Ok(None),
        }
    }

    fn bytes(&self, i: usize) -> StoreResult<Option<&[u8]>> {
        Ok(match self.get_ref(i)? {
            ValueRef::Null => None,
            ValueRef::Blob(b) | ValueRef::Text(b) => Some(b),
            other => return Err(column(i, format!("not bytes: {:?}", other.data_type()))),
        })
    }
}

/// The statement in SQLite's spelling: `$n` placeholders become `?n`.
pub(super) fn spelled(sql: &str) -> Cow<'_, str> {
    if !sql.contains('$') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        let numbered = c == '$' && chars.peek().is_some_and(char::is_ascii_digit);
        out.push(if numbered { '?' } else { c });
    }
    Cow::Owned(out)
}

/// Runs a query on `conn`, reading each row.
pub(super) fn rows<T>(conn: &Connection, q: &Query<T>) -> StoreResult<Vec<T>> {
    let mut stmt = conn.prepare_cached(&spelled(&q.sql))?;
    let mut rows = stmt.query(rusqlite::params_from_iter(&q.params))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push((q.map)(row)?);
    }
    Ok(out)
}

/// Runs statements in order on `conn` (in the writer's transaction).
pub(super) fn execute(conn: &Connection, statements: &[Statement]) -> StoreResult<Vec<i64>> {
    statements
        .iter()
        .map(|s| {
            let mut stmt = conn.prepare_cached(&spelled(&s.sql))?;
            let params = rusqlite::params_from_iter(&s.params);
            Ok(if s.returning {
                stmt.query_row(params, |r| r.get(0))?
            } else {
                stmt.execute(params)? as i64
            })
        })
        .collect()
}
