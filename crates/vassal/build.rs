//! Give the vassal binary an rpath to the libpython it was linked against, so it
//! runs the same CPython at run time (link args from pyo3's own build script do
//! not reach the final binary), and record which interpreter that is, so a venv
//! made by another Python can be refused at start-up.
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
    let cfg = pyo3_build_config::get();
    let exe = cfg
        .executable()
        .map(|e| e.to_owned())
        .unwrap_or_else(|| "/usr/bin/python3".to_owned());
    println!("cargo:rustc-env=VASSAL_BUILD_PYTHON={exe}");
    println!(
        "cargo:rustc-env=VASSAL_BUILD_PYTHON_VERSION={}.{}",
        cfg.version().major,
        cfg.version().minor
    );
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
