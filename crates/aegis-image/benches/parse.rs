//! How long `inspect()` takes: a 4 MiB builder image (the target: well under 10 ms)
//! and the largest file of the real-firmware corpus. Run with
//! `cargo bench -p aegis-image -- --quick`.

use std::path::PathBuf;

use aegis_image::{Chip, ImageBuilder, inspect};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn largest_corpus_file() -> Option<(String, Vec<u8>)> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/firmware/real");
    let mut best: Option<(String, Vec<u8>)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "bin") {
            let bytes = std::fs::read(&path).ok()?;
            if best.as_ref().is_none_or(|(_, b)| bytes.len() > b.len()) {
                best = Some((path.file_name()?.to_string_lossy().into_owned(), bytes));
            }
        }
    }
    best
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("inspect");
    let Ok(image) = ImageBuilder::new(Chip::Esp32s3).size(4 << 20).build() else {
        panic!("the builder failed to make a 4 MiB image");
    };
    assert!(inspect(&image).valid);
    group.throughput(Throughput::Bytes(image.len() as u64));
    group.bench_function("builder_esp32s3_4MiB", |b| {
        b.iter(|| inspect(std::hint::black_box(&image)))
    });

    match largest_corpus_file() {
        Some((name, bytes)) => {
            group.throughput(Throughput::Bytes(bytes.len() as u64));
            group.bench_function(format!("corpus_{name}"), |b| {
                b.iter(|| inspect(std::hint::black_box(&bytes)))
            });
        }
        None => eprintln!("real-firmware corpus not found; benchmarking the builder image only"),
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
