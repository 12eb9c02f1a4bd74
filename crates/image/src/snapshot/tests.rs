//! Snapshot tests (real mounts; they need root and `BERTH_TEST_ROOT=1`).
