//! Fjord's domain model: servers, platforms, sites, clients, users, backups and tasks, the validation of
//! every name a user can type, and the `Plan`/`Step` vocabulary that tasks are executed in.
//!
//! This crate is pure: it performs no IO, spawns nothing and knows nothing of SQL, HTTP or the CLI.
//! Everything else in Fjord depends on it, so it must stay small and dependency-free.

pub mod backups;
pub mod batch;
pub mod desired;
pub mod model;
pub mod names;
pub mod plan;
pub mod proxies;
pub mod task;
pub mod tls;

pub use backups::{BackupMethod, BackupSchedule, Compression, Retention, PHYSICAL_BACKUP_MIN_BYTES};
pub use batch::{BatchSite, BatchSummary, PlatformMigrateArgs, SiteOutcome, SiteResult};
pub use desired::{Change, DesiredChange};
pub use model::*;
pub use names::{Domain, Name, ValidationError};
pub use plan::{
    BackupTree, CacheTables, Command, FileContent, Mark, PhysicalCopy, PhysicalDb, Plan, Planned, Snapshot,
    StateChange, Step, TempFile,
};
pub use proxies::{Cidr, RealIp, RealIpHeader};
pub use task::*;
pub use tls::{CertMeta, CertRequest, CertSource, SiteTls};
