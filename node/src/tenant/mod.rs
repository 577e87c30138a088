//! Tenants: named users of one node or cluster, each with tokens, quotas
//! and a namespace of its own.
//!
//! A tenant's queue `q` is the node's queue `tenant/q`: jobs, queue
//! counters, pauses and policies are the node's own machinery under a
//! prefix, so replication, persistence and queue federation carry the
//! tenant with the queue name and need no field of their own. A job
//! belongs to the tenant its queue names ([`tenant_of_queue`]). The
//! engine scopes a tenant's commands (`engine/tenant.rs`): names in,
//! prefixes added; ids of other tenants' jobs answered as unknown;
//! replies with the prefix taken off again.
//!
//! The registry ([`Tenants`]) holds the records (tokens as SHA-256
//! digests, quotas, owned modules) in `DATA_DIR/tenants.json` and merges
//! peers' copies by version, so a tenant added on one node authenticates
//! on all (`cluster` compares registry digests in its adverts).

mod record;
mod registry;

pub use record::{QUOTA_NAMES, Quotas, TenantRecord, Token, valid_name};
pub use registry::{FILE, Tenant, TenantError, TenantInfo, Tenants, tenant_of_queue};
