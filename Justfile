# Everyday commands; `just --list` shows them.

# Run the test suite (what CI runs, without fmt/clippy).
test:
    cargo test --workspace

# Everything CI runs.
ci:
    bash .ci/run

# A benchmark suite end to end (quick, smoke, or a path to a .toml); writes results/<run>/report.md.
suite name="quick":
    cargo run --release -p pollbench -- suite {{name}}

# Rebuild the report of a run directory.
report dir:
    cargo run --release -p pollbench -- report {{dir}}

# Compare two run directories cell by cell (exit 1 when a cell regressed).
compare old new:
    cargo run --release -p pollbench -- compare {{old}} {{new}}

# The poller scaling benchmark, quick mode (about a minute).
bench-quick:
    POLLER_BENCH_QUICK=1 cargo bench -p poller --bench scaling

# The poller scaling benchmark, full run.
bench:
    cargo bench -p poller --bench scaling

# The kqueue backend against libkqueue installed at PREFIX.
test-kqueue prefix:
    PKG_CONFIG_PATH={{prefix}}/lib/pkgconfig LD_LIBRARY_PATH={{prefix}}/lib cargo test -p poller --features libkqueue
