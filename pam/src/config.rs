//! The module's configuration. Its arguments (`key=value` tokens of the PAM service line)
//! are read by the contract crate's one parser, [`breakglass_proto::pam_options`], which
//! `breakglass host doctor` judges service lines with too; what is no argument is here.
#![forbid(unsafe_code)]

use std::time::Duration;

pub use breakglass_proto::pam_options::{KrlFail, PamOptions as Config};

/// Time the guard gives the sshd session process to exit after SIGTERM before SIGKILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
