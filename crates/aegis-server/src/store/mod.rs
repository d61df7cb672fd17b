//! Storage: the trait every backend implements and the embedded SQLite implementation.
