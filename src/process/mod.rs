//! Child processes (stub).
