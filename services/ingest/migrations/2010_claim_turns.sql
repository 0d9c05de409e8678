-- Fair claiming across tenants: when each tenant's jobs were last claimed. Workers take the
-- next job from the tenant served longest ago (round robin), so one tenant's bulk load
-- cannot starve another tenant's indexing. One row per tenant that ever had a job.
CREATE TABLE ingest.claim_turns (
    tenant          text PRIMARY KEY,
    last_claimed_at timestamptz NOT NULL
);
