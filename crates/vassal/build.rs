//! Give the vassal binary an rpath to the libpython it was linked against, so it
//! runs the same CPython at run time (link args from pyo3's own build script do
//! not reach the final binary).
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
}
