//! Image config → OCI runtime spec, with Docker's semantics and defaults.
