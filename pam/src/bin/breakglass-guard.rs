//! `breakglass-guard`: the session guard started by `pam_breakglass.so`.
#![forbid(unsafe_code)]

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(pam_breakglass::guard::main_with_args(&args));
}
