//! Decides whether the kqueue backend is built (`cfg(crate_kqueue)`): natively on macOS and the
//! BSDs, and on Linux with the `libkqueue` feature, linking the libkqueue that pkg-config finds.
//! Also names, once each, the target systems that have a call or flag the backends use where
//! there is one (see `os_features`).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(crate_kqueue)");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let native = matches!(
        os.as_str(),
        "macos" | "ios" | "freebsd" | "openbsd" | "netbsd" | "dragonfly"
    );
    os_features(&os);
    let libkqueue = std::env::var_os("CARGO_FEATURE_LIBKQUEUE").is_some();
    if native {
        println!("cargo:rustc-cfg=crate_kqueue");
    } else if libkqueue {
        if os != "linux" {
            panic!(
                "the `libkqueue` feature is for Linux; on {os} there is no kqueue to build against"
            );
        }
        match pkg_config::Config::new().probe("libkqueue") {
            Ok(_) => println!("cargo:rustc-cfg=crate_kqueue"),
            Err(e) => panic!(
                "the `libkqueue` feature needs an installed libkqueue that pkg-config can find \
                 (set PKG_CONFIG_PATH to <prefix>/lib/pkgconfig): {e}"
            ),
        }
    }
}

/// What the libc crate's bindings for the target system have, as a cfg each, so that the code has
/// one list of systems per feature: `ppoll` (nanosecond poll timeouts; elsewhere plain `poll`),
/// `POLLRDHUP` (poll's read-hangup reports) and kqueue's `EVFILT_EXCEPT` with `NOTE_OOB`
/// (priority interest).
fn os_features(os: &str) {
    println!("cargo::rustc-check-cfg=cfg(has_ppoll, has_pollrdhup, has_kqueue_except)");
    let features: [(&str, &[&str]); 3] = [
        (
            "has_ppoll",
            &[
                "linux",
                "android",
                "freebsd",
                "dragonfly",
                "netbsd",
                "openbsd",
            ],
        ),
        ("has_pollrdhup", &["linux", "android", "freebsd", "illumos"]),
        (
            "has_kqueue_except",
            &["macos", "ios", "openbsd", "dragonfly"],
        ),
    ];
    for (cfg, systems) in features {
        if systems.contains(&os) {
            println!("cargo:rustc-cfg={cfg}");
        }
    }
}
