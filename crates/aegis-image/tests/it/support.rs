//! Where the shared test data lives, and small helpers.

use std::path::PathBuf;

/// The real-firmware corpus (../shared/testdata/firmware/real from the workspace root).
pub fn corpus_dir() -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/firmware/real");
    assert!(
        dir.join("manifest.json").is_file(),
        "the real-firmware corpus is missing: expected {} (with manifest.json). It is part of \
         the shared test data checked out next to the workspace; without it these tests cannot \
         show agreement with real images.",
        dir.display()
    );
    dir
}

/// All `.bin` files in the corpus with their bytes, sorted by name.
pub fn corpus_files() -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir();
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}
