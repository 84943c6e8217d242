//! Developer tasks for the breakglass workspace (`cargo run -p xtask -- …`).
#![forbid(unsafe_code)]

pub mod check;
pub mod cycles;
pub mod deb_copyright;
pub mod man;
pub mod man_sections;
pub mod readme;
pub mod seeds;
