//! [`Db`], a pool that runs statements so that a transaction-mode pooler (PgBouncer
//! `pool_mode = transaction`) can sit in front of PostgreSQL.
//!
//! sqlx prepares every statement with the extended protocol in two round trips (Parse +
//! Describe + Sync, then Bind + Execute + Sync) and by default names and caches it per
//! connection. Behind a transaction-mode pooler the server connection may change at every
//! Sync outside a transaction, so a named statement is missing (or another client's) on the
//! next server, and even an unnamed one may be replaced between the two round trips. With
//! [`Pooler::Transaction`] a [`Db`] therefore makes every statement unnamed (`persistent =
//! false`) and runs each one that is not already in a transaction inside one of its own
//! (`BEGIN` … `COMMIT`), which pins one server connection for both round trips. Without a
//! pooler it is the plain pool: named, cached statements, no extra round trips.

use std::fmt;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArguments, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Describe, Either, Execute, Executor, PgPool, Postgres, Transaction};

use super::config::Pooler;

/// A PostgreSQL pool that knows whether a transaction-mode pooler is in front of it. Use
/// `&db` wherever sqlx takes an executor, and [`Db::begin`] for transactions.
#[derive(Clone, Debug)]
pub struct Db {
    pool: PgPool,
    pooler: Pooler,
}

/// A transaction on a [`Db`]; use `&mut tx` as the executor. Rolled back when dropped
/// without [`DbTx::commit`].
pub struct DbTx {
    tx: Transaction<'static, Postgres>,
    pooler: Pooler,
}

impl fmt::Debug for DbTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbTx")
            .field("pooler", &self.pooler)
            .finish()
    }
}

impl Db {
    pub fn new(pool: PgPool, pooler: Pooler) -> Self {
        Self { pool, pooler }
    }

    pub fn pooler(&self) -> Pooler {
        self.pooler
    }

    /// The sqlx pool itself (statements on it bypass the pooler handling).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn begin(&self) -> Result<DbTx, sqlx::Error> {
        Ok(DbTx {
            tx: self.pool.begin().await?,
            pooler: self.pooler,
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Pool usage for `braid_db_pool_*` (sampled on every `/metrics` scrape).
    pub fn pool_sample(&self) -> crate::metrics::PoolSample {
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        crate::metrics::PoolSample {
            in_use: self.pool.size().saturating_sub(idle),
            idle,
            max: self.pool.options().get_max_connections(),
        }
    }
}

impl DbTx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

/// A statement as `pooler` needs it: behind a transaction-mode pooler, one PostgreSQL parses
/// for this execution only (the unnamed prepared statement); without one, as the caller made
/// it.
struct ForPooler<E> {
    query: E,
    pooler: Pooler,
}

impl<'q, E: Execute<'q, Postgres>> Execute<'q, Postgres> for ForPooler<E> {
    fn sql(&self) -> &'q str {
        self.query.sql()
    }

    fn statement(&self) -> Option<&PgStatement<'q>> {
        self.query.statement()
    }

    fn take_arguments(&mut self) -> Result<Option<PgArguments>, BoxDynError> {
        self.query.take_arguments()
    }

    fn persistent(&self) -> bool {
        self.pooler == Pooler::None && self.query.persistent()
    }
}

type Step = Either<PgQueryResult, PgRow>;

impl<'c> Executor<'c> for &'c Db {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Step, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        match self.pooler {
            Pooler::None => self.pool.fetch_many(query),
            Pooler::Transaction => {
                let pool = self.pool.clone();
                futures::stream::once(async move {
                    let mut tx = pool.begin().await?;
                    let query = ForPooler {
                        query,
                        pooler: Pooler::Transaction,
                    };
                    let steps: Vec<Step> = (&mut *tx).fetch_many(query).try_collect().await?;
                    tx.commit().await?;
                    Ok::<_, sqlx::Error>(futures::stream::iter(steps.into_iter().map(Ok)))
                })
                .try_flatten()
                .boxed()
            }
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        match self.pooler {
            Pooler::None => self.pool.fetch_optional(query),
            Pooler::Transaction => {
                let pool = self.pool.clone();
                Box::pin(async move {
                    let mut tx = pool.begin().await?;
                    let query = ForPooler {
                        query,
                        pooler: Pooler::Transaction,
                    };
                    let row = (&mut *tx).fetch_optional(query).await?;
                    tx.commit().await?;
                    Ok(row)
                })
            }
        }
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.pool.prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.pool.describe(sql)
    }
}

impl<'c> Executor<'c> for &'c mut DbTx {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Step, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let pooler = self.pooler;
        (&mut *self.tx).fetch_many(ForPooler { query, pooler })
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let pooler = self.pooler;
        (&mut *self.tx).fetch_optional(ForPooler { query, pooler })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        (&mut *self.tx).prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        (&mut *self.tx).describe(sql)
    }
}
