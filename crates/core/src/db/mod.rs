//! PostgreSQL plumbing shared by the services that own a schema: the `[database]` config
//! (`config`: URLs, pool, TLS, pooler mode, read replica), pools built from it (`connect`:
//! rustls TLS, direct connections for migrations) and [`Db`] (`exec`), the executor that
//! keeps sqlx working through a transaction-mode PgBouncer; `scratch`: a database of its own
//! for a store test.

mod config;
mod connect;
mod exec;
mod scratch;
mod unavailable;

pub use config::{DatabaseConfig, Pooler, SslMode};
pub use connect::{connect_options, migrate, primary, primary_with, replica, replica_with};
pub use exec::{Db, DbTx};
pub use scratch::ScratchDatabase;
pub use unavailable::is_unavailable;
