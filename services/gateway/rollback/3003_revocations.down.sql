-- Rollback of migration 3003_revocations (docs/operations.md, "Rolling back a migration"):
-- the schema goes back to what 3002 left, and 3003 is no longer recorded as applied, so the
-- next gateway start of the new version applies it again. Kept outside migrations/ (sqlx
-- embeds every file there as a forward migration).
--
-- Drops every token revocation written since the upgrade: revoked tokens that have not expired
-- yet are accepted again. Run it only after stopping every gateway of the new version (one
-- still running would recreate the table at its next start, or fail writing to it), as the
-- migration role, in one transaction:
--   psql "$MIGRATE_URL" -v ON_ERROR_STOP=1 --single-transaction -f 3003_revocations.down.sql
-- Tested by tests/tests/e2e/migration_rollback.rs (up, down, up on a fresh database).

-- The trigger and the index go with the table.
DROP TABLE auth.revocations;
DROP FUNCTION auth.refuse_change();
-- RESTRICT: refuses if anything else was put into the schema meanwhile.
DROP SCHEMA auth RESTRICT;

DELETE FROM _sqlx_migrations WHERE version = 3003;
