//! `breakglass-record`: the session recorder a recording tier's certificate forces.
#![forbid(unsafe_code)]

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(pam_breakglass::recorder::main_with_args(&args));
}
