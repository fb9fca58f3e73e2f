//! How a vassal process ended, as a typed value.
//!
//! The shell reads the kernel's wait status and turns it into an [`ExitReason`]; the
//! last lines the process printed travel beside it in [`Exit::output`], never inside the
//! reason. `emperorctl status` therefore always shows "killed by signal SIGKILL" for a
//! kill -9, whatever the process happened to print last.

use std::fmt;

/// What ended a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// It exited by itself with this code.
    Code(i32),
    /// A signal killed it. `name` is the signal's name (`SIGKILL`), given by the shell,
    /// which knows the platform's numbering.
    Signal {
        number: i32,
        name: String,
        core_dumped: bool,
    },
    /// It was never started (the spawn itself failed).
    NotStarted(String),
    /// The shell could not learn how it ended.
    Unknown(String),
}

/// The vassal's exit code for "the app could not be loaded" (uWSGI's convention).
pub const EXIT_CANNOT_LOAD: i32 = 22;

impl ExitReason {
    pub fn is_clean(&self) -> bool {
        *self == ExitReason::Code(0)
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Code(EXIT_CANNOT_LOAD) => write!(
                f,
                "exited with code {EXIT_CANNOT_LOAD} (the app could not be loaded)"
            ),
            ExitReason::Code(c) => write!(f, "exited with code {c}"),
            ExitReason::Signal {
                name, core_dumped, ..
            } => {
                write!(f, "killed by signal {name}")?;
                if *core_dumped {
                    write!(f, " (core dumped)")?;
                }
                Ok(())
            }
            ExitReason::NotStarted(why) => write!(f, "could not start: {why}"),
            ExitReason::Unknown(why) => write!(f, "could not be waited for: {why}"),
        }
    }
}

/// One generation's end: the reason and the last lines of its output (possibly empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub reason: ExitReason,
    pub output: String,
}

impl Exit {
    pub fn new(reason: ExitReason) -> Exit {
        Exit {
            reason,
            output: String::new(),
        }
    }

    /// The reason first, then the output as detail: for failure replies and `error`.
    pub fn report(&self) -> String {
        if self.output.trim().is_empty() {
            self.reason.to_string()
        } else {
            format!("{}\nlast output:\n{}", self.reason, self.output)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_the_kernel_reported_them() {
        let sig = |number, name: &str, core_dumped| ExitReason::Signal {
            number,
            name: name.into(),
            core_dumped,
        };
        let cases = [
            (ExitReason::Code(1), "exited with code 1"),
            (
                ExitReason::Code(22),
                "exited with code 22 (the app could not be loaded)",
            ),
            (sig(9, "SIGKILL", false), "killed by signal SIGKILL"),
            (
                sig(11, "SIGSEGV", true),
                "killed by signal SIGSEGV (core dumped)",
            ),
            (
                ExitReason::NotStarted("Too many open files".into()),
                "could not start: Too many open files",
            ),
        ];
        for (reason, want) in cases {
            assert_eq!(reason.to_string(), want);
        }
    }

    #[test]
    fn the_output_follows_the_reason_and_never_replaces_it() {
        let mut e = Exit::new(ExitReason::Signal {
            number: 9,
            name: "SIGKILL".into(),
            core_dumped: false,
        });
        assert_eq!(e.report(), "killed by signal SIGKILL");
        e.output = "WARN the app runs as root".into();
        assert_eq!(
            e.report(),
            "killed by signal SIGKILL\nlast output:\nWARN the app runs as root"
        );
        assert_eq!(e.report().lines().next(), Some("killed by signal SIGKILL"));
    }
}
