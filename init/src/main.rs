//! zigral-init binary: see the library for everything it does.
fn main() {
    std::process::exit(zigral_init::cli::main());
}
