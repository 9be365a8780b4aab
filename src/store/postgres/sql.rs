//! The core's statements on PostgreSQL: each [`Value`] is bound as the type the
//! statement's parameter has (an integer as `int2`/`int4`/`int8`, text without NUL,
//! which `text` cannot hold), each row read through [`Row`].

use bytes::BytesMut;
use chrono::{DateTime, Utc};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::connect::text;
use crate::store::sql::{Row, Statement, Value};
use crate::store::{StoreError, StoreResult};

type Boxed = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Value<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Boxed> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(n) => match *ty {
                Type::INT2 => i16::try_from(*n)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*n)?.to_sql(ty, out),
                _ => n.to_sql(ty, out),
            },
            Value::Bool(b) => b.to_sql(ty, out),
            Value::Text(s) => text(s).as_ref().to_sql(ty, out),
            Value::Time(t) => t.to_sql(ty, out),
            Value::Bytes(b) => b.as_ref().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn read<'a, T: tokio_postgres::types::FromSql<'a>>(
    r: &'a tokio_postgres::Row,
    i: usize,
) -> StoreResult<T> {
    r.try_get(i)
        .map_err(|e| StoreError::Backend(format!("PostgreSQL: column {i}: {e}")))
}

impl Row for tokio_postgres::Row {
    fn int(&self, i: usize) -> StoreResult<Option<i64>> {
        Ok(match *self.columns()[i].type_() {
            Type::INT2 => read::<Option<i16>>(self, i)?.map(i64::from),
            Type::INT4 => read::<Option<i32>>(self, i)?.map(i64::from),
            _ => read(self, i)?,
        })
    }

    fn flag(&self, i: usize) -> StoreResult<Option<bool>> {
        read(self, i)
    }

    fn text(&self, i: usize) -> StoreResult<Option<&str>> {
        read(self, i)
    }

    fn time(&self, i: usize) -> StoreResult<Option<DateTime<Utc>>> {
        read(self, i)
    }

    fn bytes(&self, i: usize) -> StoreResult<Option<&[u8]>> {
        read(self, i)
    }
}

/// The parameters as the driver takes them.
pub(super) fn params<'a>(values: &'a [Value<'_>]) -> Vec<&'a (dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

/// Runs statements in order in `tx`, sent together (the driver pipelines them).
pub(super) async fn execute(
    tx: &deadpool_postgres::Transaction<'_>,
    statements: &[Statement],
) -> StoreResult<Vec<i64>> {
    let prepared =
        futures_util::future::try_join_all(statements.iter().map(|s| tx.prepare_cached(&s.sql)))
            .await?;
    let runs = statements.iter().zip(&prepared).map(|(s, p)| async move {
        let params = params(&s.params);
        Ok::<_, tokio_postgres::Error>(if s.returning {
            tx.query_one(p, &params).await?.get::<_, i64>(0)
        } else {
            tx.execute(p, &params).await? as i64
        })
    });
    Ok(futures_util::future::try_join_all(runs).await?)
}

/// Columns of values as the driver takes them (one array parameter each).
pub(super) fn params_of<'a>(columns: &'a [Vec<Value<'_>>]) -> Vec<&'a (dyn ToSql + Sync)> {
    columns.iter().map(|c| c as &(dyn ToSql + Sync)).collect()
}
