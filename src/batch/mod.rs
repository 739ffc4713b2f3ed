//! The parts of `medgemma batch` that need no model: reading jobs, choosing a shard, the results file that makes a
//! batch resumable (nothing lost, nothing twice), and the sidecar that says which model made the results (with
//! the model's SHA-256, computed once per file).

pub mod job;
pub mod results;
pub mod sha256_cache;
pub mod sidecar;
