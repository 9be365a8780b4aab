//! Cost of parsing and validating one InnoPaaS payload (target: well under 10 µs).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn parse_seeds(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for name in ["delivered", "read", "failed"] {
        let path = format!(
            "{}/examples/payloads/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(path).unwrap();
        group.throughput(Throughput::Elements(1));
        group.bench_function(name, |b| {
            b.iter(|| innohook::event::parse(black_box(&bytes)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, parse_seeds);
criterion_main!(benches);
