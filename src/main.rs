//! The `stevedore` binary: everything lives in the library; see `stevedore --help`.

fn main() {
    std::process::exit(stevedore::cli::run());
}
