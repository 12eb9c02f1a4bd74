//! Docker Engine API models (the subset berthd serves), as moby's
//! `api/swagger.yaml` names them.

/// Images: summaries, inspect, history, delete and prune answers.
pub mod image;
/// `/version` and `/info`.
pub mod system;
