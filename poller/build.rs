//! Decides whether the kqueue backend is built (`cfg(crate_kqueue)`): natively on macOS and the
//! BSDs, and on Linux with the `libkqueue` feature, linking the libkqueue that pkg-config finds.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(crate_kqueue)");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let native = matches!(
        os.as_str(),
        "macos" | "ios" | "freebsd" | "openbsd" | "netbsd" | "dragonfly"
    );
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
