//! Rendering errors as problem+json: what every refused request pays.
//!
//! Run: `cargo bench -p shared-edge --bench problem` (or `deploy/dev bench --micro`).

use criterion::{Criterion, criterion_group, criterion_main};
use poem::IntoResponse;
use shared_edge::problem::FieldCode;
use shared_edge::{ApiError, FieldError};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("problem_json");
    group.bench_function("token_invalid", |b| {
        b.iter(|| {
            let resp = ApiError::token_invalid().into_response();
            rt.block_on(resp.into_body().into_bytes()).expect("a body")
        })
    });
    group.bench_function("validation_3_fields", |b| {
        b.iter(|| {
            let errors = ["title", "description", "due_at"]
                .iter()
                .map(|f| FieldError::new(f, FieldCode::InvalidValue, "is not valid"))
                .collect();
            let resp = ApiError::validation(errors).into_response();
            rt.block_on(resp.into_body().into_bytes()).expect("a body")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
