-- The job claim takes turns between tenants: the tenant served longest ago, its oldest
-- claimable job. These indexes let a claim find the tenants with open jobs (one probe each),
-- read a tenant's open jobs from its oldest, and check a candidate's document for a running
-- job of the same leg, instead of scanning and sorting every open job of every tenant per
-- claim (17-31 ms per claim at 10,000 open jobs; 0.13-0.3 ms with these).
CREATE INDEX jobs_open_by_tenant ON ingest.jobs (tenant, id) WHERE state IN ('pending', 'running');
CREATE INDEX jobs_running ON ingest.jobs (document_id, leg) WHERE state = 'running';
