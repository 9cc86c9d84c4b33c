//! Step dispatch, side by side in one run:
//! - `meridian_step`: a trivial step through the Meridian runtime (fresh
//!   store with budgets, instantiate from the plugin's InstancePre, execute,
//!   output parsed and masked);
//! - `bare_wasmtime`: the same component instantiated and called with bare
//!   wasmtime (same engine settings, pooling allocator, WASI with nothing
//!   granted, no Meridian bookkeeping): the floor;
//! - `spawn_bin_true`: fork/exec of /bin/true, what a process-per-step
//!   scheduler pays.
//!
//! Run: `cargo bench -p meridian-tests --bench dispatch`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use meridian::runtime::bindings::{PluginPre, StepContext};
use meridian::runtime::{SandboxLimits, engine_config};
use meridian_tests::{TestRuntime, fixtures, invocation};
use serde_json::json;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

struct Bare {
    table: ResourceTable,
    wasi: WasiCtx,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn context() -> StepContext {
    StepContext {
        job_id: "bench".into(),
        execution_id: "bench".into(),
        step_id: "step".into(),
        attempt: 1,
        timezone: "UTC".into(),
        scheduled_time: None,
        config: "{}".into(),
        variables: "{}".into(),
    }
}

fn dispatch(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let meridian = rt.block_on(TestRuntime::new("", &[fixtures::TRIVIAL]));
    let plugin = meridian.plugin("trivial").clone();

    let engine = Engine::new(&engine_config(&SandboxLimits::default())).unwrap();
    let component = Component::from_file(&engine, fixtures::TRIVIAL).unwrap();
    let mut linker = Linker::<Bare>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    linker.define_unknown_imports_as_traps(&component).unwrap();
    let pre = PluginPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
    let ctx = context();

    let mut group = c.benchmark_group("dispatch");
    group.bench_function("meridian_step", |b| {
        b.to_async(&rt).iter(|| async {
            let run = meridian
                .runtime
                .execute(&plugin, invocation(json!({})))
                .await;
            assert!(run.result.is_ok());
        })
    });
    group.bench_function("bare_wasmtime", |b| {
        b.to_async(&rt).iter(|| async {
            let mut store = Store::new(
                &engine,
                Bare {
                    table: ResourceTable::new(),
                    wasi: WasiCtxBuilder::new().build(),
                },
            );
            store.set_epoch_deadline(u64::MAX / 2);
            let instance = pre.instantiate_async(&mut store).await.unwrap();
            let out = instance
                .meridian_step_step()
                .call_execute(&mut store, &ctx)
                .await
                .unwrap();
            assert!(out.is_ok());
        })
    });
    group.bench_function("spawn_bin_true", |b| {
        b.iter(|| {
            let status = std::process::Command::new("/bin/true").status().unwrap();
            assert!(status.success());
        })
    });
    group.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
